"""Intention to treat: collapsed trials count, trials without metrics get the declared score."""

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.stats import analyze
from bnstudy.stats.analysis import SENSITIVITY_VERDICT
from bnstudy.stats.imputation import NOT_IMPUTABLE, score_trials
from bnstudy.stats.paired import paired_differences
from bnstudy.stats.simulate import grid_protocol, simulate_results

ONE_CONDITION = dict(datasets=("d0",), ratios=(1.0,), lrs=(0.05,))
TWO_CONDITIONS = dict(datasets=("d0", "d1"), ratios=(1.0,), lrs=(0.05,))


def _set(table: pd.DataFrame, mask: pd.Series, status: str, **metrics: float) -> None:
    table.loc[mask, "status"] = status
    for metric, value in metrics.items():
        table.loc[mask, metric] = value


def _rows(table: pd.DataFrame, head: str, seeds: list[int], dataset: str = "d0") -> pd.Series:
    return (table["head"] == head) & table["seed"].isin(seeds) & (table["dataset"] == dataset)


def test_collapsed_trials_stay_in_the_primary_estimate():
    """Three of five bn seeds collapse at 0.10: dropping them flattered the head (issue #6)."""
    protocol = grid_protocol(5, **ONE_CONDITION)
    table = simulate_results(protocol, effect=0.0, seed=1)
    _set(table, _rows(table, "bn", [0, 1, 2]), "collapsed", balanced_acc=0.10)
    wide = table.pivot(index="seed", columns="head", values="balanced_acc") * 100
    d_all = wide["bn"] - wide["plain"]  # every block, collapsed ones at 10 pp
    d_ok = d_all.loc[[3, 4]]  # the old analysis: both arms ok

    a = analyze(table, protocol)
    itt = a.headline()
    assert itt["population"] == "intention-to-treat" and itt["n_pairs"] == 5
    assert itt["estimate"] == pytest.approx(d_all.mean(), rel=1e-9)  # paired t: the mean
    assert itt["estimate"] < -30 and itt["n_imputed"] == 0  # 3/5 of -70: measured, not imputed
    ok = a.sensitivity().query("scope == 'overall'").iloc[0]
    assert ok.n_pairs == 2 and ok.estimate == pytest.approx(d_ok.mean(), rel=1e-9)
    assert ok.verdict.endswith(SENSITIVITY_VERDICT) and np.isnan(ok.p_adj)
    assert "sensitivity" in ok.method
    assert a.headline()["text"].startswith("bn − plain on balanced_acc: −")


def test_collapsed_blocks_count_across_conditions():
    """Two conditions, five seeds each (balanced): the model's estimate is the mean of all d."""
    protocol = grid_protocol(5, **TWO_CONDITIONS)
    table = simulate_results(protocol, effect=0.0, seed=2)
    _set(table, _rows(table, "bn", [0, 1, 2], "d1"), "collapsed", balanced_acc=0.10)
    wide = table.pivot(index=["dataset", "seed"], columns="head", values="balanced_acc") * 100
    a = analyze(table, protocol)
    # balanced design: REML (or its boundary OLS) gives the mean of the condition means
    assert a.headline()["estimate"] == pytest.approx((wide["bn"] - wide["plain"]).mean(), rel=1e-6)
    assert a.sensitivity().query("scope == 'overall'").n_pairs.iloc[0] == 7


def test_no_metrics_scores_chance_one_over_c_and_log_c():
    protocol = grid_protocol(4, metrics=("balanced_acc", "nll"), **ONE_CONDITION)
    table = simulate_results(protocol, num_classes=7, seed=3)
    diverged = _rows(table, "bn", [0])
    _set(table, diverged, "diverged", balanced_acc=np.nan, nll=np.nan)
    failed = _rows(table, "bn", [1])  # a failed trial records no class counts: C from its peers
    _set(table, failed, "failed", balanced_acc=np.nan, nll=np.nan)
    table.loc[failed, "class_counts"] = pd.Series([[]], index=table.index[failed])
    timeout = _rows(table, "bn", [2])  # any status not measured has no metrics, whatever is there
    _set(table, timeout, "timeout")
    for metric, chance in (("balanced_acc", 100 / 7), ("nll", math.log(7))):
        pairs = paired_differences(table, protocol, metric, "bn")
        frame = pairs.frame.set_index(table.loc[table["head"] == "plain", "seed"].to_numpy())
        assert pairs.n_pairs == 4 and pairs.n_imputed_variant == 3
        np.testing.assert_allclose(frame.loc[[0, 1, 2], "variant"], chance, rtol=1e-12)
        assert not frame.loc[3, "variant_imputed"] and frame.loc[0, "variant_imputed"]
        assert paired_differences(table, protocol, metric, "bn", population="ok only").n_pairs == 1
    a = analyze(table, protocol)
    assert a.headline()["n_imputed"] == 3 and a.failed_score == "chance"
    imp = a.imputations.query("metric == 'nll'").set_index("status")
    assert imp.loc["diverged", "rule"] == "chance" and imp.n_trials.sum() == 3
    assert imp.loc["timeout", "value_low"] == pytest.approx(math.log(7))


def test_worst_takes_the_conditions_worst_measured_value():
    extra = "  failed_score: worst\n"
    protocol = grid_protocol(4, metrics=("balanced_acc", "nll"), extra_analysis=extra,
                             **TWO_CONDITIONS)  # fmt: skip
    table = simulate_results(protocol, seed=4)
    _set(table, _rows(table, "plain", [3], "d1"), "collapsed", balanced_acc=0.02, nll=9.0)
    gone = _rows(table, "bn", [0], "d0")
    _set(table, gone, "diverged", balanced_acc=np.nan, nll=np.nan)
    measured_d0 = table[(table["dataset"] == "d0") & ~gone]
    for metric, worst in (
        ("balanced_acc", 100 * measured_d0["balanced_acc"].min()),  # higher is better
        ("nll", measured_d0["nll"].max()),  # lower is better
    ):
        frame = paired_differences(table, protocol, metric, "bn").frame
        row = frame[frame["variant_imputed"]]
        assert len(row) == 1 and row["dataset"].iloc[0] == "d0"
        assert row["variant"].iloc[0] == pytest.approx(worst)  # d1's collapsed value not used


def test_both_arms_without_metrics_and_nothing_to_impute():
    protocol = grid_protocol(4, **TWO_CONDITIONS)
    table = simulate_results(protocol, seed=5)
    both = _rows(table, "bn", [0]) | _rows(table, "plain", [0])
    _set(table, both, "diverged", balanced_acc=np.nan)
    one = _rows(table, "bn", [1], "d1")  # one arm only: scored, and the block stays
    _set(table, one, "failed", balanced_acc=np.nan)
    pairs = paired_differences(table, protocol, "balanced_acc", "bn")
    # both arms without metrics: nothing measured, d would be exactly 0; left out, counted
    assert pairs.n_pairs == 7 and pairs.n_dropped == 1 and pairs.n_unmeasured == 1
    assert pairs.n_imputed_variant == 1 and pairs.n_imputed_control == 0
    a = analyze(table, protocol)
    assert a.diagnostics.message.str.contains("1 of 8 blocks have no metrics in either").any()
    assert a.headline()["n_pairs"] == 7 and a.headline()["n_imputed"] == 1
    assert a.imputations.n_trials.sum() == 3  # every trial without metrics was scored

    # every trial diverged: nothing to estimate, never "equivalent"
    _set(table, table.index == table.index, "diverged", balanced_acc=np.nan)
    a = analyze(table, protocol)
    assert a.estimates.empty and a.headline() == {}

    # "worst" with every trial of a condition failed: nothing to impute, the blocks drop
    worst = grid_protocol(4, extra_analysis="  failed_score: worst\n", **TWO_CONDITIONS)
    table = simulate_results(protocol, seed=5)
    _set(table, table["dataset"] == "d1", "failed", balanced_acc=np.nan)
    pairs = paired_differences(table, worst, "balanced_acc", "bn")
    assert pairs.n_pairs == 4 and pairs.n_dropped == 4
    scored = score_trials(table, "balanced_acc", ["dataset"], failed_score="worst")
    assert (scored.rule[table["dataset"] == "d1"] == NOT_IMPUTABLE).all()
    a = analyze(table, worst)
    assert a.diagnostics.message.str.contains("no score can be imputed").any()
    assert a.headline()["n_pairs"] == 4


def test_chance_falls_back_to_worst_where_there_is_none():
    protocol = grid_protocol(4, metrics=("balanced_acc", "ece"), **ONE_CONDITION)
    table = simulate_results(protocol, seed=6)
    gone = _rows(table, "bn", [0])
    _set(table, gone, "diverged", balanced_acc=np.nan, ece=np.nan)
    a = analyze(table, protocol)
    assert a.diagnostics.message.str.contains("ece has no chance level").any()
    ece = a.imputations.query("metric == 'ece'").iloc[0]
    assert ece.rule == "worst" and ece.value_low == pytest.approx(100 * table["ece"].max())
    # no class counts at all: chance cannot be computed either
    a = analyze(table.drop(columns="class_counts"), protocol)
    assert a.diagnostics.message.str.contains("number of classes").any()
    assert a.imputations.query("metric == 'balanced_acc'").rule.iloc[0] == "worst"


def test_undefined_metric_is_not_imputed():
    """Minority recall is NaN for every measured trial on balanced data: nothing to score."""
    protocol = grid_protocol(3, metrics=("minority_recall",), **ONE_CONDITION)
    table = simulate_results(protocol, seed=7)
    table["minority_recall"] = np.nan
    _set(table, table["seed"] == 0, "diverged")
    assert paired_differences(table, protocol, "minority_recall", "bn").n_pairs == 0


def test_a_runaway_nll_counts_at_the_ceiling_in_both_populations():
    """One ok trial at 1e19 nats (eval-mode logits run away without diverging) would decide
    the mean; it counts at nll's ceiling, -log(float32 eps), and a note says so."""
    from bnstudy.catalogue import NLL_CEILING

    protocol = grid_protocol(5, **ONE_CONDITION)
    table = simulate_results(protocol, effect=0.0, seed=3)
    table["nll"] = 0.5
    runaway = _rows(table, "bn", [0])
    table.loc[runaway, "nll"] = 1e19
    for population in ("intention-to-treat", "ok only"):
        scored = score_trials(table, "nll", [], population)
        assert scored.values[runaway.to_numpy()] == pytest.approx([NLL_CEILING])
        assert np.all(scored.values[~runaway.to_numpy()] == 0.5)
        assert any(
            "1 trial(s) measured nll above 15.94 nats (up to 1e+19)" in n for n in scored.notes
        )
    assert pytest.approx(-math.log(np.finfo(np.float32).eps)) == NLL_CEILING
    # A metric without a ceiling keeps its values: balanced accuracy is bounded by nature.
    assert not score_trials(table, "balanced_acc", []).notes
