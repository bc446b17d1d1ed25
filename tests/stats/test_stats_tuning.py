"""The tuned comparison: each arm at its own best learning rate, chosen on validation data."""

import numpy as np
import pandas as pd
import pytest

from bnstudy.stats import analyze
from bnstudy.stats.inference import UNADJUSTED, VERDICTS
from bnstudy.stats.simulate import grid_protocol, simulate_results
from bnstudy.stats.tuning import SELECTION_COLUMNS, select_levels

TUNE = "  tune: [lr]\n  bootstrap:\n    replicates: 200\n"
GRID = dict(datasets=("d0", "d1"), ratios=(1.0, 100.0), lrs=(0.01, 0.1))
#: plain trains best at lr 0.01, bn at 0.1; off its best an arm loses 2 ln(10)^2 = 10.6 pp
OPTIMA = dict(lr_optimum={"plain": 0.01, "bn": 0.1}, lr_curvature=2.0, condition_sd=0.5)


@pytest.fixture(scope="module")
def tuned():
    protocol = grid_protocol(12, extra_analysis=TUNE, **GRID)
    table = simulate_results(protocol, effect=0.5, seed=3, **OPTIMA)
    return protocol, table, analyze(table, protocol.design())


def test_each_arm_is_compared_at_its_own_best_level(tuned):
    protocol, table, a = tuned
    sel = a.selected_levels.query("population == 'intention-to-treat'")
    assert list(sel.columns[: len(SELECTION_COLUMNS)]) == SELECTION_COLUMNS
    assert {"dataset", "imbalance_ratio", "lr"} <= set(sel.columns)
    assert len(sel) == 2 * 4 * 2  # two arms x four base conditions x two seed folds
    assert (sel.query("arm == 'plain'").lr == 0.01).all()
    assert (sel.query("arm == 'bn'").lr == 0.1).all()
    assert (sel.select_by == "val_balanced_acc").all() and (sel.n_levels == 2).all()
    assert (sel.value > sel.next_best_value).all() and (sel.n_trials == 6).all()
    # the tuned estimate: bn at 0.1 vs plain at 0.01, paired by seed (balanced: the mean)
    wide = table.pivot_table(
        index=["dataset", "imbalance_ratio", "seed"], columns=["head", "lr"], values="balanced_acc"
    )
    d = 100 * (wide[("bn", 0.1)] - wide[("plain", 0.01)])
    row = a.headline()
    assert row["estimand"] == "tuned" and row["n_pairs"] == len(d) == 48
    assert row["estimate"] == pytest.approx(d.mean(), rel=1e-6)
    assert row["ci_low"] < 0.5 < row["ci_high"]  # the truth: effect 0.5 at the arms' optima
    assert "(each arm at its best lr by val_balanced_acc)" in row["text"]


def test_rows_say_which_estimand_and_the_tuned_one_is_primary(tuned):
    _, _, a = tuned
    assert a.primary_estimand == "tuned" and a.tuning == ["lr"]
    est = a.primary()
    assert set(est.estimand) == {"fixed", "tuned"}
    overall = est.query("scope == 'overall'").set_index("estimand")
    assert (
        np.isfinite(overall.loc["tuned", "p_adj"]) and overall.loc["tuned", "verdict"] in VERDICTS
    )
    assert np.isnan(overall.loc["fixed", "p_adj"])
    assert overall.loc["fixed", "verdict"].startswith(UNADJUSTED)  # secondary: no verdict
    # the fixed comparison averages over learning rates, tuned never varies them
    assert "lr" in set(est.query("estimand == 'fixed'").scope)
    assert "lr" not in set(est.query("estimand == 'tuned'").scope)
    for name in ("equivalence", "effect_sizes", "heterogeneity", "per_condition", "robustness"):
        assert set(getattr(a, name).estimand) == {"fixed", "tuned"}, name
    assert set(a.model_summaries.estimand) == {"fixed", "tuned"}
    assert a.diagnostics.message.str.contains("no seed both selects and is evaluated").any()


def test_selection_reads_validation_never_test():
    protocol = grid_protocol(6, extra_analysis=TUNE, **GRID)
    table = simulate_results(protocol, effect=0.5, seed=4, **OPTIMA)
    design = protocol.design()
    before = analyze(table, design)
    # test accuracy of plain at its *unselected* lr made excellent: nothing changes
    cheat = table.copy()
    off = (cheat["head"] == "plain") & (cheat["lr"] == 0.1)
    cheat.loc[off, "balanced_acc"] = 0.99
    after = analyze(cheat, design)
    pd.testing.assert_frame_equal(before.selected_levels, after.selected_levels)
    tuned = "estimand == 'tuned' and scope == 'overall'"
    assert after.estimates.query(tuned).estimate.tolist() == pytest.approx(
        before.estimates.query(tuned).estimate.tolist()
    )
    # the validation metric is what decides
    cheat.loc[off, "val_balanced_acc"] = 0.99
    moved = select_levels(cheat, design).table
    assert (moved.query("arm == 'plain'").lr == 0.1).all()


def test_a_level_at_which_an_arm_diverges_is_not_chosen_for_it():
    protocol = grid_protocol(6, extra_analysis=TUNE, **GRID)
    table = simulate_results(protocol, effect=0.5, seed=5, **OPTIMA)
    bad = (table["head"] == "bn") & (table["lr"] == 0.1) & (table["seed"] < 4)
    table.loc[bad, "status"] = "diverged"
    table.loc[bad, ["balanced_acc", "val_balanced_acc"]] = np.nan
    design = protocol.design()
    # intention to treat: 4 of 6 seeds at chance (10%): 0.01 wins for bn
    itt = select_levels(table, design)
    assert (itt.table.query("arm == 'bn'").lr == 0.01).all()
    # ok trials only: the two surviving seeds at 0.1 look fine, and win
    ok = select_levels(table, design, "ok only")
    assert (ok.table.query("arm == 'bn'").lr == 0.1).all()


def test_without_seeds_or_validation_the_fixed_comparison_stays_primary():
    protocol = grid_protocol(4, extra_analysis=TUNE, **GRID)
    table = simulate_results(protocol, seed=6, **OPTIMA)
    a = analyze(table.drop(columns="seed"), protocol.design())
    assert a.primary_estimand == "fixed" and set(a.estimates.estimand) == {"fixed"}
    assert a.diagnostics.message.str.contains("pairs arms by 'seed'").any()
    assert a.diagnostics.message.str.contains("fixed-setting comparison is the primary").any()
    a = analyze(table.assign(val_balanced_acc=np.nan), protocol.design())
    assert a.selected_levels.empty and a.primary_estimand == "fixed"
    assert a.diagnostics.message.str.contains("no finite val_balanced_acc").any()
    # no tuning declared: only fixed rows, an empty selection table, verdicts as before
    plain = grid_protocol(4, **GRID)
    a = analyze(simulate_results(plain, seed=6), plain.design())
    assert set(a.estimates.estimand) == {"fixed"} and a.selected_levels.empty
    assert np.isfinite(a.primary().query("scope == 'overall'").p_adj).all()
