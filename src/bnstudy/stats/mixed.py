"""Linear mixed models: a validated ``fit_mixed`` and the paired-difference effect model.

The paired model fits the within-block differences d = variant - control as

    d_bc = x_c' beta + u_c + e_bc,   u_c ~ N(0, tau^2),  e_bc ~ N(0, sigma^2)

with a random intercept per condition c. Differencing removes the block intercepts exactly
(complete pairs), and u_c is the random slope of the treatment by condition of the long-form
model ``y ~ head + (1 | block) + (head | condition)``; leaving it out is what made intervals
far too narrow (84% coverage instead of 95%) when the effect varies across conditions.

Degrees of freedom: every fixed effect here is a condition-level quantity (the moderators are
factors, constant within a condition), so its information grows with the number of
conditions G, not with the number of pairs. We use t with G - p degrees of freedom (p fixed
effects; the "between-within" rule, exact for balanced designs where the REML estimate
equals the mean of condition means). It is conservative when tau is 0, and matters only when
G is small.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

#: Tried in order until one converges to a valid optimum; BFGS first, which matched lme4 to
#: more digits than statsmodels' default optimiser. L-BFGS comes last: in statsmodels 0.15 it
#: can report convergence at a degenerate point (llf = inf, fixed effects 0), which
#: ``_valid`` rejects.
OPTIMISERS: tuple[str, ...] = ("bfgs", "powell", "nm", "lbfgs")


@dataclasses.dataclass(frozen=True)
class MixedFit:
    """A fitted linear mixed model in tidy form (fixed effects, variance components)."""

    params: pd.Series  # fixed effects
    bse: pd.Series  # their standard errors
    cov_params: pd.DataFrame  # covariance of the fixed effects
    cov_re: pd.DataFrame  # random-effects covariance
    scale: float  # residual variance
    llf: float
    converged: bool
    boundary: bool  # a random-effect variance at zero (singular fit)
    optimiser: str
    n_obs: int
    n_groups: int
    messages: tuple[str, ...]  # warnings and errors met while fitting, never dropped

    @property
    def re_sd(self) -> pd.Series:
        """Standard deviations of the random effects."""
        return pd.Series(np.sqrt(np.clip(np.diag(self.cov_re), 0, None)), index=self.cov_re.index)

    @property
    def residual_sd(self) -> float:
        return float(np.sqrt(self.scale))


def fit_mixed(
    formula: str,
    data: pd.DataFrame,
    groups: str,
    re_formula: str | None = None,
    reml: bool = True,
    optimisers: Sequence[str] = OPTIMISERS,
) -> MixedFit:
    """Fit ``formula`` with random effects ``re_formula`` (default: intercept) per ``groups``.

    ``data`` is a long DataFrame with one row per observation. REML by default; optimisers
    are tried in order until one converges (else the best likelihood is kept and
    ``converged`` is False). Every warning is kept in ``messages``.
    """
    model = smf.mixedlm(formula, data, groups=data[groups], re_formula=re_formula)
    return fit_model(model, reml=reml, optimisers=optimisers)


def fit_model(model: Any, reml: bool = True, optimisers: Sequence[str] = OPTIMISERS) -> MixedFit:
    """Fit a statsmodels ``MixedLM`` with optimiser fallbacks and captured warnings."""
    messages: list[str] = []
    best: tuple[Any, str, bool] | None = None
    for method in optimisers:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = model.fit(reml=reml, method=method)
            except Exception as exc:  # a failed optimiser is a diagnostic, not a crash
                messages.append(f"{method}: {type(exc).__name__}: {exc}")
                continue
        for w in caught:
            text = f"{method}: {w.message}"
            if text not in messages:
                messages.append(text)
        valid = _valid(result)
        if not valid:
            messages.append(f"{method}: rejected an invalid optimum (llf {result.llf})")
            continue
        ok = bool(result.converged)
        if best is None or (ok and not best[2]) or (ok == best[2] and result.llf > best[0].llf):
            best = (result, method, ok)
        if ok:
            break
    if best is None:
        raise RuntimeError("every optimiser failed: " + "; ".join(messages))
    result, method, ok = best
    names = list(model.exog_names)
    k = len(names)
    # Array-built models return ndarrays, formula-built ones pandas objects: normalise.
    params = pd.Series(np.asarray(result.fe_params, float), index=names)
    cov = pd.DataFrame(np.asarray(result.cov_params())[:k, :k], index=names, columns=names)
    re_names = list(model.data.exog_re_names) if hasattr(model.data, "exog_re_names") else None
    re_names = re_names or [f"re{i}" for i in range(model.k_re)]
    cov_re = pd.DataFrame(np.asarray(result.cov_re, float), index=re_names, columns=re_names)
    n_groups = len(model.group_labels)
    n_obs = int(model.nobs)
    # Numerically zero relative to the variance of a group mean: a singular (boundary) fit.
    floor = 1e-6 * result.scale * n_groups / max(n_obs, 1)
    boundary = bool(np.any(np.diag(cov_re.to_numpy()) <= floor))
    return MixedFit(
        params=params,
        bse=pd.Series(np.sqrt(np.diag(cov)), index=names),
        cov_params=cov,
        cov_re=cov_re,
        scale=float(result.scale),
        llf=float(result.llf),
        converged=ok,
        boundary=boundary,
        optimiser=method,
        n_obs=n_obs,
        n_groups=n_groups,
        messages=tuple(messages),
    )


# --------------------------------------------------------------------------------------
# The paired-difference effect model
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EffectFit:
    """Fixed effects of the paired model with t-based inference.

    ``names`` label the coefficients; ``estimate``/``se`` are arrays of that length; ``df`` the
    t degrees of freedom; ``method`` says which model produced them (after fallbacks).
    """

    names: list[str]
    estimate: np.ndarray
    se: np.ndarray
    df: float
    method: str
    tau2: float  # between-condition variance of the effect (nan where not estimated)
    sigma2: float  # within-condition residual variance of the paired differences
    summary: dict[str, Any]  # one row of Analysis.model_summaries
    diagnostics: list[tuple[str, str]]  # (level, message)

    def t_interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        q = stats.t.ppf(0.5 + confidence / 2, self.df)
        return self.estimate - q * self.se, self.estimate + q * self.se

    def p_values(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2 * stats.t.sf(np.abs(self.estimate / self.se), self.df)


def paired_effect_fit(
    d: np.ndarray, X: np.ndarray, groups: np.ndarray, names: list[str], model: str = "paired"
) -> EffectFit:
    """Fit d ~ X + (1 | condition) with fallbacks.

    ``d`` (N,) paired differences, ``X`` (N, p) condition-level design, ``groups`` (N,) integer
    condition codes. Decision path, each recorded in ``method`` and ``diagnostics``:
    one condition -> paired t (df N - 1); one pair per condition or no more conditions than
    coefficients -> ordinary least squares on the pairs / condition means; otherwise MixedLM
    (REML, BFGS first); a zero between-condition variance (boundary) -> the equivalent
    OLS fit, df G - p; a non-converged interior fit -> two-stage OLS on condition means.
    """
    d = np.asarray(d, float)
    X = np.asarray(X, float)
    groups = np.asarray(groups)
    n, p = X.shape
    uniq, g = np.unique(groups, return_inverse=True)
    G = len(uniq)
    counts = np.bincount(g)
    diags: list[tuple[str, str]] = []
    base = dict(
        model=model, n_obs=n, n_groups=G, optimiser="", converged=True, boundary=False, llf=np.nan
    )
    if n < 2 or np.linalg.matrix_rank(X) < p:
        raise ValueError(f"{model}: too few pairs ({n}) or a rank-deficient design")
    if G == 1 or p >= G:
        # The design is saturated at the condition level: no between-condition variance can
        # be separated from the fixed effects, so inference is conditional on the conditions.
        est, se, s2 = _ols(d, X)
        df = n - p
        method = "paired t" if G == 1 else "OLS on pairs (one condition per coefficient)"
        diags.append(("info", f"{model}: {method}; conditional on the observed conditions"))
        return _effect(names, est, se, df, method, np.nan, s2, base, diags)
    if counts.max() == 1:
        return _two_stage(d, X, g, G, names, base, diags, "one pair per condition")
    try:
        fit = fit_model(sm.MixedLM(d, X, groups=g))
    except Exception as exc:  # never crash the analysis on one model
        diags.append(("warning", f"{model}: MixedLM failed ({exc})"))
        return _two_stage(d, X, g, G, names, base, diags, "MixedLM failed")
    for m in fit.messages:
        diags.append(("warning" if not fit.converged else "info", f"{model}: {m}"))
    tau2 = float(fit.cov_re.to_numpy()[0, 0])
    base.update(
        optimiser=fit.optimiser, converged=fit.converged, boundary=fit.boundary, llf=fit.llf
    )
    if fit.boundary:
        diags.append(
            (
                "info",
                f"{model}: between-condition variance on the boundary (0); "
                "singular fit, using the equivalent OLS fit",
            )
        )
        est, se, s2 = _ols(d, X)
        return _effect(names, est, se, G - p, "OLS (tau^2 = 0 at boundary)", 0.0, s2, base, diags)
    if not fit.converged:
        return _two_stage(d, X, g, G, names, base, diags, "MixedLM did not converge")
    return _effect(
        names,
        fit.params.to_numpy(),
        fit.bse.to_numpy(),
        G - p,
        f"MixedLM REML ({fit.optimiser})",
        tau2,
        fit.scale,
        base,
        diags,
    )


def _valid(result: Any) -> bool:
    """A usable optimum: finite likelihood, fixed effects and non-negative variances."""
    k = len(np.atleast_1d(result.fe_params))
    with np.errstate(invalid="ignore"):
        cov = np.asarray(result.cov_params())[:k, :k]
    return bool(
        np.isfinite(result.llf)
        and np.all(np.isfinite(result.fe_params))
        and np.all(np.isfinite(cov))
        and np.all(np.diag(cov) >= 0)
        and np.all(np.diag(np.atleast_2d(np.asarray(result.cov_re, float))) >= 0)
    )


def _ols(y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = max(len(y) - X.shape[1], 1)
    s2 = float(resid @ resid / dof)
    cov = s2 * np.linalg.pinv(X.T @ X)
    return beta, np.sqrt(np.diag(cov)), s2


def _two_stage(d, X, g, G, names, base, diags, why) -> EffectFit:
    """Unweighted OLS on condition means: valid (exact when balanced) whatever tau is."""
    counts = np.bincount(g)
    means = np.bincount(g, d) / counts
    Xg = np.zeros((G, X.shape[1]))
    np.add.at(Xg, g, X)
    Xg /= counts[:, None]
    p = X.shape[1]
    est, se, s2 = _ols(means, Xg)
    diags.append(
        (
            "warning" if why != "one pair per condition" else "info",
            f"{base['model']}: {why}; two-stage OLS on {G} condition means, df {G - p}",
        )
    )
    return _effect(
        names,
        est,
        se,
        G - p,
        f"two-stage OLS on condition means ({why})",
        np.nan,
        np.nan,
        base,
        diags,
    )


def _effect(names, est, se, df, method, tau2, sigma2, base, diags) -> EffectFit:
    summary = dict(
        base,
        method=method,
        df=float(df),
        fixed_effects=json.dumps({k: round(float(v), 6) for k, v in zip(names, est, strict=True)}),
        fixed_se=json.dumps({k: round(float(v), 6) for k, v in zip(names, se, strict=True)}),
        tau2=float(tau2),
        tau=float(np.sqrt(tau2)) if np.isfinite(tau2) else np.nan,
        residual_sd=float(np.sqrt(sigma2)) if np.isfinite(sigma2) else np.nan,
    )
    return EffectFit(
        list(names),
        np.asarray(est, float),
        np.asarray(se, float),
        float(df),
        method,
        float(tau2),
        float(sigma2),
        summary,
        diags,
    )
