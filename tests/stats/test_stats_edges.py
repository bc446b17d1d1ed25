"""Grid-edge verdicts: a tuned verdict that rests on a level chosen at the lowest or highest
level tried reads "inconclusive (tuning grid edge)", unless the protocol declares that level
a bound. Numbers, the family and the adjusted p do not change."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bnstudy import study
from bnstudy.spec.design import HypothesisDesign, TuneDesign
from bnstudy.stats import analyze
from bnstudy.stats.hypotheses import evaluate_hypotheses
from bnstudy.stats.inference import VERDICTS
from bnstudy.stats.simulate import grid_protocol, simulate_results
from bnstudy.stats.tuning import EDGE_VERDICT, TUNED

ROOT = Path(__file__).resolve().parents[2]
CLAIM3 = ROOT / "data" / "results" / "study_claim3.parquet"


def claim3_tuned(**tune_settings):
    """Claim 3's committed table analysed with each arm tuned over lr (0.03, 0.1, 0.3)."""
    recorded = study.load_results(CLAIM3)
    design = dataclasses.replace(
        recorded.protocol.design(),
        tuning=("lr",),
        select_by="val_balanced_acc",
        tune_settings=tune_settings,
        bootstrap_replicates=50,
    )
    return analyze(recorded.results.table, design)


@pytest.fixture(scope="module")
def claim3():
    return claim3_tuned(), claim3_tuned(lr=TuneDesign(bounds=(0.03, 0.3)))


def test_bn_is_chosen_at_the_grids_low_edge_and_the_tuned_verdicts_say_so(claim3):
    a, _ = claim3
    assert EDGE_VERDICT in VERDICTS
    sel = a.selected_levels.query("population == 'intention-to-treat' and arm == 'bn'")
    assert len(sel) and (sel["at_edge"] == "low").all() and (sel["lr"] == 0.03).all()
    tuned = a.primary().query("estimand == 'tuned'")
    judged = tuned[tuned["p_adj"].notna()]  # the family: the tuned overall rows
    assert len(judged) == 4 and (judged["verdict"] == EDGE_VERDICT).all()
    # every tuned verdict, of both populations, reads so; descriptions stay descriptions
    assert (a.estimates.query("estimand == 'tuned' and kind == 'overall'").verdict.str.startswith(
        EDGE_VERDICT
    )).all()  # fmt: skip
    assert tuned.query("kind != 'overall'").verdict.str.startswith("unadjusted: ").all()
    warnings = a.diagnostics.query("level == 'warning'").message
    assert warnings.str.contains("edge of the tuning grid in 8 of 8 condition").sum() >= 4
    assert warnings.str.contains("bn at lr=0.03, the lowest tried").any()
    # the conditions' own verdicts too
    pc = a.per_condition.query("estimand == 'tuned'")
    assert (pc["verdict"] == EDGE_VERDICT).all()
    assert (a.regimes.query("estimand == 'tuned'")["n_inconclusive"] == 8).all()
    assert a.tuning_edges["edge"].all() and set(a.tuning_edges["population"]) == {
        "intention-to-treat",
        "ok only",
    }


def test_a_declared_bound_is_no_edge_and_the_numbers_never_change(claim3):
    a, bounded = claim3
    assert not bounded.tuning_edges["edge"].any()
    tuned = bounded.primary().query("estimand == 'tuned' and p_adj.notna()")
    assert not (tuned["verdict"] == EDGE_VERDICT).any()
    assert not (bounded.per_condition["verdict"] == EDGE_VERDICT).any()
    numbers = ["estimate", "ci_low", "ci_high", "p", "p_adj", "pi_low", "pi_high"]
    pd.testing.assert_frame_equal(a.estimates[numbers], bounded.estimates[numbers])
    same = a.estimates["estimand"] != TUNED
    assert (a.estimates.verdict[same] == bounded.estimates.verdict[same]).all()
    pc = ["estimate", "p", "p_adj", "p_tost", "p_tost_adj"]
    pd.testing.assert_frame_equal(a.per_condition[pc], bounded.per_condition[pc])


def test_the_selection_note_says_the_seeds_are_cross_fitted(claim3):
    a, _ = claim3
    assert a.diagnostics.message.str.contains("no seed both selects and is evaluated").any()
    assert not a.diagnostics.message.str.contains("same seeds select and evaluate").any()


def test_a_tuned_hypothesis_resting_on_an_edge_is_inconclusive():
    protocol = grid_protocol(10, extra_analysis="  tune: [lr]\n", datasets=("d0", "d1"),
                             ratios=(1.0, 100.0), lrs=(0.01, 0.1))  # fmt: skip
    table = simulate_results(
        protocol, effect=5.0, seed=1, lr_optimum={"plain": 0.01, "bn": 0.1}, lr_curvature=2.0
    )
    h = HypothesisDesign(
        id="h", claim="bn helps", metric="balanced_acc", variant="bn", control="plain",
        where={}, expect="higher", margin=0.5, estimand="tuned", sha256="x",
    )  # fmt: skip
    design = protocol.design()
    edged = evaluate_hypotheses(table, design, [h], {"x"}).iloc[0]
    assert edged["verdict"] == EDGE_VERDICT and "edge of the tuning grid" in edged["note"]
    assert np.isfinite(edged["p_adj"]) and edged["p_adj"] < 0.05  # the test itself is unchanged
    bounded = dataclasses.replace(design, tune_settings={"lr": TuneDesign(bounds=(0.01, 0.1))})
    assert evaluate_hypotheses(table, bounded, [h], {"x"}).iloc[0]["verdict"] == "supported"
    # a fixed-setting hypothesis knows no grid
    fixed = dataclasses.replace(h, estimand="fixed")
    assert evaluate_hypotheses(table, design, [fixed], {"x"}).iloc[0]["verdict"] != EDGE_VERDICT
