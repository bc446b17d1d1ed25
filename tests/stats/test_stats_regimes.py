"""Per-condition verdicts (Holm over the conditions), regimes and the headline sentence."""

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.spec.design import MetricDesign
from bnstudy.stats import analyze
from bnstudy.stats.inference import adjust, p_value, tost_p
from bnstudy.stats.regimes import (
    NO_DIFFERENCE_PHRASES,
    condition_verdicts,
    headline_sentence,
    quantified_test,
    regime_phrase,
    regimes,
)
from bnstudy.stats.simulate import grid_protocol, simulate_paired, simulate_results

ACC = {"balanced_acc": MetricDesign("higher", 0.5), "nll": MetricDesign("lower", 0.02)}


def table(estimates, se, n_pairs=8, metric="balanced_acc", estimand="fixed"):
    k = len(estimates)
    return pd.DataFrame(
        {
            "metric": metric,
            "variant": "bn",
            "control": "plain",
            "condition": [f"c{i}" for i in range(k)],
            "estimate": estimates,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "n_pairs": n_pairs,
            "se": se,
            "estimand": estimand,
        }
    )


def test_each_condition_gets_a_holm_adjusted_verdict():
    pc = table([2.0, -2.0, 0.05, 0.6, 0.3], [0.3, 0.3, 0.05, 0.5, 0.05])
    out = condition_verdicts(pc, ACC, 0.95)
    p = [p_value(e, s, 7) for e, s in zip(pc["estimate"], pc["se"], strict=True)]
    tost = [tost_p(e, s, 7, 0.5) for e, s in zip(pc["estimate"], pc["se"], strict=True)]
    assert out["p"].to_numpy() == pytest.approx(p)
    assert out["p_adj"].to_numpy() == pytest.approx(adjust(np.array(p), "holm"))
    assert out["p_tost_adj"].to_numpy() == pytest.approx(adjust(np.array(tost), "holm"))
    assert list(out["verdict"]) == ["better", "worse", "equivalent", "inconclusive", "equivalent"]
    # c4 (0.3, se 0.05) is shown non-zero *and* inside the margin: equivalence takes precedence
    assert out.loc[4, "p_adj"] < 0.05
    # "lower is better" for nll: a negative difference is better
    nll = condition_verdicts(table([-0.5, 0.5], [0.05, 0.05], metric="nll"), ACC)
    assert list(nll["verdict"]) == ["better", "worse"]


def test_holm_is_over_the_conditions_of_one_family_only():
    """Each metric x variant x estimand is its own family: a second estimand's conditions do
    not make the first one's adjustment stricter."""
    fixed = table([0.9, 0.2, 0.1], [0.35, 0.3, 0.3])
    both = pd.concat([fixed, table([3.0] * 5, [0.3] * 5, estimand="tuned")], ignore_index=True)
    out = condition_verdicts(both, ACC)
    alone = condition_verdicts(fixed, ACC)
    assert out["p_adj"].to_numpy()[:3] == pytest.approx(alone["p_adj"].to_numpy())
    assert out.loc[0, "p_adj"] == pytest.approx(3 * out.loc[0, "p"])
    # without the adjustment the first condition would read "better"
    assert out.loc[0, "p"] < 0.05 < out.loc[0, "p_adj"] and out.loc[0, "verdict"] != "better"


def test_a_condition_with_one_pair_is_inconclusive_and_not_counted():
    pc = table([2.0, 2.0], [0.3, np.nan])
    pc["n_pairs"] = [8, 1]
    out = condition_verdicts(pc, ACC)
    assert list(out["verdict"]) == ["better", "inconclusive"]
    assert out.loc[0, "p_adj"] == pytest.approx(out.loc[0, "p"])  # a family of one test
    assert math.isnan(out.loc[1, "p_adj"])


def test_regimes_count_and_name_the_conditions():
    pc = table([2.0, -2.0, -3.0, 0.05, 0.6], [0.3, 0.3, 0.3, 0.05, 0.5])
    (row,) = regimes(condition_verdicts(pc, ACC)).to_dict("records")
    assert (row["n_better"], row["n_worse"], row["n_equivalent"], row["n_inconclusive"]) == (
        1,
        2,
        1,
        1,
    )
    assert row["better"] == "c0" and row["worse"] == "c1; c2"
    assert row["regimes"] == (
        "better in 1, worse in 2, equivalent in 1, inconclusive in the rest of 5 conditions"
    )
    assert regime_phrase(row) == (
        "better in 1 (c0), worse in 2 (c1; c2), equivalent in 1, inconclusive in the rest of "
        "5 conditions"
    )
    assert regime_phrase(row, max_labels=1).startswith("better in 1 (c0), worse in 2 (c1 and 1 ")


def _random_case(rng: np.random.Generator) -> tuple[dict, dict]:
    g = int(rng.integers(1, 15))
    counts = rng.multinomial(g, rng.dirichlet(np.ones(4)))
    regime = dict(
        n_conditions=g,
        n_better=int(counts[0]),
        n_worse=int(counts[1]),
        n_equivalent=int(counts[2]),
        n_inconclusive=int(counts[3]),
        better="; ".join(f"b{i}" for i in range(counts[0])),
        worse="; ".join(f"w{i}" for i in range(counts[1])),
    )
    estimate = float(rng.normal(0, 1))
    average = dict(
        metric="balanced_acc",
        variant="bn",
        control="plain",
        estimate=estimate,
        ci_low=estimate - abs(float(rng.normal(0, 1))),
        ci_high=estimate + abs(float(rng.normal(0, 1))),
        verdict=str(
            rng.choice(
                [
                    "better",
                    "worse",
                    "inconclusive",
                    "equivalent (on average)",
                    "equivalent (PI within margin)",
                ]
            )
        ),
    )
    return average, regime


def test_the_headline_never_says_no_difference_while_a_condition_differs():
    """The property, over many random averages and regimes: while any condition is better or
    worse after adjustment, no phrase of "no difference"/"no harm" and no claim about every
    condition (PI within margin) appears; the counts and the named conditions always do."""
    rng = np.random.default_rng(0)
    said_no_difference = 0
    for _ in range(2000):
        average, regime = _random_case(rng)
        sentence = headline_sentence(average, regime, "pp", 0.95, margin=0.5)
        low = sentence.lower()
        differs = regime["n_better"] + regime["n_worse"] > 0
        if differs:
            assert not any(phrase in low for phrase in NO_DIFFERENCE_PHRASES), sentence
            assert "pi within margin" not in low, sentence
            assert f"worse in {regime['n_worse']}" in sentence, sentence
            assert f"better in {regime['n_better']}" in sentence, sentence
            for name in (regime["worse"] + "; " + regime["better"]).split("; ")[:6]:
                assert not name or name in sentence
        said_no_difference += "no difference" in low
        assert f"{average['estimate']:+.3g} pp on average" in sentence
    assert said_no_difference > 0  # the phrase exists, for regimes where it is true


def test_the_headline_states_the_average_and_the_regimes():
    average = dict(
        metric="balanced_acc",
        variant="bn",
        control="plain",
        estimate=-0.2,
        ci_low=-0.4,
        ci_high=0.1,
        verdict="equivalent (PI within margin)",
    )
    regime = dict(
        n_conditions=12,
        n_better=0,
        n_worse=2,
        n_equivalent=7,
        n_inconclusive=3,
        better="",
        worse="batch_size=32, lr=0.1; batch_size=32, lr=0.01",
    )
    assert headline_sentence(average, regime, "pp") == (
        "bn − plain on balanced_acc: -0.2 pp on average (95% CI -0.4 to +0.1; equivalent (on "
        "average)); by condition (Holm over 12): better in 0, worse in 2 (batch_size=32, "
        "lr=0.1; batch_size=32, lr=0.01), equivalent in 7, inconclusive in the rest of 12 "
        "conditions."
    )
    same = dict(regime, n_worse=0, worse="", n_equivalent=12, n_inconclusive=0)
    assert headline_sentence(average, same, "pp", margin=0.5).endswith(
        "equivalent within ±0.5 pp in every one of the 12 conditions (Holm): no difference "
        "beyond the margin in any condition studied."
    )


def test_regimes_of_a_simulated_study_find_the_harmed_conditions():
    """Effect 0 at ratio 1 and -4.6 pp at ratio 100 (slope -1 per ln ratio): the average is
    "worse", and the regimes say where."""
    protocol = grid_protocol(
        8,
        datasets=("d0", "d1"),
        ratios=(1.0, 100.0),
        lrs=(0.01, 0.1),
        extra_analysis="  bootstrap: {replicates: 100}\n",
    )
    design = protocol.design()
    results = simulate_results(protocol, effect=0.0, slope=-1.0, sigma=0.2, seed=1)
    analysis = analyze(results, design)
    verdicts = condition_verdicts(analysis.per_condition, design.metrics, design.confidence)
    (row,) = regimes(verdicts).to_dict("records")
    assert (row["n_worse"], row["n_equivalent"], row["n_conditions"]) == (4, 4, 8)
    assert all("imbalance_ratio=100" in c for c in row["worse"].split("; "))
    sentence = headline_sentence(analysis.headline("balanced_acc", "bn"), row, "pp", margin=0.5)
    assert "worse in 4 (dataset=d0, imbalance_ratio=100" in sentence
    assert "on average" in sentence and "no difference" not in sentence
    # analyze runs the same: each condition's verdict in per_condition, the counts in regimes
    for column in ("p", "p_adj", "p_tost", "p_tost_adj"):
        np.testing.assert_allclose(analysis.per_condition[column], verdicts[column])
    assert analysis.per_condition["verdict"].tolist() == verdicts["verdict"].tolist()
    (stored,) = analysis.regimes.to_dict("records")
    assert stored["estimand"] == "fixed" and stored["regimes"] == row["regimes"]
    assert stored["worse"] == row["worse"]
    doc = analysis.to_document()["tables"]
    assert doc["regimes"][0]["n_worse"] == 4
    assert {"verdict", "p_adj"} <= set(doc["per_condition"][0])


def _conditions(d: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"d": d, "g": groups}).groupby("g")["d"]
    out = frame.agg(estimate="mean", sd="std", n_pairs="count").reset_index()
    out["se"] = out["sd"] / np.sqrt(out["n_pairs"])
    out["condition"] = "g=" + out["g"].astype(str)
    return out


def test_any_and_all_hold_their_error_rate_over_the_conditions():
    """Every condition exactly at the threshold: "higher than the margin in any condition" is
    supported in at most alpha of studies (Holm), where twelve unadjusted tests would claim it
    in about a quarter of them."""
    supported_any = unadjusted = supported_all = 0
    reps = 200
    for seed in range(reps):
        d, groups, _ = simulate_paired(12, 6, effect=0.5, seed=seed)
        pc = _conditions(d, groups)
        test = quantified_test(pc, "higher", "any", 0.5)
        supported_any += test.predicted and test.p < 0.05
        raw = [p_value(e - 0.5, s, 5) for e, s in zip(pc["estimate"], pc["se"], strict=True)]
        unadjusted += any(p < 0.05 and e > 0.5 for p, e in zip(raw, pc["estimate"], strict=True))
        test = quantified_test(pc, "higher", "all", 0.5)
        supported_all += test.predicted and test.p < 0.05
    assert supported_any / reps <= 0.05 and supported_all == 0
    assert unadjusted / reps > 0.15


def test_quantified_tests_name_the_deciding_conditions():
    # c0 far beyond +0.5, c1 near 0 (short of it), c2 unclear
    pc = table([3.0, 0.0, 0.6], [0.2, 0.05, 0.5])
    anywhere = quantified_test(pc, "higher", "any", 0.5)
    assert anywhere.predicted and anywhere.p < 0.05 and anywhere.beyond == ("c0",)
    assert anywhere.short == ("c1",) and anywhere.n_conditions == 3
    assert anywhere.note.startswith("above +0.5 in 1 of 3 conditions (Holm) (c0); short of")
    everywhere = quantified_test(pc, "higher", "all", 0.5)
    assert not everywhere.predicted and everywhere.p < 0.05  # c1 contradicts "all"
    # "lower than -0.5 somewhere": every condition is shown short of it only if c2 is too
    lower = quantified_test(pc, "lower", "any", 0.5)
    assert not lower.predicted and lower.p >= 0.05
    # without a margin the threshold is 0
    zero = quantified_test(pc, "higher", "all", None)
    assert zero.note.startswith("above 0 in 1 of 3")
    # equivalence: c1 is inside +-0.5, c0 beyond it
    eq_any = quantified_test(pc, "equivalent", "any", 0.5)
    assert eq_any.p < 0.05 and eq_any.beyond == ("c1",) and not eq_any.refuted
    eq_all = quantified_test(pc, "equivalent", "all", 0.5)
    assert eq_all.refuted and eq_all.short == ("c0",) and eq_all.p >= 0.05
    with pytest.raises(ValueError, match="quantifier"):
        quantified_test(pc, "higher", "average", 0.5)
