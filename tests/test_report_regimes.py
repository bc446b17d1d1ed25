"""The report's headline states the average and the regimes; grid-edge warnings, verdicts per
condition, the share of the spread each factor explains, quantifiers and slope units."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from bnstudy import study, terminal
from bnstudy.report import content, render, text, views
from bnstudy.report.hypotheses import hypotheses_view
from bnstudy.report.roles import roles_of
from bnstudy.stats import analyze
from bnstudy.stats.inference import EDGE_VERDICT, EQUIVALENT_PI
from bnstudy.stats.regimes import NO_DIFFERENCE_PHRASES
from bnstudy.stats.simulate import grid_protocol, simulate_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claim3_tuned():
    """Claim 3's committed table with each arm tuned over lr: bn's choices at the low edge."""
    recorded = study.load_results(ROOT / "data" / "results" / "study_claim3.parquet")
    design = dataclasses.replace(
        recorded.protocol.design(),
        tuning=("lr",),
        select_by="val_balanced_acc",
        bootstrap_replicates=50,
    )
    table = recorded.results.table
    analysis = analyze(table, design)
    return recorded.protocol, table, analysis, content.build(analysis, table, recorded.protocol)


@pytest.fixture(scope="module")
def mixed():
    """The effect is +2.3 pp at ratio 1 and -2.3 pp at ratio 100: better in some conditions,
    worse in others, about 0 on average."""
    protocol = grid_protocol(
        8,
        datasets=("d0", "d1"),
        ratios=(1.0, 100.0),
        lrs=(0.01,),
        extra_analysis="  bootstrap: {replicates: 100}\n  transforms: {imbalance_ratio: log2}\n",
    )
    table = simulate_results(protocol, effect=2.3, slope=-1.0, sigma=0.3, seed=4)
    return protocol, table, analyze(table, protocol.design())


def test_the_headline_states_the_average_and_the_regimes(mixed):
    protocol, table, analysis = mixed
    h = text.headline(analysis, "balanced_acc", "bn")
    assert "on average" in h["sentence"] and "by condition (Holm over 4)" in h["sentence"]
    assert "better in 2 (dataset=d0, imbalance_ratio=1" in h["sentence"]
    assert "worse in 2 (dataset=d0, imbalance_ratio=100" in h["sentence"]
    assert "128 pairs" not in h["sentence"] and "pairs." in h["sentence"]
    said = " ".join([h["sentence"], h["verdict_words"], h["multiplicity"]]).lower()
    assert not any(phrase in said for phrase in NO_DIFFERENCE_PHRASES)
    # An average "equivalent in every condition" beside conditions that differ: said "on
    # average", in the sentence and in the verdict's words.
    est = analysis.estimates.copy()
    overall = (est["kind"] == "overall") & (est["population"] == "intention-to-treat")
    est.loc[overall, "verdict"] = EQUIVALENT_PI
    claimed = text.headline(dataclasses.replace(analysis, estimates=est), "balanced_acc", "bn")
    assert claimed["verdict"] == "equivalent (on average)"
    assert "every condition" not in claimed["verdict_words"]
    said = " ".join([claimed["sentence"], claimed["verdict_words"]]).lower()
    assert EQUIVALENT_PI not in said
    assert not any(phrase in said for phrase in NO_DIFFERENCE_PHRASES)


def test_the_heterogeneity_section_shows_regimes_verdicts_and_the_variance_share(mixed):
    protocol, table, analysis = mixed
    html = render(analysis, table, protocol, generated_at="2030-01-01T00:00:00+00:00")
    section = html.split('<h2 id="heterogeneity">')[1].split('<h2 id="mechanisms">')[0]
    assert "bn − plain on balanced_acc: better in 2 (" in section
    assert "Verdict per condition" in section and "Which factor explains the spread" in section
    assert "imbalance_ratio explains " in section
    c = content.build(analysis, table, protocol)
    share = c.moderator_variance_table.set_index("factor")["share explained (%)"]
    assert share["imbalance_ratio"] > 90 and share["dataset"] < 10
    pc = c.per_condition_table
    assert list(pc.columns[:5]) == ["metric", "variant", "condition", "verdict", "estimate"]
    assert list(pc["verdict"][:4]) == ["worse", "worse", "better", "better"]  # worse first


def test_slopes_are_in_the_units_the_protocol_declares(mixed):
    protocol, table, analysis = mixed
    roles = roles_of(analysis.design, table, analysis)
    assert roles.log_scale("imbalance_ratio") and not roles.log_scale("dataset")
    (sentence,) = [s["sentence"] for s in text.moderator_sentences(analysis, roles)]
    assert "per doubling of imbalance_ratio" in sentence and "ln(" not in sentence


def test_a_tuned_verdict_at_a_grid_edge_is_flagged(claim3_tuned):
    protocol, table, analysis, c = claim3_tuned
    assert c.headline["verdict"] == EDGE_VERDICT
    assert "by condition (Holm over 8)" in c.headline["sentence"]
    assert "tuning grid" in c.edge_warning and "bn at lr=0.03, the lowest tried" in c.edge_warning
    assert list(c.selected_table.columns[:5]) == ["arm", "condition", "fold", "evaluated_on",
                                                  "at_edge"]  # fmt: skip
    assert (c.selected_table.query("arm == 'bn'")["at_edge"] == "low").all()
    assert any("8 of the inconclusive ones rest on a tuning grid edge" in line
               for line in c.regime_lines)  # fmt: skip
    html = render(analysis, table, protocol, generated_at="2030-01-01T00:00:00+00:00")
    # in the evidence and beside the tuned levels
    assert html.count("rest on a level chosen at the edge of the tuning grid") >= 2
    shown = terminal.estimates(analysis)
    assert "by condition (Holm over 8): better in 0, worse in 0" in shown


def test_hypotheses_name_their_estimand_and_quantifier():
    row = dict(
        id="h1", claim="c", metric="balanced_acc", variant="bn", control="plain",
        subset="all conditions", expect="lower", margin=0.5, estimand="fixed",
        quantifier="any", registration="pre-registered", estimate=-1.0, ci_low=-2.0,
        ci_high=0.0, pi_low=-3.0, pi_high=1.0, p=0.01, p_adj=0.02, n_pairs=10,
        n_conditions=4, verdict="supported", unit="pp", scope="overall", sha256="x",
        note="below -0.5 pp in 1 of 4 conditions (Holm) (dataset=d1); short of it in 0",
    )  # fmt: skip
    average = {**row, "id": "h2", "quantifier": "average", "estimand": "tuned", "note": ""}
    hyp = pd.DataFrame([row, average])
    shown_view = hypotheses_view(hyp, {}).set_index("id")
    # a quantified claim's verdict names the conditions that decided it, not only the average
    assert shown_view.loc["h1", "verdict"] == "supported: " + row["note"]
    assert shown_view.loc["h2", "verdict"] == "supported"
    view = shown_view["test"]
    assert view["h1"].startswith("balanced_acc (fixed estimand):")
    assert view["h1"].endswith("; in any")
    assert view["h2"].startswith("balanced_acc (tuned estimand):")
    assert "; in" not in view["h2"].split("expect")[1]
    shown = terminal.hypotheses(
        dataclasses.replace(views_analysis(), hypotheses=hyp)  # the terminal reads the table
    )
    assert "; in any" in shown and "; in average" not in shown


def views_analysis():
    protocol = grid_protocol(2, datasets=("d0",), ratios=(1.0, 10.0), lrs=(0.01,),
                             extra_analysis="  bootstrap: {replicates: 100}\n")  # fmt: skip
    return analyze(simulate_results(protocol, seed=0), protocol.design())


def test_views_of_an_analysis_without_the_new_tables_are_empty(mixed):
    _, _, analysis = mixed
    bare = dataclasses.replace(
        analysis,
        regimes=pd.DataFrame(),
        moderator_variance=pd.DataFrame(),
        per_condition=analysis.per_condition.drop(columns="verdict"),
    )
    assert text.regime_lines(bare) == [] and text.variance_sentences(bare) == []
    assert views.per_condition_view(bare).empty and views.moderator_variance_view(bare).empty
    assert text.edge_warning(bare) == ""
