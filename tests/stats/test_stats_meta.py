"""tau^2 and I^2 against a published example (BCG vaccine trials, log risk ratios)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bnstudy.stats.meta import (
    heterogeneity,
    i_squared,
    per_condition_effects,
    pooled_effect,
    tau2_dl,
)

# Colditz et al. (1994), metafor's dat.bcg: tpos, tneg, cpos, cneg per trial
BCG = np.array(
    [
        [4, 119, 11, 128],
        [6, 300, 29, 274],
        [3, 228, 11, 209],
        [62, 13536, 248, 12619],
        [33, 5036, 47, 5761],
        [180, 1361, 372, 1079],
        [8, 2537, 10, 619],
        [505, 87886, 499, 87892],
        [29, 7470, 45, 7232],
        [17, 1699, 65, 1600],
        [186, 50448, 141, 27197],
        [5, 2493, 3, 2338],
        [27, 16886, 29, 17825],
    ],
    dtype=float,
)


def bcg_log_rr():
    a, b, c, d = BCG.T
    y = np.log(a / (a + b)) - np.log(c / (c + d))
    v = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    return y, v


def test_bcg_matches_metafor():
    y, v = bcg_log_rr()
    table = heterogeneity(y, v, 0.95).set_index("estimator")
    # metafor rma(yi, vi, method="DL"): tau^2 = 0.3088, I^2 = 92.12%, mu = -0.7141
    assert table.loc["DL", "tau2"] == pytest.approx(0.3088, abs=1e-4)
    assert table.loc["DL", "i2"] == pytest.approx(0.9212, abs=1e-4)
    assert table.loc["DL", "pooled"] == pytest.approx(-0.7141, abs=1e-4)
    assert table.loc["DL", "q"] == pytest.approx(152.23, abs=0.01)
    # method="PM": tau^2 = 0.3181; I^2 from that tau^2, not the Q-based 92.12%
    assert table.loc["PM", "tau2"] == pytest.approx(0.3181, abs=1e-4)
    assert table.loc["PM", "i2"] == pytest.approx(0.9233, abs=1e-4)
    assert table.loc["PM", "i2"] > table.loc["DL", "i2"]


def test_dl_closed_form_and_i2_by_hand():
    y, v = np.array([0.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0])
    # equal weights: Q = sum (y - 4/3)^2 = 4.667; tau^2 = (Q - 2) / (3 - 1) = 1.3333
    assert tau2_dl(y, v) == pytest.approx((14 / 3 - 2) / 2)
    # typical variance with equal v is v itself: I^2 = tau^2 / (tau^2 + 1)
    assert i_squared(4 / 3, v) == pytest.approx((4 / 3) / (4 / 3 + 1))
    assert tau2_dl(np.zeros(4), np.ones(4)) == 0.0


def test_per_condition_effects_by_hand():
    frame = pd.DataFrame({"lr": [0.1, 0.1, 0.1, 0.5, 0.5], "d": [1.0, 2.0, 3.0, -1.0, -1.0]})
    out = per_condition_effects(frame, ["lr"], 0.95).set_index("lr")
    assert out.loc[0.1, "estimate"] == 2.0 and out.loc[0.1, "n_pairs"] == 3
    assert out.loc[0.1, "ci_high"] == pytest.approx(2 + 4.302653 * 1 / np.sqrt(3), rel=1e-6)
    assert out.loc[0.5, "se"] == 0.0


def test_pooled_ci_is_hartung_knapp_on_k_minus_1_df():
    """The normal quantile ignored that tau^2 comes from k effects: with 6 conditions the DL
    interval excluded 0 where the model's t interval did not (issue #9)."""
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = bcg_log_rr()
    table = heterogeneity(y, v, 0.95).set_index("estimator")
    ref = combine_effects(y, v, method_re="dl", use_t=True)
    # q = 12.2 >= 1 here: the Hartung-Knapp(-Sidik-Jonkman) interval of statsmodels / metafor
    low, high = ref.conf_int(alpha=0.05, use_t=True)[3]
    assert (table.loc["DL", "pooled_ci_low"], table.loc["DL", "pooled_ci_high"]) == (
        pytest.approx((low, high), rel=1e-8)
    )
    assert table.loc["DL", "ci_method"].startswith("Hartung-Knapp")
    # wider than the old normal interval
    half_normal = 1.959964 / np.sqrt(np.sum(1 / (v + table.loc["DL", "tau2"])))
    assert table.loc["DL", "pooled_ci_high"] - table.loc["DL", "pooled"] > half_normal


def test_hartung_knapp_scale_is_truncated_at_one():
    # effects closer together than their variances predict (q < 1): never narrower than t
    y, v = np.array([0.10, 0.12, 0.09, 0.11]), np.array([0.04, 0.05, 0.04, 0.06])
    mean, low, high = pooled_effect(y, v, 0.0, 0.95)
    half = stats.t.ppf(0.975, 3) / np.sqrt(np.sum(1 / v))
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert np.isnan(pooled_effect(y[:1], v[:1], 0.0, 0.95)[1])
