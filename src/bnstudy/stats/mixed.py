"""Linear mixed models: a validated ``fit_mixed`` (statsmodels, any random-effects
structure including crossed and nested variance components; validated against published lme4
fits) and the exact profiled REML of a one-component model (:func:`reml_random_intercept`: a
one-dimensional search over tau^2 / sigma^2 on group sums, milliseconds for 20,000 pairs),
which the paired effect model (:mod:`bnstudy.stats.effect_fit`) is fitted with.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import optimize

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
