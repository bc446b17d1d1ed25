"""The tuned comparison cross-fits its seeds (no seed both selects a level and is evaluated at
it), the simulator's trial luck that makes same-seed selection optimistic, and grid edges."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy.spec.design import Design, MetricDesign, TuneDesign
from bnstudy.stats import analyze, tuning
from bnstudy.stats import edges as edges_mod
from bnstudy.stats.imputation import ITT, score_trials
from bnstudy.stats.paired import condition_columns
from bnstudy.stats.simulate import grid_protocol, simulate_results

TUNE = "  tune: [lr]\n  bootstrap:\n    replicates: 100\n"
ONE = dict(datasets=("d0",), ratios=(1.0,))
CLAIM3 = Path(__file__).resolve().parents[2] / "data" / "results" / "study_claim3.parquet"


def _tuned_pairs(table, design, selection, variant="bn", metric="balanced_acc"):
    scored = score_trials(
        table, metric, condition_columns(design, table), ITT, design.failed_score, "higher"
    )
    return tuning.tuned_differences(table, design, metric, variant, scored, selection)


# -- the simulator -----------------------------------------------------------------------


def test_simulated_trial_luck_is_shared_by_validation_and_test_per_arm():
    protocol = grid_protocol(40, extra_analysis=TUNE, lrs=(0.01, 0.1), **ONE)
    table = simulate_results(
        protocol,
        effect=0.0,
        block_sd=0.0,
        condition_sd=0.0,
        sigma=0.1,
        val_sigma=0.1,
        trial_sd={"bn": 1.5, "plain": 0.5},
        seed=2,
    )
    for arm, sd in (("bn", 1.5), ("plain", 0.5)):
        rows = table[table["head"] == arm]
        test, val = 100 * rows["balanced_acc"], 100 * rows["val_balanced_acc"]
        assert test.std() == pytest.approx(sd, rel=0.25)  # 80 trials per arm
        # the luck is shared: validation and test move together, up to the small noises
        assert np.corrcoef(test, val)[0, 1] > 0.9
        assert (test - val).std() == pytest.approx(0.1 * np.sqrt(2), rel=0.3)


def test_without_trial_luck_the_simulated_tables_are_unchanged():
    protocol = grid_protocol(4, extra_analysis=TUNE, lrs=(0.01, 0.1), **ONE)
    before = simulate_results(protocol, effect=0.5, seed=7)
    pd.testing.assert_frame_equal(
        before, simulate_results(protocol, effect=0.5, seed=7, trial_sd=0)
    )
    lucky = simulate_results(protocol, effect=0.5, seed=7, trial_sd={"plain": 1.0})
    assert not np.allclose(before["balanced_acc"], lucky["balanced_acc"])


# -- cross-fitting -----------------------------------------------------------------------


def test_folds_alternate_the_sorted_seeds_of_each_condition():
    table = pd.DataFrame(
        {
            "dataset": ["a"] * 8 + ["b"] * 3,
            "head": ["plain", "bn"] * 4 + ["plain"] * 3,
            "seed": [9, 9, 3, 3, 1, 1, 7, 7, 5, 2, 8],
        }
    )
    folds = tuning.seed_folds(table, ["dataset"])
    # a: seeds 1, 3, 7, 9 -> A, B, A, B (both arms of a seed alike); b: 2, 5, 8 -> A, B, A
    assert list(folds) == ["B", "B", "B", "B", "A", "A", "A", "A", "B", "A", "A"]


@pytest.fixture(scope="module")
def split():
    """plain's validation favours lr 0.01 on fold A's seeds (0, 2, 4) and lr 0.1 on fold B's
    (1, 3, 5); bn's favours 0.1 everywhere."""
    protocol = grid_protocol(6, extra_analysis=TUNE, lrs=(0.01, 0.1), **ONE)
    table = simulate_results(protocol, effect=0.0, condition_sd=0.0, seed=11)
    plain = table["head"] == "plain"
    fold_a = table["seed"] % 2 == 0
    good = (plain & fold_a & (table["lr"] == 0.01)) | (plain & ~fold_a & (table["lr"] == 0.1))
    good |= ~plain & (table["lr"] == 0.1)
    table.loc[good, "val_balanced_acc"] += 0.2
    return protocol, table


def test_each_fold_selects_on_its_own_seeds_and_is_applied_to_the_other(split):
    protocol, table = split
    design = protocol.design()
    sel = tuning.select_levels(table, design)
    assert sel.scheme == tuning.CROSS_FIT and not sel.notes
    got = sel.table.set_index(["arm", "fold"])
    assert got.loc[("plain", "A"), "lr"] == 0.01 and got.loc[("plain", "B"), "lr"] == 0.1
    assert (got.xs("bn")["lr"] == 0.1).all()
    assert got.loc[("plain", "A"), "evaluated_on"] == "B"
    assert got.loc[("plain", "B"), "evaluated_on"] == "A"
    assert (sel.table["n_trials"] == 3).all()
    # fold B's pairs (odd seeds) at the levels chosen on fold A, and the other way round
    pairs = _tuned_pairs(table, design, sel)
    test = table.set_index(["head", "lr", "seed"])["balanced_acc"] * 100
    expect = {
        s: test[("bn", 0.1, s)] - test[("plain", 0.01 if s % 2 else 0.1, s)] for s in range(6)
    }
    got_d = dict(zip(pairs.frame["block_id"].str.rsplit(":", n=1).str[1].astype(int),
                     pairs.frame["d"], strict=True))  # fmt: skip
    assert got_d == pytest.approx(expect)
    # the old selection: all seeds choose, the same seeds are evaluated
    old = tuning.same_seed_selection(table, design)
    assert set(old.table["fold"]) == {"all"} and len(old.table) == 2
    assert _tuned_pairs(table, design, old).n_pairs == 6


def test_a_condition_with_one_seed_has_no_cross_fitted_pairs():
    protocol = grid_protocol(1, extra_analysis=TUNE, lrs=(0.01, 0.1), **ONE)
    table = simulate_results(protocol, seed=1)
    design = protocol.design()
    sel = tuning.select_levels(table, design)
    assert set(sel.table["fold"]) == {"A"}
    assert any("cross-fitting" in n for n in sel.notes)
    assert _tuned_pairs(table, design, sel).n_pairs == 0


def test_cross_fitting_removes_the_bias_toward_the_noisier_arm():
    """Identical means at 4 lrs; bn's trials vary 3 pp from seed to seed, plain's not at all.
    Choosing on the seeds it is evaluated on flatters bn by E[max of 4 N(0,1)] * 3 / sqrt(20)
    = 0.69 pp; cross-fitted, the estimate is centred on the truth, 0 (its SD here: 0.14)."""
    protocol = grid_protocol(
        20,
        extra_analysis=TUNE,
        datasets=("d0", "d1", "d2", "d3"),
        ratios=(1.0, 10.0, 50.0),
        lrs=(0.01, 0.03, 0.1, 0.3),
    )
    table = simulate_results(
        protocol,
        effect=0.0,
        block_sd=0.0,
        condition_sd=0.0,
        sigma=0.1,
        val_sigma=0.1,
        trial_sd={"bn": 3.0, "plain": 0.0},
        seed=5,
    )
    design = protocol.design()
    row = analyze(table, design).headline()
    assert row["estimand"] == "tuned" and row["n_pairs"] == 12 * 20
    assert abs(row["estimate"]) < 0.35
    old = _tuned_pairs(table, design, tuning.same_seed_selection(table, design))
    assert old.frame["d"].mean() > 0.45


# -- grid edges --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edges():
    """plain trains best at the lowest lr tried, bn at the highest, bn_noaffine in between."""
    protocol = grid_protocol(
        6,
        heads=("plain", "bn", "bn_noaffine"),
        extra_analysis=TUNE,
        datasets=("d0", "d1"),
        ratios=(1.0,),
        lrs=(0.01, 0.03, 0.1),
    )
    optima = {"plain": 0.01, "bn": 0.1, "bn_noaffine": 0.03}
    table = simulate_results(protocol, lr_optimum=optima, lr_curvature=4.0, seed=3)
    return protocol.design(), table


def test_selected_levels_say_when_the_choice_is_at_an_edge_of_the_grid(edges):
    design, table = edges
    a = analyze(table, design)
    sel = a.selected_levels.query("population == @ITT")
    assert "at_edge" in tuning.SELECTION_COLUMNS and len(sel) == 3 * 2 * 2
    assert set(sel.query("arm == 'plain'").at_edge) == {"low"}
    assert set(sel.query("arm == 'bn'").at_edge) == {"high"}
    assert set(sel.query("arm == 'bn_noaffine'").at_edge) == {""}
    assert set(sel.groupby("arm").lr.first().items()) == {
        ("plain", 0.01), ("bn", 0.1), ("bn_noaffine", 0.03)
    }  # fmt: skip


def test_edges_per_metric_variant_and_condition_honour_declared_bounds(edges):
    design, table = edges
    sel = tuning.select_levels(table, design)
    found = edges_mod.tuning_edges(sel, design)
    assert list(found.columns) == [*edges_mod.EDGE_COLUMNS, "dataset"]
    assert len(found) == 1 * 2 * 2  # metric x variant x condition
    # bn vs plain: both at an edge; bn_noaffine vs plain: the control is
    assert found["edge"].all()
    bn = found.query("variant == 'bn'")["detail"].iloc[0]
    assert "bn at lr=0.1, the highest tried (folds A, B)" in bn
    assert "plain at lr=0.01, the lowest tried (folds A, B)" in bn
    # lr 0.01 declared as the lowest anyone would use: plain's choice is no edge to worry about
    low = edges_mod.tuning_edges(sel, design, {"lr": (0.01, None)})
    by_variant = low.set_index("variant")
    assert by_variant.loc["bn", "edge"].all() and not by_variant.loc["bn_noaffine", "edge"].any()
    assert "plain" not in " ".join(by_variant.loc["bn", "detail"])
    both = edges_mod.tuning_edges(sel, design, {"lr": (0.01, 0.1)}, metrics=["balanced_acc", "nll"])
    assert len(both) == 2 * 2 * 2 and not both["edge"].any()
    # the sentence the analysis adds to its diagnostics, for a whole comparison or a level
    said = edges_mod.rests_on_edge(found, "balanced_acc", "bn")
    assert "2 of 2 condition(s)" in said and "inconclusive" in said
    assert "1 of 1" in edges_mod.rests_on_edge(found, "balanced_acc", "bn", where={"dataset": "d1"})
    assert edges_mod.rests_on_edge(found, "balanced_acc", "bn", where={"dataset": "d2"}) == ""
    assert edges_mod.rests_on_edge(low, "balanced_acc", "bn_noaffine") == ""
    assert tuning.EDGE_VERDICT == "inconclusive (tuning grid edge)"


def test_declared_bounds_come_from_the_design_unless_given(edges):
    design, table = edges
    sel = tuning.select_levels(table, design)
    declared = dataclasses.replace(design, tune_settings={"lr": TuneDesign((0.01, 0.1))})
    assert not edges_mod.tuning_edges(sel, declared)["edge"].any()
    assert edges_mod.tuning_edges(sel, declared, bounds={})["edge"].all()


def test_a_level_tried_beyond_the_choice_makes_it_no_edge_even_without_a_value(edges):
    """ok only: bn failed at every seed at lr 0.1, so it is chosen at 0.03, which is inside the
    grid tried (0.1 was tried and lost)."""
    design, table = edges
    table = table.copy()
    bad = (table["head"] == "bn") & (table["lr"] == 0.1)
    table.loc[bad, "status"] = "diverged"
    table.loc[bad, ["balanced_acc", "val_balanced_acc"]] = np.nan
    sel = tuning.select_levels(table, design, "ok only").table.query("arm == 'bn'")
    assert (sel["lr"] == 0.03).all() and (sel["at_edge"] == "").all()
    assert (sel["n_levels"] == 2).all()  # levels with a value


def test_edges_of_several_tuning_factors_are_named_and_read_back():
    design = Design(
        treatment="head",
        control="plain",
        variants=("bn",),
        conditions=("lr", "weight_decay"),
        moderators={},
        metrics={"balanced_acc": MetricDesign("higher", None)},
        tuning=("lr", "weight_decay"),
        select_by="val_balanced_acc",
    )
    best = {"plain": (0.01, 1e-4), "bn": (0.1, 1e-3)}
    rows = [
        {"head": h, "lr": lr, "weight_decay": wd, "seed": s, "status": "ok", "block_id": "",
         "val_balanced_acc": 0.9 if (lr, wd) == best[h] else 0.5, "balanced_acc": 0.5}
        for h in best for lr in (0.01, 0.1) for wd in (0.0, 1e-4, 1e-3) for s in range(4)
    ]  # fmt: skip
    sel = tuning.select_levels(pd.DataFrame(rows), design).table.set_index("arm")
    assert set(sel.loc["plain", "at_edge"]) == {"lr low"}
    assert set(sel.loc["bn", "at_edge"]) == {"lr high, weight_decay high"}
    sides = tuning.edge_sides("lr low, weight_decay high", ["lr", "weight_decay"])
    assert sides == [("lr", "low"), ("weight_decay", "high")]
    assert tuning.edge_sides("high", ["lr"]) == [("lr", "high")]
    assert tuning.edge_sides("", ["lr"]) == []


def test_claim3_bn_at_lr_0_03_is_flagged_as_a_grid_edge_in_every_condition():
    """The committed study: BN's choice, lr 0.03, is the lowest learning rate tried."""
    from bnstudy import study

    recorded = study.load_results(CLAIM3)
    design = dataclasses.replace(
        recorded.protocol.design(), tuning=("lr",), select_by="val_balanced_acc"
    )
    sel = tuning.select_levels(recorded.results.table, design)
    bn = sel.table.query("arm == 'bn'")
    assert bn["condition"].nunique() == 8 and len(bn) == 8 * 2  # x two folds
    assert (bn["lr"] == 0.03).all() and (bn["at_edge"] == "low").all()
    found = edges_mod.tuning_edges(sel, design).query("variant == 'bn'")
    assert len(found) == 2 * 8  # two metrics x eight conditions
    assert found["edge"].all()
    assert found["detail"].str.contains("bn at lr=0.03, the lowest tried").all()
    # declared as the lowest anyone would use, lr 0.03 is no longer an edge to worry about
    bounded = edges_mod.tuning_edges(sel, design, {"lr": (0.03, None)})
    assert not bounded["detail"].str.contains("bn at").any()
