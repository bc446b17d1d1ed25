"""Prediction intervals for a new condition, and verdicts that say which equivalence holds."""

import numpy as np
import pytest
from scipy import stats

from bnstudy.stats import analyze
from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.inference import EQUIVALENT_ON_AVERAGE, EQUIVALENT_PI, tost_p, verdict
from bnstudy.stats.simulate import grid_protocol, simulate_paired, simulate_results

QUICK = "  moderators: []\n  bootstrap:\n    replicates: 100\n"


def test_prediction_interval_is_t_on_g_minus_2_df_with_tau():
    """Higgins, Thompson & Spiegelhalter (2009): t on k - 2 df, one fewer than the CI's."""
    d, g, _ = simulate_paired(24, 10, 0.3, tau=0.6, seed=1)
    fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
    assert fit.method.startswith("REML") and fit.tau2 > 0 and fit.df == 23
    low, high = fit.prediction_interval(0.95)
    half = stats.t.ppf(0.975, 22) * np.sqrt(fit.tau2 + fit.se[0] ** 2)
    assert (low[0], high[0]) == pytest.approx((fit.estimate[0] - half, fit.estimate[0] + half))
    ci_low, ci_high = fit.t_interval(0.95)
    assert low[0] < ci_low[0] and high[0] > ci_high[0]
    # tau^2 at its boundary (0): nothing to add, the PI is the CI
    d, g, _ = simulate_paired(24, 10, 0.3, seed=3)
    fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
    if fit.tau2 == 0:
        half = stats.t.ppf(0.975, 22) * fit.se[0]
        assert fit.prediction_interval(0.95)[0] == pytest.approx(fit.estimate - half)
    # one condition: no between-condition variance, no prediction
    fit = paired_effect_fit(d[:10], np.ones((10, 1)), g[:10], ["all"])
    assert np.isnan(fit.prediction_interval(0.95)[0][0])


def test_verdict_words_distinguish_average_from_every_condition():
    """The mean is inside +-0.5 pp but conditions spread +-0.8 pp: only 'on average'."""
    protocol = grid_protocol(20, extra_analysis=QUICK)  # 48 conditions
    table = simulate_results(protocol, effect=0.0, spread=0.8, seed=5)
    a = analyze(table, protocol.design())
    head = a.headline()
    assert head["verdict"] == EQUIVALENT_ON_AVERAGE
    assert head["pi_low"] < -0.5 and head["pi_high"] > 0.5
    assert "prediction interval for a new condition" in head["text"]
    eq = a.equivalence.query("scope == 'overall' and population == 'intention-to-treat'").iloc[0]
    assert eq.tost_ci_low > -0.5 and eq.tost_ci_high < 0.5 and not eq.pi_within_margin
    assert (eq.pi_low, eq.pi_high) == (head["pi_low"], head["pi_high"])


def test_no_spread_claims_every_condition():
    """The effect is 0 in every condition and the 48 condition means are precise (40 seeds):
    the prediction interval, also with tau^2 at its upper confidence bound, is inside."""
    protocol = grid_protocol(40, extra_analysis=QUICK)
    calm = analyze(simulate_results(protocol, effect=0.0, seed=5), protocol.design())
    assert calm.headline()["verdict"] == EQUIVALENT_PI


def test_legacy_verdict_without_prediction():
    assert verdict(0.1, 0.4, 0.01, 0.05, "higher", pi_within_margin=True) == EQUIVALENT_PI
    assert verdict(0.1, 0.4, 0.01, 0.05, "higher", False) == EQUIVALENT_ON_AVERAGE
    assert verdict(0.1, 0.4, 0.2, 0.05, "higher", True) == "inconclusive"  # TOST first


@pytest.mark.parametrize("conditions, most", [(48, 0.03), (24, 0.06)])
def test_null_spread_seldom_claims_every_condition(conditions, most):
    """Condition effects spread uniformly over +-0.8 pp around 0 (37.5% of new conditions lie
    beyond the 0.5 pp margin): "equivalent on average" is right, "within the margin in every
    condition" is wrong, and the prediction interval seldom makes that claim."""
    reps = 300
    pi_claims = average = 0
    for rep in range(reps):
        d, g, _ = simulate_paired(conditions, 10, 0.0, spread=0.8, seed=rep)
        fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
        low, high = fit.prediction_interval(0.95)
        p_tost = tost_p(fit.estimate[0], fit.se[0], fit.df, 0.5)
        words = verdict(fit.estimate[0], 1.0, p_tost, 0.05, "higher", -0.5 < low[0] < high[0] < 0.5)
        pi_claims += words == EQUIVALENT_PI
        average += words == EQUIVALENT_ON_AVERAGE
    assert pi_claims / reps <= most
    assert average / reps >= 0.9  # the mean really is within the margin


def test_twelve_precise_conditions_claim_every_condition():
    """12 conditions were barred from the claim (tau^2 on fewer than 19 df); the Q-profile
    bound of tau^2 is what keeps few conditions from claiming too much now, and with precise
    condition means and no spread the claim is made."""
    protocol = grid_protocol(40, datasets=("d0",), extra_analysis=QUICK)  # 12 conditions
    a = analyze(simulate_results(protocol, effect=0.0, sigma=0.5, seed=1), protocol.design())
    head = a.headline()
    assert -0.5 < head["pi_low"] < head["pi_high"] < 0.5
    assert head["verdict"] == EQUIVALENT_PI
    eq = a.equivalence.query("scope == 'overall' and population == 'intention-to-treat'")
    assert bool(eq.pi_within_margin.iloc[0])
