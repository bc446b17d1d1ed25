"""REML tau^2 (metafor's default) and the Q-profile interval of tau^2, against metafor's fit of
the BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg, log risk ratios)."""

import numpy as np
import pytest

from bnstudy.stats.meta import heterogeneity, tau2_qprofile, tau2_reml

# dat.bcg: tpos, tneg, cpos, cneg of the 13 trials
TPOS = [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27]
TNEG = [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886]
CPOS = [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29]
CNEG = [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825]


def log_risk_ratios() -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d = (np.array(x, float) for x in (TPOS, TNEG, CPOS, CNEG))
    yi = np.log((a / (a + b)) / (c / (c + d)))
    vi = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    return yi, vi


def test_reml_row_matches_metafor_bcg():
    """rma(yi, vi, data=dat.bcg) (REML, the default): tau^2 0.3132, I^2 92.22%, estimate
    -0.7145, se 0.1798; with test="knha": CI -1.1084 to -0.3206 (t on k - 1 = 12 df);
    confint(): tau^2 0.1197 to 1.1115 (Q-profile)."""
    yi, vi = log_risk_ratios()
    table = heterogeneity(yi, vi, 0.95).set_index("estimator")
    reml = table.loc["REML"]
    assert round(reml["tau2"], 4) == 0.3132
    assert round(reml["i2"], 4) == 0.9222
    assert round(reml["pooled"], 4) == -0.7145
    assert round(reml["pooled_se"], 4) == 0.1798
    assert round(reml["pooled_ci_low"], 4) == -1.1084
    assert round(reml["pooled_ci_high"], 4) == -0.3206
    assert reml["ci_method"].startswith("Hartung-Knapp, t on k-1 df")
    assert (round(reml["tau2_ci_low"], 4), round(reml["tau2_ci_high"], 4)) == (0.1197, 1.1115)
    # the other estimators keep their published values, and share the Q-profile interval
    assert round(table.loc["DL", "tau2"], 4) == 0.3088
    assert round(table.loc["PM", "tau2"], 4) == 0.3181
    assert (table["tau2_ci_high"] == reml["tau2_ci_high"]).all()


def test_reml_at_its_boundary_and_with_a_moderator():
    yi, vi = log_risk_ratios()
    # effects far closer together than their variances: the restricted likelihood peaks at 0
    assert tau2_reml(np.array([0.10, 0.11, 0.09, 0.10]), np.full(4, 0.05)) == 0.0
    # a moderator that explains some heterogeneity lowers tau^2: metafor, mods = ~ ablat,
    # prints tau^2 0.0764 (its Fisher scoring stops within 1e-5 of the optimum, 0.076348)
    ablat = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33], float)
    X = np.column_stack([np.ones(13), ablat])
    assert tau2_reml(yi, vi, X) == pytest.approx(0.0764, abs=1e-4)
    low, high = tau2_qprofile(yi, vi, 0.95, X)
    assert 0 < low < 0.0764 < high < tau2_qprofile(yi, vi, 0.95)[1]


def test_qprofile_interval_holds_its_level_when_variances_are_known():
    """Exact for known within-study variances: 95% coverage of the true tau^2."""
    rng = np.random.default_rng(0)
    v = rng.uniform(0.05, 0.5, 15)
    tau2 = 0.2
    hits = 0
    for _ in range(400):
        y = rng.normal(0, np.sqrt(v + tau2))
        low, high = tau2_qprofile(y, v, 0.95)
        hits += low <= tau2 <= high
    assert hits / 400 == pytest.approx(0.95, abs=0.03)
