"""Hand-computed values for the decision rules and effect-size estimators."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from bnstudy.stats.bootstrap import block_bootstrap
from bnstudy.stats.effect_sizes import d_z, probability_of_improvement
from bnstudy.stats.failures import paired_difference_interval, wilson_interval
from bnstudy.stats.inference import (
    UNADJUSTED_WORDS,
    VERDICTS,
    adjust,
    p_value,
    t_interval,
    tost_p,
    unadjusted_words,
    verdict,
)


def test_holm_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.04, 0.06)
    np.testing.assert_allclose(adjust(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust(p, "none"), p)
    # BH: sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 -> 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(adjust(p, "fdr_bh"), [0.02, 0.04, 0.04, 0.02])
    out = adjust(np.array([0.01, np.nan, 0.02]), "holm")
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02)


def test_tost_matches_the_ci_rule():
    assert tost_p(0.1, 0.1, 1000, 0.5) < 0.05
    assert tost_p(0.4, 0.1, 1000, 0.5) > 0.05
    assert np.isnan(tost_p(0.1, 0.1, 10, None))
    rng = np.random.default_rng(0)
    for est, se in zip(rng.normal(0, 0.5, 200), rng.uniform(0.05, 0.5, 200), strict=True):
        low, high = t_interval(est, se, 20, 0.90)
        assert (tost_p(est, se, 20, 0.5) < 0.05) == (low > -0.5 and high < 0.5)


def test_verdicts_follow_direction():
    assert verdict(-1.0, 0.001, np.nan, 0.05, "higher") == "worse"
    assert verdict(-1.0, 0.001, np.nan, 0.05, "lower") == "better"
    assert verdict(0.5, 0.001, 0.9, 0.05, "higher") == "better"
    assert verdict(0.1, 0.4, 0.01, 0.05, "higher") == "equivalent"
    assert verdict(0.1, 0.4, 0.2, 0.05, "higher") == "inconclusive"  # never "no effect"


def test_effect_sizes_by_hand():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert d_z(d) == pytest.approx(3 / np.sqrt(2.5))
    assert probability_of_improvement(np.array([1.0, -1.0, 0.0, 2.0]), "higher") == 0.625
    assert probability_of_improvement(np.array([1.0, -1.0, 0.0, 2.0]), "lower") == 0.375


def test_wilson_interval_known_value():
    low, high = wilson_interval(5, 10, 0.95)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 20, 0.95)[0] == 0.0


def test_bca_bootstrap_agrees_with_scipy():
    d = np.random.default_rng(1).gamma(2.0, 1.0, 200) - 1.5
    ours = block_bootstrap(d, "higher", 4000, 0, 0.95)
    ref = stats.bootstrap(
        (d,), np.mean, method="BCa", n_resamples=4000, random_state=np.random.default_rng(2)
    ).confidence_interval
    assert ours["mean_difference"][1] == pytest.approx(ref.low, abs=0.03)
    assert ours["mean_difference"][2] == pytest.approx(ref.high, abs=0.03)
    ref_dz = stats.bootstrap(
        (d,),
        lambda x, axis: np.mean(x, axis) / np.std(x, axis, ddof=1),
        method="BCa",
        n_resamples=4000,
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert ours["d_z"][1] == pytest.approx(ref_dz.low, abs=0.03)
    assert ours["d_z"][2] == pytest.approx(ref_dz.high, abs=0.03)


def test_zero_standard_error_takes_the_limit():
    # every paired difference identical: the t statistic is infinite, not undefined
    assert p_value(-1.0, 0.0, 5) == 0.0 and p_value(0.0, 0.0, 5) == 1.0
    assert tost_p(0.0, 0.0, 5, 0.5) == 0.0 and tost_p(0.7, 0.0, 5, 0.5) == 1.0
    assert np.isnan(p_value(1.0, np.nan, 5)) and np.isnan(tost_p(0.0, 0.0, 5, None))


def test_paired_failure_interval_is_newcombe():
    # with phi = 0 (a d = b c) Newcombe's paired interval equals his independent one
    ref = confint_proportions_2indep(6, 12, 4, 12, method="newcomb")
    assert paired_difference_interval(2, 4, 2, 4, 0.95) == pytest.approx(ref, abs=1e-12)
    # no discordant blocks (e.g. no failures at all): not the Wald interval's [0, 0]
    low, high = paired_difference_interval(0, 0, 0, 20, 0.95)
    upper = wilson_interval(0, 20, 0.95)[1]
    assert (low, high) == pytest.approx((-upper, upper)) and high > 0.1
    low, high = paired_difference_interval(0, 10, 0, 0, 0.95)  # variant always fails
    assert -1 <= low < 1.0 == high


def test_adjust_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(size=rng.integers(1, 15)) ** 3
        p[rng.random(len(p)) < 0.2] = p[0]  # ties
        for method in ("holm", "fdr_bh"):
            np.testing.assert_allclose(adjust(p, method), multipletests(p, method=method)[1])


def test_unadjusted_rows_describe_and_never_judge():
    assert unadjusted_words(-1.0, 0.001, np.nan, 0.05) == "unadjusted: lower"
    assert unadjusted_words(1.0, 0.001, np.nan, 0.05) == "unadjusted: higher"
    assert unadjusted_words(1.0, 0.001, np.nan, 0.05, slope=True) == "unadjusted: increasing"
    assert unadjusted_words(0.1, 0.4, 0.01, 0.05) == "unadjusted: within margin"
    assert unadjusted_words(0.1, 0.4, 0.2, 0.05) == "unadjusted: inconclusive"
    assert set(VERDICTS).isdisjoint(UNADJUSTED_WORDS)
