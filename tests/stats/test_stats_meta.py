"""tau^2 and I^2 against a published example (BCG vaccine trials, log risk ratios)."""

import numpy as np
import pandas as pd
import pytest

from bnstudy.stats.meta import heterogeneity, i_squared, per_condition_effects, tau2_dl

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
