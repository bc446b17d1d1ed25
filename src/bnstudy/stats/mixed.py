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

The paired model has one variance component, so it is fitted by an exact profiled REML
(:func:`reml_random_intercept`: a one-dimensional search over tau^2 / sigma^2 on group sums,
milliseconds for 20,000 pairs) instead of a general optimiser; it agrees with statsmodels'
MixedLM and lme4 to the optimiser's tolerance (tests/stats/test_stats_mixed.py). The
general :func:`fit_mixed` (statsmodels, any random-effects structure including crossed and
nested variance components) is validated against published lme4 fits.

Prediction. Beside the mean, each fit carries ``pred_var``: the variance of a *new*
condition's true effect around its fitted value (tau^2 for the REML fit). A prediction
interval for the effect in a new condition is estimate +- t_{G-p-1} sqrt(pred_var + se^2):
Higgins, Thompson & Spiegelhalter (2009, J R Stat Soc A 172:137-159) use t on k - 2 degrees
of freedom for k studies and one mean, as IntHout et al. (2016, BMJ Open 6:e010247)
recommend; with p fixed effects that is G - p - 1 (:meth:`EffectFit.prediction_interval`).

That interval rests on the point estimate of tau^2, which REML often puts at or near 0 when
the effect does vary; the interval then shrinks to the CI. The claim that the effect lies
inside a margin in every condition uses instead the upper one-sided confidence bound of
tau^2 by the Q-profile method (Viechtbauer 2007, Stat Med 26:37-52) on the condition means
(:meth:`EffectFit.claim_interval`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import optimize, stats

from bnstudy.stats.meta import tau2_qprofile

#: Tried in order until one converges to a valid optimum; BFGS first, which matched lme4 to
#: more digits than statsmodels' default optimiser. L-BFGS comes last: in statsmodels 0.15 it
#: can report convergence at a degenerate point (llf = inf, fixed effects 0), which
#: ``_valid`` rejects.
OPTIMISERS: tuple[str, ...] = ("bfgs", "powell", "nm", "lbfgs")


@dataclasses.dataclass(frozen=True)
class MixedFit:
    """A fitted linear mixed model in tidy form (fixed effects, every variance component)."""

    params: pd.Series  # fixed effects
    bse: pd.Series  # their standard errors
    cov_params: pd.DataFrame  # covariance of the fixed effects
    cov_re: pd.DataFrame  # covariance of the random effects of ``groups`` (re_formula)
    scale: float  # residual variance
    llf: float
    converged: bool
    boundary: bool  # some variance component at zero (singular fit)
    optimiser: str
    n_obs: int
    n_groups: int
    messages: tuple[str, ...]  # warnings and errors met while fitting, never dropped
    #: Variances of the ``vc_formula`` components (crossed or nested random effects), by name.
    vcomp: pd.Series = dataclasses.field(default_factory=lambda: pd.Series(dtype=float))
    groups: str = ""  # the grouping column (names the group's components)

    @property
    def re_sd(self) -> pd.Series:
        """Standard deviations of the random effects."""
        return pd.Series(np.sqrt(np.clip(np.diag(self.cov_re), 0, None)), index=self.cov_re.index)

    @property
    def residual_sd(self) -> float:
        return float(np.sqrt(self.scale))

    @property
    def variance_components(self) -> pd.Series:
        """Every variance: the group's random effects (diagonal of ``cov_re``; the intercept
        named after the grouping column, a slope ``"groups:name"``), each ``vc_formula``
        component, and ``Residual`` (as lme4's ``VarCorr`` lists them)."""
        group = self.groups or "Group"
        names = [
            group if n in ("Group", "Intercept") else f"{group}:{n}" for n in self.cov_re.index
        ]
        parts = [
            pd.Series(np.diag(self.cov_re.to_numpy()), index=names, dtype=float),
            self.vcomp.astype(float),
            pd.Series({"Residual": self.scale}),
        ]
        return pd.concat([p for p in parts if len(p)])


def fit_mixed(
    formula: str,
    data: pd.DataFrame,
    groups: str | None = None,
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    reml: bool = True,
    optimisers: Sequence[str] = OPTIMISERS,
) -> MixedFit:
    """Fit ``formula`` with random effects ``re_formula`` (default: intercept) per ``groups``
    and variance components ``vc_formula`` (statsmodels' syntax) within each group.

    ``data`` is a long DataFrame with one row per observation. REML by default; optimisers
    are tried in order until one converges (else the best likelihood is kept and
    ``converged`` is False). Every warning is kept in ``messages``.

    Crossed and nested random effects, in lme4's terms:

    - nested, ``(1 | batch) + (1 | batch:cask)``: ``groups="batch"``,
      ``vc_formula={"cask": "0 + C(cask)"}`` (a cask effect within each batch; the batch's
      own random intercept is kept: ``re_formula`` defaults to ``"1"``);
    - crossed, ``(1 | plate) + (1 | sample)``: ``groups=None`` (one group holding every
      row), ``vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}``; the group's
      own random intercept is then left out (``re_formula`` defaults to ``"0"``).

    The fit's :attr:`MixedFit.variance_components` lists every variance.
    """
    label = groups or ""
    if groups is None:
        if not vc_formula:
            raise ValueError("fit_mixed: give groups, or vc_formula for crossed random effects")
        data = data.assign(_one_group=1)
        groups = "_one_group"
        re_formula = re_formula or "0"
    elif vc_formula and re_formula is None:
        re_formula = "1"  # statsmodels drops the group intercept once vc_formula is given
    model = smf.mixedlm(
        formula,
        data,
        groups=data[groups],
        re_formula=re_formula,
        vc_formula=dict(vc_formula) if vc_formula else None,
    )
    return dataclasses.replace(fit_model(model, reml=reml, optimisers=optimisers), groups=label)


def fit_model(model: Any, reml: bool = True, optimisers: Sequence[str] = OPTIMISERS) -> MixedFit:
    """Fit a statsmodels ``MixedLM`` with optimiser fallbacks and captured warnings.

    Returns every variance component: the random-effects covariance of the groups and the
    variances of any ``vc_formula`` components (``vcomp``); ``boundary`` is True when any of
    them is numerically zero.
    """
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
    cov_re = pd.DataFrame(
        np.asarray(result.cov_re, float).reshape(model.k_re, model.k_re),
        index=re_names,
        columns=re_names,
    )
    vc_names = list(model.exog_vc.names) if getattr(model, "k_vc", 0) else []
    vcomp = pd.Series(np.asarray(result.vcomp, float)[: len(vc_names)], index=vc_names, dtype=float)
    n_groups = len(model.group_labels)
    n_obs = int(model.nobs)
    # Numerically zero relative to the variance of a group mean: a singular (boundary) fit.
    floor = 1e-6 * result.scale * n_groups / max(n_obs, 1)
    vc_floor = 1e-6 * result.scale
    boundary = bool(np.any(np.diag(cov_re.to_numpy()) <= floor) or np.any(vcomp <= vc_floor))
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
        vcomp=vcomp,
    )


# --------------------------------------------------------------------------------------
# Exact REML for one random intercept
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RemlFit:
    """REML fit of y = X beta + u_g + e, u_g ~ N(0, tau2), e ~ N(0, sigma2)."""

    beta: np.ndarray  # (p,)
    cov: np.ndarray  # (p, p) covariance of beta at the REML variances
    tau2: float
    sigma2: float
    llf: float  # restricted log-likelihood (lme4's -REML criterion / 2)
    boundary: bool  # tau2 = 0 maximises the restricted likelihood


def reml_random_intercept(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> RemlFit:
    """Exact REML of a linear model with one random intercept per group.

    ``y`` (N,), ``X`` (N, p) full rank, ``groups`` (N,) labels. With gamma = tau2 / sigma2
    the covariance is sigma2 (I + gamma Z Z'), whose inverse and determinant are closed-form
    per group, so the restricted likelihood profiled over beta and sigma2 is a function of
    gamma alone, computed from group sums (O(G p^2) per evaluation). It is maximised over
    gamma >= 0 by a log-spaced grid refined with Brent's method; gamma = 0 is compared
    explicitly, so a boundary optimum is found exactly rather than approached.
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n, p = X.shape
    G = int(g.max()) + 1
    counts = np.bincount(g, minlength=G).astype(float)
    sx = np.zeros((G, p))
    np.add.at(sx, g, X)
    sy = np.bincount(g, y, minlength=G)
    xtx, xty, yty = X.T @ X, X.T @ y, float(y @ y)
    dof = n - p
    if dof < 1:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")

    def solve(gamma: float) -> tuple[float, np.ndarray, np.ndarray, float]:
        c = gamma / (1.0 + gamma * counts)
        a = xtx - (sx * c[:, None]).T @ sx
        b = xty - sx.T @ (c * sy)
        yhy = yty - float(np.sum(c * sy * sy))
        chol = np.linalg.cholesky(a)
        beta = np.linalg.solve(a, b)
        rss = max(yhy - float(b @ beta), 1e-300)
        logdet_a = 2.0 * float(np.sum(np.log(np.diag(chol))))
        logdet_h = float(np.sum(np.log1p(gamma * counts)))
        llf = -0.5 * (dof * (1.0 + np.log(2 * np.pi * rss / dof)) + logdet_h + logdet_a)
        return llf, beta, np.linalg.inv(a), rss

    def neg(log_gamma: float) -> float:
        return -solve(float(np.exp(log_gamma)))[0]

    grid = np.linspace(np.log(1e-8), np.log(1e8), 33)
    values = np.array([neg(v) for v in grid])
    j = int(np.argmin(values))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    best = optimize.minimize_scalar(
        neg, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}
    )
    gamma = float(np.exp(best.x)) if best.fun <= values[j] else float(np.exp(grid[j]))
    llf0 = solve(0.0)[0]
    llf, beta, inv_a, rss = solve(gamma)
    # Relative to a group mean's sampling variance, a gamma this small is numerically zero.
    boundary = llf0 >= llf - 1e-9 or gamma * n / G <= 1e-6
    if boundary:
        gamma = 0.0
        llf, beta, inv_a, rss = solve(0.0)
    sigma2 = rss / dof
    return RemlFit(beta, sigma2 * inv_a, gamma * sigma2, sigma2, float(llf), bool(boundary))


# --------------------------------------------------------------------------------------
# The paired-difference effect model
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EffectFit:
    """Fixed effects of the paired model with t-based inference.

    ``names`` label the coefficients; ``estimate``/``se`` are arrays of that length and
    ``cov`` their covariance; ``df`` the t degrees of freedom; ``method`` says which model
    produced them (after fallbacks). ``pred_var`` is the variance of a new condition's true
    effect around its fitted value (tau^2; the residual variance of condition means for the
    two-stage fit, which is conservative; nan where the conditions give no such estimate).
    ``between`` holds what the Q-profile bound on ``pred_var`` needs
    (:meth:`pred_var_upper`): the condition means (G,), their sampling variances (G,) and the
    condition-level design (G, p); None where the fit has no between-condition variance.
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
    cov: np.ndarray | None = None
    pred_var: float = float("nan")
    between: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def t_interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        q = stats.t.ppf(0.5 + confidence / 2, self.df)
        return self.estimate - q * self.se, self.estimate + q * self.se

    def p_values(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2 * stats.t.sf(np.abs(self.estimate / self.se), self.df)

    @property
    def pred_df(self) -> float:
        """Degrees of freedom of the prediction interval: G - p - 1, one fewer than the CI's
        (Higgins, Thompson & Spiegelhalter 2009: k - 2 for k studies and one mean; IntHout,
        Ioannidis, Rovers & Goeman 2016, BMJ Open 6:e010247)."""
        return self.df - 1

    def prediction_interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """Where a new condition's effect may lie: estimate +- t_{G-p-1} sqrt(pred_var + se^2)
        (:attr:`pred_df`).

        nan where the fit has no between-condition variance to predict with (one condition,
        a design saturated at the condition level, or G - p - 1 < 1).
        """
        return self._interval(self.pred_var, confidence)

    def pred_var_upper(self, confidence: float) -> float:
        """Upper one-sided ``confidence`` bound for ``pred_var`` by the Q-profile method
        (Viechtbauer 2007): the upper limit of the two-sided 1 - 2 (1 - confidence) Q-profile
        interval of tau^2, as TOST uses the 1 - 2 alpha CI of the mean.

        From the condition means, with sampling variances from the pooled within-condition
        residual variance (REML fits, also at the boundary tau^2 = 0, where the estimate says
        nothing of how large tau^2 may be). For the two-stage fit (one pair per condition)
        the variances are taken as 0, so the bound is that of the whole spread of condition
        means (conservative, like its ``pred_var``). nan without a between-condition variance.
        """
        if self.between is None or not np.isfinite(self.pred_var):
            return float("nan")
        means, variances, design = self.between
        return tau2_qprofile(means, variances, 1 - 2 * (1 - confidence), design)[1]

    def claim_interval(self, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """The prediction interval with the between-condition variance at its upper
        confidence bound: estimate +- t_{G-p-1} sqrt(pred_var_upper + se^2).

        The verdict "equivalent (PI within margin)" needs it inside the margin: the point
        estimate of tau^2 is often 0 although conditions differ (REML on 12-48 conditions), so
        the prediction interval alone claimed every condition inside the margin in a quarter
        of analyses where 10% of conditions lay outside it
        (benchmarks/equivalence_claim_rate.txt).
        """
        return self._interval(self.pred_var_upper(confidence), confidence)

    def _interval(self, variance: float, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        df = self.pred_df
        q = stats.t.ppf(0.5 + confidence / 2, df) if df >= 1 else np.nan
        half = q * np.sqrt(variance + self.se**2)
        return self.estimate - half, self.estimate + half

    def contrast(self, weights: np.ndarray) -> tuple[float, float]:
        """Estimate and standard error of sum(weights * coefficients)."""
        w = np.asarray(weights, float)
        cov = self.cov if self.cov is not None else np.diag(self.se**2)
        return float(w @ self.estimate), float(np.sqrt(max(w @ cov @ w, 0.0)))


def paired_effect_fit(
    d: np.ndarray, X: np.ndarray, groups: np.ndarray, names: list[str], model: str = "paired"
) -> EffectFit:
    """Fit d ~ X + (1 | condition) with fallbacks.

    ``d`` (N,) paired differences, ``X`` (N, p) condition-level design, ``groups`` (N,) integer
    condition codes. Decision path, each recorded in ``method`` and ``diagnostics``:
    one condition -> paired t (df N - 1); one pair per condition or no more conditions than
    coefficients -> ordinary least squares on the pairs / condition means; otherwise exact
    REML (:func:`reml_random_intercept`); a zero between-condition variance (boundary) -> the
    equivalent OLS fit, df G - p.
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
        est, cov, s2 = _ols(d, X)
        df = n - p
        method = "paired t" if G == 1 else "OLS on pairs (one condition per coefficient)"
        diags.append(("info", f"{model}: {method}; conditional on the observed conditions"))
        return _effect(names, est, cov, df, method, np.nan, s2, base, diags, np.nan)
    if counts.max() == 1:
        return _two_stage(d, X, g, G, names, base, diags, "one pair per condition")
    fit = reml_random_intercept(d, X, g)
    base.update(optimiser="profiled REML", boundary=fit.boundary, llf=fit.llf)
    between = _condition_means(d, X, g, G, within=True)
    if fit.boundary:
        diags.append(
            (
                "info",
                f"{model}: between-condition variance on the boundary (0); "
                "singular fit, using the equivalent OLS fit",
            )
        )
        est, cov, s2 = _ols(d, X)
        return _effect(
            names,
            est,
            cov,
            G - p,
            "OLS (tau^2 = 0 at boundary)",
            0.0,
            s2,
            base,
            diags,
            0.0,
            between,
        )
    return _effect(
        names,
        fit.beta,
        fit.cov,
        G - p,
        "REML mixed model",
        fit.tau2,
        fit.sigma2,
        base,
        diags,
        fit.tau2,
        between,
    )


def _condition_means(
    d: np.ndarray, X: np.ndarray, g: np.ndarray, G: int, within: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Condition means of ``d``, their sampling variances and the condition-level design.

    ``within``: the variances are the pooled within-condition residual variance over each
    condition's number of pairs (needs a condition with two pairs or more); else 0 (the
    two-stage fit, whose residual variance holds both). The design rows are the conditions'
    mean rows of ``X`` (the moderators are constant within a condition).
    """
    counts = np.bincount(g, minlength=G).astype(float)
    means = np.bincount(g, d, minlength=G) / counts
    Xg = np.zeros((G, X.shape[1]))
    np.add.at(Xg, g, X)
    Xg /= counts[:, None]
    variances = np.zeros(G)
    if within:
        resid = d - means[g]
        variances = float(resid @ resid) / max(len(d) - G, 1) / counts
    return means, variances, Xg


def _valid(result: Any) -> bool:
    """A usable optimum: finite likelihood, fixed effects and non-negative variances."""
    k = len(np.atleast_1d(result.fe_params))
    with np.errstate(invalid="ignore"):
        cov = np.asarray(result.cov_params())[:k, :k]
    vcomp = np.asarray(getattr(result, "vcomp", []), float)
    return bool(
        np.isfinite(result.llf)
        and np.all(np.isfinite(result.fe_params))
        and np.all(np.isfinite(cov))
        and np.all(np.diag(cov) >= 0)
        and np.all(np.diag(np.atleast_2d(np.asarray(result.cov_re, float))) >= 0)
        and np.all(vcomp >= 0)
    )


def _ols(y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients, their covariance and the residual variance of least squares."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = max(len(y) - X.shape[1], 1)
    s2 = float(resid @ resid / dof)
    return beta, s2 * np.linalg.pinv(X.T @ X), s2


def _two_stage(d, X, g, G, names, base, diags, why) -> EffectFit:
    """Unweighted OLS on condition means: valid (exact when balanced) whatever tau is."""
    between = _condition_means(d, X, g, G, within=False)
    means, _, Xg = between
    p = X.shape[1]
    est, cov, s2 = _ols(means, Xg)
    diags.append(
        (
            "warning" if why != "one pair per condition" else "info",
            f"{base['model']}: {why}; two-stage OLS on {G} condition means, df {G - p}",
        )
    )
    # s2 (the spread of condition means about the fit) is tau^2 plus the within-condition
    # noise of a mean: a conservative stand-in for tau^2 when predicting a new condition.
    return _effect(
        names,
        est,
        cov,
        G - p,
        f"two-stage OLS on condition means ({why})",
        np.nan,
        np.nan,
        base,
        diags,
        s2,
        between,
    )


def _effect(
    names, est, cov, df, method, tau2, sigma2, base, diags, pred_var, between=None
) -> EffectFit:
    cov = np.atleast_2d(np.asarray(cov, float))
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
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
        se,
        float(df),
        method,
        float(tau2),
        float(sigma2),
        summary,
        diags,
        cov,
        float(pred_var),
        between,
    )
