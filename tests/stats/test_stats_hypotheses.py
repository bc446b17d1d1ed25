"""Hypotheses judged on simulated tables with known effects; Holm over the confirmatory family."""

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.spec.design import HypothesisDesign
from bnstudy.stats import analyze
from bnstudy.stats.derived import with_derived_metrics
from bnstudy.stats.hypotheses import (
    EXPLORATORY_VERDICT,
    HYPOTHESIS_COLUMNS,
    NO_ESTIMATE,
    evaluate_hypotheses,
)
from bnstudy.stats.inference import adjust
from bnstudy.stats.simulate import grid_protocol, simulate_results

GRID = dict(datasets=("d0", "d1"), ratios=(1.0, 100.0), lrs=(0.01, 0.1))


def hyp(id_="h", expect="higher", metric="balanced_acc", margin=0.5, **kw) -> HypothesisDesign:
    fields = dict(
        id=id_,
        claim=f"claim {id_}",
        metric=metric,
        variant="bn",
        control="plain",
        where={},
        expect=expect,
        margin=margin,
        estimand="fixed",
        sha256=f"hash-{id_}",
    )
    return HypothesisDesign(**{**fields, **kw})


def evaluate(table, protocol, hypotheses, registered="all"):
    if registered == "all":
        registered = {h.sha256 for h in hypotheses}
    return evaluate_hypotheses(table, protocol.design(), hypotheses, registered).set_index("id")


def test_known_effect_is_supported_and_no_effect_is_equivalent():
    protocol = grid_protocol(8, heads=("plain", "bn", "ln"), **GRID)
    table = simulate_results(protocol, effect={"bn": 2.0, "ln": 0.0}, sigma=0.2, seed=1)
    rows = evaluate(
        table,
        protocol,
        [
            hyp("up"),
            hyp("down", expect="lower"),
            hyp("same", expect="equivalent", variant="ln"),
            hyp("ratio1", expect="equivalent", variant="ln", where={"imbalance_ratio": (1,)}),
        ],
    )
    assert rows.loc["up", "verdict"] == "supported"
    assert rows.loc["up", "ci_low"] < 2.0 < rows.loc["up", "ci_high"]
    assert rows.loc["up", "n_pairs"] == 8 * 8 and rows.loc["up", "n_conditions"] == 8
    assert rows.loc["down", "verdict"] == "contradicted"
    assert rows.loc["same", "verdict"] == "equivalent"
    assert abs(rows.loc["same", "estimate"]) < 0.5
    assert rows.loc["ratio1", "n_pairs"] == 8 * 4  # the where subset only
    assert rows.loc["ratio1", "subset"] == "imbalance_ratio in {1}"
    # The same numbers as the main analysis of the whole table for the unrestricted claim.
    full = analyze(table, protocol.design()).headline("balanced_acc", "bn")
    assert rows.loc["up", "estimate"] == pytest.approx(full["estimate"])


def test_a_directional_claim_about_the_average_is_tested_beyond_its_margin():
    """A true +2 pp effect, measured tightly: "higher by more than 1" is supported, "higher
    by more than 3" contradicted (the CI lies wholly short of +3, though wholly above 0), and
    "higher by more than 2" (the truth on the line) not supported."""
    protocol = grid_protocol(8, **GRID)
    table = simulate_results(protocol, effect=2.0, sigma=0.2, seed=5)
    rows = evaluate(
        table,
        protocol,
        [hyp("by1", margin=1.0), hyp("by3", margin=3.0), hyp("by2", margin=2.0)],
    )
    assert rows.loc["by3", "ci_low"] > 0 and rows.loc["by3", "ci_high"] < 3.0
    assert rows.loc["by1", "verdict"] == "supported"
    assert rows.loc["by3", "verdict"] == "contradicted"
    assert rows.loc["by2", "verdict"] != "supported"
    assert rows.loc["by3", "note"] == "tested against +3 pp (the margin)"
    # the same test as the CI: p < alpha exactly when the CI excludes the threshold
    assert rows.loc["by1", "p"] < 0.05 and rows.loc["by1", "ci_low"] > 1.0


def test_a_clear_effect_is_not_equivalent():
    protocol = grid_protocol(6, **GRID)
    table = simulate_results(protocol, effect=3.0, sigma=0.2, seed=2)
    rows = evaluate(table, protocol, [hyp("eq", expect="equivalent")])
    assert rows.loc["eq", "verdict"] == "not equivalent"


def test_interaction_is_the_effect_at_high_minus_at_low():
    """slope per ln(ratio): the effect at 100 minus at 1 is slope * ln(100)."""
    protocol = grid_protocol(8, **GRID)
    slope = 1.0
    table = simulate_results(protocol, effect=0.0, slope=slope, sigma=0.3, seed=3)
    truth = slope * math.log(100)
    up = hyp("int", interaction=("imbalance_ratio", 1, 100))
    turned = hyp("turned", expect="lower", interaction=("imbalance_ratio", 100, 1))
    rows = evaluate(table, protocol, [up, turned])
    assert rows.loc["int", "ci_low"] < truth < rows.loc["int", "ci_high"]
    assert rows.loc["int", "verdict"] == "supported"
    assert rows.loc["turned", "estimate"] == pytest.approx(-rows.loc["int", "estimate"])
    assert rows.loc["turned", "verdict"] == "supported"
    assert rows.loc["int", "scope"] == "imbalance_ratio_contrast"


def test_holm_over_the_preregistered_family_and_exploratory_unadjusted():
    protocol = grid_protocol(4, **GRID)
    table = simulate_results(protocol, effect=0.4, sigma=1.0, seed=4)
    hs = [hyp("a"), hyp("b", where={"imbalance_ratio": (1,)}), hyp("c", where={"dataset": ("d0",)})]
    rows = evaluate(table, protocol, hs, registered={"hash-a", "hash-b"})
    p = rows["p"]
    lo, hi = sorted(["a", "b"], key=lambda i: p[i])
    assert rows.loc[lo, "p_adj"] == pytest.approx(min(1, 2 * p[lo]))
    assert rows.loc[hi, "p_adj"] == pytest.approx(min(1, max(2 * p[lo], p[hi])))
    assert math.isnan(rows.loc["c", "p_adj"])
    assert list(rows["registration"]) == ["pre-registered", "pre-registered", "exploratory"]
    assert rows.loc["c", "verdict"].endswith(EXPLORATORY_VERDICT)
    none = evaluate(table, protocol, hs, registered=None)  # a file with no registration
    assert (none["registration"] == "exploratory").all() and none["p_adj"].isna().all()


def test_failure_metric_counts_failed_trials_as_they_ended():
    protocol = grid_protocol(6, **GRID)
    table = simulate_results(protocol, effect=0.0, sigma=0.5, seed=5)
    rng = np.random.default_rng(0)
    bn = (table["head"] == "bn").to_numpy()
    fails = bn & (rng.random(len(table)) < 0.5)
    table.loc[fails, "status"] = "diverged"
    derived = with_derived_metrics(table)
    assert (derived["failure"] == fails.astype(float)).all()
    rows = evaluate(table, protocol, [hyp("fail", metric="failure", margin=None)])
    truth = 100 * fails[bn].mean()  # pp; control never fails
    assert rows.loc["fail", "estimate"] == pytest.approx(truth)
    assert rows.loc["fail", "verdict"] == "supported" and rows.loc["fail", "unit"] == "pp"


def test_an_empty_subset_has_no_estimate_and_says_why():
    protocol = grid_protocol(3, **GRID)
    table = simulate_results(protocol, seed=6)
    rows = evaluate(table, protocol, [hyp("x", where={"dataset": ("nowhere",)})])
    assert rows.loc["x", "verdict"] == NO_ESTIMATE and rows.loc["x", "note"]
    assert evaluate_hypotheses(table, protocol.design(), [], None).empty
    assert isinstance(rows, pd.DataFrame)


def test_every_row_names_its_estimand_and_quantifier():
    protocol = grid_protocol(3, **GRID)
    table = simulate_results(protocol, seed=6)
    rows = evaluate(table, protocol, [hyp("a"), hyp("b", quantifier="any")])
    assert list(HYPOTHESIS_COLUMNS[HYPOTHESIS_COLUMNS.index("estimand") :][:2]) == [
        "estimand",
        "quantifier",
    ]
    assert list(rows.columns) == [c for c in HYPOTHESIS_COLUMNS if c != "id"]
    assert list(rows["quantifier"]) == ["average", "any"]
    assert list(rows["estimand"]) == ["fixed", "fixed"]


def regimes_table():
    """Effect 0 at ratio 1, -1 * ln(100) = -4.6 pp at ratio 100: the average (-2.3 pp) hides
    two regimes, equivalent and severely worse."""
    protocol = grid_protocol(8, **GRID)
    return protocol, simulate_results(protocol, effect=0.0, slope=-1.0, sigma=0.2, seed=1)


def test_quantified_claims_are_judged_condition_by_condition():
    protocol, table = regimes_table()
    rows = evaluate(
        table,
        protocol,
        [
            hyp("avg", expect="lower"),
            hyp("hurts_somewhere", expect="lower", quantifier="any"),
            hyp("hurts_everywhere", expect="lower", quantifier="all"),
            hyp("helps_somewhere", expect="higher", quantifier="any"),
            hyp("same_somewhere", expect="equivalent", quantifier="any"),
            hyp("same_everywhere", expect="equivalent", quantifier="all"),
            hyp(
                "hurts_at_100", expect="lower", quantifier="all", where={"imbalance_ratio": (100,)}
            ),
        ],
    )
    verdicts = rows["verdict"].to_dict()
    assert verdicts == {
        # the average (-2.3 pp on 7 df) does not survive Holm over seven hypotheses...
        "avg": "inconclusive",
        # ...while the harm where it is, is plain
        "hurts_somewhere": "supported",  # beyond -0.5 pp at ratio 100
        "hurts_everywhere": "contradicted",  # at ratio 1 it is shown short of -0.5 pp
        "helps_somewhere": "contradicted",  # every condition is shown below +0.5 pp
        "same_somewhere": "equivalent",  # ratio 1
        "same_everywhere": "not equivalent",  # ratio 100
        "hurts_at_100": "supported",
    }
    # the estimate shown stays the average, for context; the note says which conditions
    assert rows.loc["hurts_somewhere", "estimate"] == pytest.approx(rows.loc["avg", "estimate"])
    assert rows.loc["hurts_somewhere", "note"].startswith("below -0.5 pp in 4 of 8 conditions")
    assert "imbalance_ratio=100" in rows.loc["hurts_somewhere", "note"]
    assert rows.loc["hurts_at_100", "n_conditions"] == 4
    # the p of a quantified claim joins the Holm family over hypotheses like any other
    p = rows["p"].to_numpy()
    assert rows["p_adj"].to_numpy() == pytest.approx(adjust(p, "holm"))


def test_a_quantified_claim_without_evidence_is_inconclusive():
    protocol = grid_protocol(3, **GRID)
    table = simulate_results(protocol, effect=0.0, sigma=3.0, seed=8)
    rows = evaluate(
        table,
        protocol,
        [
            hyp("any", expect="lower", quantifier="any"),
            hyp("all", expect="equivalent", quantifier="all"),
        ],
    )
    assert list(rows["verdict"]) == ["inconclusive", "inconclusive"]
    exploratory = evaluate(table, protocol, [hyp("x", quantifier="any")], registered=None)
    assert exploratory.loc["x", "verdict"] == "inconclusive" + EXPLORATORY_VERDICT


def test_not_learned_counts_failures_and_ok_trials_at_chance():
    """A network can end ok and predict at chance: "it would not learn" counts it, failure
    does not. The line for 10 classes is 10% + 0.1 * 90% = 19% balanced accuracy."""
    protocol = grid_protocol(4, **GRID)
    table = simulate_results(protocol, effect=0.0, sigma=0.5, seed=6)
    bn = (table["head"] == "bn").to_numpy()
    seed = table["seed"].to_numpy()
    table.loc[bn & (seed == 0), "status"] = "diverged"
    table.loc[bn & (seed == 1), "balanced_acc"] = 0.185  # ok, just under the line
    table.loc[bn & (seed == 2), "balanced_acc"] = 0.195  # ok, just over it
    assert table["class_counts"].map(len).eq(10).all()
    derived = with_derived_metrics(table)
    assert derived.loc[bn & (seed == 0), "not_learned"].eq(1.0).all()
    assert derived.loc[bn & (seed == 1), "not_learned"].eq(1.0).all()
    assert derived.loc[bn & (seed == 1), "failure"].eq(0.0).all()
    assert derived.loc[bn & (seed == 2), "not_learned"].eq(0.0).all()
    assert derived.loc[~bn, "not_learned"].eq(0.0).all()  # simulated accuracies are far above
    rows = evaluate(table, protocol, [hyp("nl", metric="not_learned", margin=None)])
    assert rows.loc["nl", "estimate"] == pytest.approx(50.0)  # 2 of 4 bn seeds, pp
    assert rows.loc["nl", "unit"] == "pp"


def test_not_learned_line_follows_the_number_of_classes():
    """Two classes: the line is 50% + 0.1 * 50% = 55%. A failed row without class_counts
    takes its dataset's count; an ok row whose accuracy is unknown is NaN, not 0."""
    table = pd.DataFrame(
        {
            "status": ["ok", "ok", "diverged", "ok", "ok"],
            "dataset": ["two", "two", "two", "ten", "ten"],
            "balanced_acc": [0.54, 0.56, np.nan, 0.18, np.nan],
            "class_counts": [[5, 5], [5, 5], [], [1] * 10, [1] * 10],
        }
    )
    derived = with_derived_metrics(table)
    assert derived["not_learned"].tolist()[:4] == [1.0, 0.0, 1.0, 1.0]
    assert np.isnan(derived["not_learned"].iloc[4])
