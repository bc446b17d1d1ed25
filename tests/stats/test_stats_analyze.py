"""analyze() end to end on synthetic tables with known effects."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bnstudy.stats import Analysis, analyze, plan_seeds
from bnstudy.stats.analysis import ESTIMATE_COLUMNS
from bnstudy.stats.inference import VERDICTS
from bnstudy.stats.simulate import grid_protocol, simulate_results

SMALL = dict(datasets=("d0", "d1"), ratios=(1.0, 10.0, 100.0), lrs=(0.05,))


def test_stats_does_not_import_torch():
    code = "import sys, bnstudy.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_known_effect_is_covered_with_all_tables():
    protocol = grid_protocol(12, **SMALL)
    table = simulate_results(protocol, effect=-1.0, tau=0.3, failed=0.05, missing=0.05, seed=4)
    a = analyze(table, protocol)
    assert isinstance(a, Analysis)
    assert list(a.estimates.columns) == ESTIMATE_COLUMNS
    assert set(a.estimates.population) == {"intention-to-treat", "ok only"}
    # Failures here are random, not caused by the head: the ok-only analysis recovers the
    # effect, while intention to treat keeps every block that has both trials.
    itt = a.primary().query("scope == 'overall'").iloc[0]
    overall = a.sensitivity().query("scope == 'overall'").iloc[0]
    assert overall.ci_low < -1.0 < overall.ci_high
    assert overall.verdict == "worse (sensitivity, unadjusted)" and overall.level == "all"
    assert np.isnan(overall.p_adj) and "sensitivity" in overall.method
    assert itt.n_pairs > overall.n_pairs and itt.n_imputed > 0 and overall.n_imputed == 0
    assert itt.verdict in VERDICTS
    # the slope scope is named after the moderator (its log scale is in the method text)
    assert set(a.estimates.scope) == {
        "overall",
        "dataset",
        "imbalance_ratio",
        "imbalance_ratio_slope",
        "dataset_contrast",
        "imbalance_ratio_contrast",
    }
    assert set(a.estimates.query("scope == 'imbalance_ratio'").level) == {"1.0", "10.0", "100.0"}
    # blocks with a failed or absent arm drop out, and are counted
    assert overall.n_pairs < 6 * 12
    assert a.diagnostics.message.str.contains("blocks lack a usable").any()
    assert set(a.effect_sizes.statistic) == {"mean_difference", "d_z", "probability_of_improvement"}
    assert set(a.heterogeneity.estimator) >= {"DL", "PM"}
    assert len(a.per_condition) == 6 and {"estimate", "ci_low", "ci_high", "n_pairs"} <= set(
        a.per_condition.columns
    )
    assert a.robustness.shape[0] == 1 and a.failures.query("status == 'any'").shape[0] == 3
    assert a.model_summaries.shape[0] == 8  # overall, dataset, ratio, slope; per population
    assert a.robustness.n_pairs.iloc[0] == itt.n_pairs  # secondary tables: primary population
    assert a.units == {"balanced_acc": "pp"}


def test_zero_effect_ci_contains_zero_and_never_says_no_effect():
    protocol = grid_protocol(8, **SMALL)
    a = analyze(simulate_results(protocol, effect=0.0, sigma=2.0, seed=11), protocol)
    overall = a.estimates.query("scope == 'overall'").iloc[0]
    assert overall.ci_low < 0 < overall.ci_high
    assert overall.verdict in {"inconclusive", "equivalent"}


def test_tost_declares_equivalence_with_enough_data():
    protocol = grid_protocol(60, **SMALL)
    a = analyze(simulate_results(protocol, effect=0.05, tau=0.0, sigma=0.7, seed=2), protocol)
    # the prediction interval for a new condition is inside the margin too, but over 6
    # conditions the upper confidence bound of tau^2 is wide: equivalent on average
    assert -0.5 < a.headline()["pi_low"] < a.headline()["pi_high"] < 0.5
    assert a.headline()["verdict"] == "equivalent (on average)"
    eq = a.equivalence.query("scope == 'overall'").iloc[0]
    assert eq.tost_ci_low > -0.5 and eq.tost_ci_high < 0.5 and eq.p_tost_adj < 0.05


def test_headline_text_and_lower_is_better_metric():
    protocol = grid_protocol(10, metrics=("balanced_acc", "nll"), **SMALL)
    table = simulate_results(protocol, effect=-1.0, seed=5)
    a = analyze(table, protocol)
    h = a.headline()
    assert h["text"].startswith("bn − plain on balanced_acc: −") and h["text"].endswith("worse")
    assert "pp (95% CI −" in h["text"]
    # nll is "lower is better": a negative difference is an improvement
    assert a.headline("nll")["verdict"] == "better"
    # family "overall": two overall rows adjusted together, moderator rows unadjusted
    est = a.primary()
    assert est.query("scope == 'overall'").p_adj.notna().all()
    assert est.query("scope != 'overall'").p_adj.isna().all()
    two = est.query("scope == 'overall'")
    np.testing.assert_allclose(
        two.p_adj,
        np.minimum(1, np.sort(two.p)[::-1] * [1, 2])[np.argsort(np.argsort(-two.p.to_numpy()))],
        rtol=1e-12,
    )
    assert json.loads(json.dumps(a.to_records()))["estimates"][0]["scope"] == "overall"


def test_family_all_adjusts_every_estimate():
    protocol = grid_protocol(6, extra_analysis="  family: all\n  correction: fdr_bh\n", **SMALL)
    a = analyze(simulate_results(protocol, seed=6), protocol)
    primary = a.primary()
    assert primary.p_adj.notna().all() and (primary.p_adj >= primary.p).all()
    assert a.sensitivity().p_adj.isna().all()  # never in the family


def test_no_usable_pairs_and_one_seed_do_not_crash():
    protocol = grid_protocol(3, **SMALL)
    table = simulate_results(protocol, seed=1)
    table["status"] = np.where(table["head"] == "bn", "diverged", "ok")
    a = analyze(table, protocol)
    # intention to treat scores every diverged bn trial at chance; ok only has no pairs
    assert a.sensitivity().empty and len(a.primary()) > 0
    assert a.diagnostics.query("level == 'warning'").model.str.contains("ok only").any()
    assert a.headline()["estimate"] == pytest.approx(10.0 - 80.0, abs=5.0)
    bn_rate = a.failures.query("head == 'bn' and status == 'any'").rate.iloc[0]
    assert bn_rate == 1.0
    a = analyze(table[table["head"] == "plain"], protocol)  # no bn trial at all
    assert a.estimates.empty and list(a.estimates.columns) == ESTIMATE_COLUMNS
    assert (a.diagnostics.level == "warning").any() and a.headline() == {}
    one = grid_protocol(1, **SMALL)
    a = analyze(simulate_results(one, seed=1), one)
    assert a.primary().query("scope == 'overall'").shape[0] == 1  # condition means, df G-1
    assert a.estimates.method.str.contains("two-stage").all()
    empty = analyze(simulate_results(one).iloc[:0], one)
    assert empty.estimates.empty


def test_single_condition_falls_back_to_paired_t():
    protocol = grid_protocol(15, datasets=("d0",), ratios=(1.0,), lrs=(0.05,))
    a = analyze(simulate_results(protocol, seed=3), protocol)
    assert a.primary().shape[0] == 1 and a.primary().method.iloc[0].startswith("paired t")


def test_plan_seeds_reports_the_tau_floor():
    protocol = grid_protocol(10, **SMALL)
    table = simulate_results(protocol, effect=-1.0, tau=1.0, seed=8)
    plan = plan_seeds(table, protocol, halfwidth={"balanced_acc": 2.0}).iloc[0]
    assert plan.feasible and plan.achieved_halfwidth <= 2.0
    assert plan.halfwidth_floor == pytest.approx(2.571 * plan.tau / np.sqrt(6), rel=1e-3)
    tight = {"balanced_acc": plan.halfwidth_floor * 0.9}
    tight = plan_seeds(table, protocol, halfwidth=tight).iloc[0]
    assert not tight.feasible and "floor" in tight.note
    power = plan_seeds(table, protocol, effect={"balanced_acc": -3.0}).iloc[0]
    assert power.target.startswith("power") and power.seeds_per_condition >= 2
    assert isinstance(plan_seeds(table.iloc[:0], protocol), pd.DataFrame)


def test_failure_rates_by_hand():
    protocol = grid_protocol(4, datasets=("d0",), ratios=(1.0,), lrs=(0.05,))
    table = simulate_results(protocol, seed=0)
    blocks = sorted(table.block_id.unique())
    bad = ((table["head"] == "bn") & table.block_id.isin(blocks[:2])) | (
        (table["head"] == "plain") & (table.block_id == blocks[2])
    )
    table.loc[bad, "status"] = "diverged"
    f = analyze(table, protocol).failures.set_index(["head", "comparison", "status"])
    assert f.loc[("bn", "rate", "any"), "rate"] == 0.5
    assert f.loc[("plain", "rate", "diverged"), "n_failed"] == 1
    paired = f.loc[("bn", "bn - plain", "any")]
    assert paired.rate == pytest.approx((2 - 1) / 4) and paired.p == pytest.approx(1.0)
    assert paired.n_failed == 3  # discordant blocks


def test_same_table_gives_identical_analysis():
    protocol = grid_protocol(5, heads=("plain", "bn", "ln"), **SMALL)
    table = simulate_results(protocol, effect={"bn": -1.0, "ln": 0.3}, tau=0.3, failed=0.1, seed=9)
    first, second = analyze(table, protocol), analyze(table.copy(), protocol)
    for name, value in vars(first).items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, getattr(second, name), obj=name)
        else:
            assert value == getattr(second, name)
    assert set(first.estimates.query("scope == 'overall'").variant) == {"bn", "ln"}


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # statsmodels, se = 0
def test_identical_arms_are_equivalent_and_no_failures_has_a_real_interval():
    protocol = grid_protocol(6, **SMALL)
    table = simulate_results(protocol, seed=2)
    bn = table["head"] == "bn"
    control = table[~bn].set_index("block_id")["balanced_acc"]
    table.loc[bn, "balanced_acc"] = table.loc[bn, "block_id"].map(control).to_numpy()
    a = analyze(table, protocol)  # every difference exactly 0: se = 0
    overall = a.headline()
    assert overall["p"] == 1.0 and overall["verdict"] == "equivalent (on average)"
    paired = a.failures.query("comparison == 'bn - plain'").iloc[0]
    assert paired.n_failed == 0 and paired.ci_low < 0 < paired.ci_high  # Wald gave [0, 0]


def test_headline_prints_the_declared_confidence():
    protocol = grid_protocol(6, extra_analysis="  confidence: 0.975\n", **SMALL)
    a = analyze(simulate_results(protocol, seed=6), protocol)
    assert "(97.5% CI " in a.headline()["text"]


def test_power_plan_with_one_condition_matches_the_t_test():
    from statsmodels.stats.power import TTestPower

    protocol = grid_protocol(10, datasets=("d0",), ratios=(1.0,), lrs=(0.05,))
    table = simulate_results(protocol, sigma=1.0, seed=3)
    plan = plan_seeds(table, protocol, effect={"balanced_acc": 1.0}).iloc[0]
    exact = TTestPower().solve_power(effect_size=1.0 / plan.sigma_within, power=0.8, alpha=0.05)
    # df n - 1 grow with n; t quantiles on 1 df (the old rule) asked for 8 seeds, not 11
    assert plan.feasible and abs(plan.seeds_per_condition - np.ceil(exact)) <= 1


def test_each_arms_levels_are_in_the_analysis_in_every_grouping():
    from bnstudy.stats.levels import arm_levels

    protocol = grid_protocol(4, **SMALL)
    table = simulate_results(protocol, effect=-1.0, failed=0.1, seed=5)
    a = analyze(table, protocol)
    design = a.design
    assert design == protocol.design()  # the design it was made under, for the report
    common = dict(
        treatment=design.treatment,
        conditions=design.conditions,
        arms=(design.control, *design.variants),
        failed_score=design.failed_score,
    )
    varying = ("dataset", "imbalance_ratio")  # lr takes one value
    assert set(a.arm_levels["by"]) == {"overall", "dataset", "imbalance_ratio", ", ".join(varying)}
    for by in [(), ("dataset",), ("imbalance_ratio",), varying]:
        expected = arm_levels(table, list(design.metrics), by=by, **common)
        pd.testing.assert_frame_equal(a.levels_by(by), expected)
    assert a.levels_by(("lr",)).empty
    assert "arm_levels" in a.tables() and "by" in json.loads(a.to_json())["tables"]["arm_levels"][0]


def test_the_arm_is_repeated_under_the_treatments_name_only_when_it_has_another():
    protocol = grid_protocol(4, **SMALL)
    table = simulate_results(protocol, failed=0.2, seed=1)
    a = analyze(table, protocol)
    assert list(a.failures.columns[:2]) == ["arm", "head"]
    assert list(a.imputations.columns[:2]) == ["metric", "head"]
    assert (a.failures["arm"] == a.failures["head"]).all()
    design = dataclasses.replace(protocol.design(), treatment="arm")
    b = analyze(table.rename(columns={"head": "arm"}), design)
    assert list(b.failures.columns).count("arm") == 1 and "head" not in b.failures.columns
    assert "head" not in b.imputations.columns and len(b.imputations) == len(a.imputations)
