"""Moderators: levels, contrasts and slopes from the design, never judged unadjusted."""

import dataclasses
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bnstudy.stats import analyze
from bnstudy.stats.inference import UNADJUSTED, UNADJUSTED_WORDS, VERDICTS
from bnstudy.stats.simulate import grid_protocol, simulate_results

SMALL = dict(datasets=("d0", "d1"), ratios=(1.0, 10.0, 100.0), lrs=(0.01, 0.1))
STATS = pathlib.Path(__file__).parents[2] / "src" / "bnstudy" / "stats"


def test_null_moderator_rows_are_never_better_or_worse():
    """No effect anywhere. 48 conditions, three moderators: their levels, contrasts and slopes
    are many unadjusted tests, and some reach p < 0.05 by chance; those rows say so
    ("unadjusted: higher") rather than "better"/"worse" (31% of null analyses did)."""
    protocol = grid_protocol(6, extra_analysis="  bootstrap:\n    replicates: 100\n")
    chance_findings = 0
    for seed in range(6):
        a = analyze(simulate_results(protocol, effect=0.0, tau=0.3, seed=seed), protocol.design())
        rows = a.estimates[a.estimates["scope"] != "overall"]
        words = rows["verdict"].str.replace(" (sensitivity)", "", regex=False)
        assert words.isin(UNADJUSTED_WORDS).all(), set(words)
        assert not rows["verdict"].str.contains("better|worse").any()
        assert rows["method"].str.contains("not a verdict|sensitivity").all()
        assert rows["p_adj"].isna().all()
        chance_findings += words.isin([UNADJUSTED + "higher", UNADJUSTED + "lower"]).sum()
        overall = a.primary().query("scope == 'overall'")
        assert overall["verdict"].isin(VERDICTS).all()
    assert chance_findings > 0  # the check has teeth: chance findings exist, worded as such


def test_family_all_gives_moderator_rows_adjusted_verdicts():
    protocol = grid_protocol(6, extra_analysis="  family: all\n", **SMALL)
    a = analyze(simulate_results(protocol, effect=-2.0, seed=1), protocol.design())
    primary = a.primary()
    assert primary["p_adj"].notna().all()
    assert primary["verdict"].isin(VERDICTS).all()
    assert (primary.query("scope == 'imbalance_ratio'").verdict == "worse").any()


def test_contrasts_between_levels_with_cis():
    protocol = grid_protocol(10, **SMALL)
    table = simulate_results(protocol, effect=-1.0, slope=-1.5, tau=0.3, seed=7)
    a = analyze(table, protocol.design())
    est = a.primary()
    levels = est.query("scope == 'imbalance_ratio'").set_index("level")
    contrasts = est.query("scope == 'imbalance_ratio_contrast'").set_index("level")
    assert list(contrasts.index) == ["10.0 - 1.0", "100.0 - 1.0"]
    for b in ("10.0", "100.0"):
        c = contrasts.loc[f"{b} - 1.0"]
        assert c.estimate == pytest.approx(
            levels.loc[b, "estimate"] - levels.loc["1.0", "estimate"]
        )
        assert c.ci_low < c.estimate < c.ci_high and np.isnan(c.pi_low)
        assert c.n_pairs == levels.loc[b, "n_pairs"] + levels.loc["1.0", "n_pairs"]
    # the truth: -1.5 ln(100) = -6.9 pp between ratio 100 and ratio 1
    c = contrasts.loc["100.0 - 1.0"]
    assert c.ci_low < -1.5 * np.log(100) < c.ci_high and c.verdict == UNADJUSTED + "lower"
    # levels get prediction intervals for a new condition at that level
    assert levels["pi_low"].notna().all() and (levels["pi_low"] <= levels["ci_low"]).all()


def test_slopes_follow_the_declared_transform():
    protocol = grid_protocol(10, **SMALL)
    table = simulate_results(protocol, effect=-1.0, slope=-1.5, seed=7)
    design = protocol.design()
    assert design.moderators["imbalance_ratio"] == "log" and design.moderators["lr"] == "log10"
    log_fit = analyze(table, design).primary().set_index("scope")
    row = log_fit.loc["imbalance_ratio_slope"]
    assert row.level == "slope" and "per unit of ln(imbalance_ratio)" in row.method
    assert row.ci_low < -1.5 < row.ci_high  # simulated per unit of ln(ratio)
    assert "lr_slope" in log_fit.index and "per x10 of lr" in log_fit.loc["lr_slope", "method"]
    # per x10 of lr is ln(10) times the slope per unit of ln(lr)
    natural = dataclasses.replace(design, moderators={"lr": "log"})
    per_ln = analyze(table, natural).primary().set_index("scope").loc["lr_slope", "estimate"]
    assert log_fit.loc["lr_slope", "estimate"] == pytest.approx(per_ln * np.log(10), rel=1e-9)
    # the same table on a declared identity scale: the slope per unit of the ratio itself
    flat = dataclasses.replace(
        design, moderators={"imbalance_ratio": "identity"}
    )  # no special case for the name
    row = analyze(table, flat).primary().set_index("scope").loc["imbalance_ratio_slope"]
    assert "per unit of imbalance_ratio" in row.method
    assert row.estimate == pytest.approx(-1.5 * np.log(100) / 99, rel=0.5)
    # a log-scale moderator must be positive; a categorical one has no slope
    text = dataclasses.replace(design, moderators={"dataset": "log"})
    scopes = set(analyze(table, text).estimates["scope"])
    assert "dataset_slope" not in scopes and "dataset_contrast" in scopes


def test_no_factor_name_is_special_cased_in_the_analysis():
    """Roles come from the design: no factor name, no protocol import (the deprecated output
    column beside "arm" is named after the design's treatment)."""
    for path in STATS.glob("*.py"):
        if path.name == "simulate.py":  # a simulator of the protocol's own factors
            continue
        text = path.read_text()
        banned_words = ("imbalance_ratio", "TREATMENT", "bnstudy.protocol", "bnstudy.spec.protocol")
        for banned in (*banned_words, "'head'", '"head"'):
            assert banned not in text, (path.name, banned)


def test_design_in_protocol_accepted_and_treatment_named_by_the_design():
    protocol = grid_protocol(5, **SMALL)
    table = simulate_results(protocol, effect=-1.0, seed=2)
    by_design = analyze(table, protocol.design())
    by_protocol = analyze(table, protocol)  # compatibility: read through .design()
    assert by_design.estimates.equals(by_protocol.estimates)
    # a treatment column with another name, declared in the design
    renamed = table.rename(columns={"head": "arm_kind"})
    design = dataclasses.replace(protocol.design(), treatment="arm_kind")
    a = analyze(renamed, design)
    assert a.estimates["estimate"].tolist() == pytest.approx(by_design.estimates["estimate"])
    assert set(a.failures["arm"]) == {"plain", "bn"} and a.treatment == "arm_kind"
    with pytest.raises(TypeError, match="expected a bnstudy Design"):
        analyze(table, {"treatment": "head"})


def test_stats_imports_neither_torch_nor_pydantic():
    code = (
        "import sys, bnstudy.stats; "
        "bad = [m for m in ('torch', 'pydantic') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_estimate_names_its_moderator_and_kind_in_columns():
    """``moderator`` and ``kind`` say what ``scope`` says in one string, which no reader
    should take apart; ``scope`` keeps its values for csv/json readers."""
    from bnstudy.stats.analysis_result import ESTIMATE_KINDS, scope_of

    protocol = grid_protocol(6, **SMALL)
    a = analyze(simulate_results(protocol, effect=-1.0, slope=-1.0, seed=3), protocol.design())
    for table in (a.estimates, a.equivalence):
        assert set(table["kind"]) == set(ESTIMATE_KINDS)
        rebuilt = [scope_of(k, m) for k, m in zip(table["kind"], table["moderator"], strict=True)]
        assert rebuilt == table["scope"].tolist()
    est = a.estimates
    assert (est.loc[est["kind"] == "overall", "moderator"] == "").all()
    assert set(est.loc[est["kind"] != "overall", "moderator"]) <= set(protocol.design().moderators)
    assert (est.loc[est["kind"] == "slope", "level"] == "slope").all()
    assert set(est.loc[est["kind"] == "slope", "scope"]) == {"imbalance_ratio_slope", "lr_slope"}
