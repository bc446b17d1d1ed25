"""Heterogeneity of the effect across conditions: per-condition effects, tau^2 and I^2.

tau^2 by DerSimonian-Laird, Paule-Mandel and REML (metafor's default estimator,
:func:`tau2_reml`), each with the Q-profile confidence interval for tau^2 (Viechtbauer 2007,
:func:`tau2_qprofile`; it depends on the data, not on the estimator).

I^2 is computed from the reported tau^2 as tau^2 / (tau^2 + s^2) with the Higgins-Thompson
"typical" within-study variance s^2 = (k - 1) sum(w) / (sum(w)^2 - sum(w^2)), w = 1/v (as
metafor does for every tau^2 estimator). statsmodels' ``combine_effects`` reports the
Q-based I^2 whatever the estimator, which disagrees with tau^2 for Paule-Mandel.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import combine_effects


def per_condition_effects(
    frame: pd.DataFrame, columns: list[str], confidence: float
) -> pd.DataFrame:
    """Paired mean difference per condition with a t interval.

    ``frame``: one row per pair with ``d`` and the condition columns (see ``Pairs.frame``).
    Returns one row per condition: the condition columns, estimate, ci_low, ci_high, n_pairs,
    se (nan CI/se where a condition has a single pair).
    """
    grouped = (
        frame.groupby(columns, sort=True, dropna=False)["d"]
        if columns
        else frame.assign(_all=0).groupby("_all")["d"]
    )
    out = grouped.agg(estimate="mean", sd="std", n_pairs="count").reset_index()
    if not columns:
        out = out.drop(columns="_all")
    se = out["sd"] / np.sqrt(out["n_pairs"])
    q = stats.t.ppf(0.5 + confidence / 2, np.maximum(out["n_pairs"] - 1, 1))
    out["ci_low"] = np.where(out["n_pairs"] > 1, out["estimate"] - q * se, np.nan)
    out["ci_high"] = np.where(out["n_pairs"] > 1, out["estimate"] + q * se, np.nan)
    out["se"] = np.where(out["n_pairs"] > 1, se, np.nan)
    return out[[*columns, "estimate", "ci_low", "ci_high", "n_pairs", "se"]]


def tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian-Laird between-study variance from effects ``y`` (k,) and variances ``v``."""
    w = 1 / np.asarray(v, float)
    y = np.asarray(y, float)
    mean = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mean) ** 2)
    return float(max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w))))


def typical_variance(v: np.ndarray) -> float:
    """Higgins-Thompson typical within-study variance of k studies with variances ``v``."""
    w = 1 / np.asarray(v, float)
    k = len(w)
    return float((k - 1) * np.sum(w) / (np.sum(w) ** 2 - np.sum(w**2)))


def i_squared(tau2: float, v: np.ndarray) -> float:
    """I^2 (fraction 0-1) implied by ``tau2`` and within-study variances ``v``."""
    return float(tau2 / (tau2 + typical_variance(v)))


def tau2_pm(y: np.ndarray, v: np.ndarray) -> tuple[float, list[str]]:
    """Paule-Mandel between-study variance (statsmodels' iterated estimator), clipped at 0,
    with any warnings statsmodels raised while estimating it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tau2 = float(combine_effects(y, v, method_re="pm").tau2)
    return max(0.0, tau2), [str(w.message) for w in caught]


def _design(k: int, X: np.ndarray | None) -> np.ndarray:
    return np.ones((k, 1)) if X is None else np.asarray(X, float).reshape(k, -1)


def generalized_q(y: np.ndarray, v: np.ndarray, tau2: float, X: np.ndarray | None = None) -> float:
    """Generalised Q statistic sum w (y - X b_w)^2, w = 1 / (v + tau2), b_w the weighted least
    squares fit of ``y`` on ``X`` (default: an intercept). Some v may be 0 when tau2 > 0; with
    tau2 = 0 and a zero variance, Q is infinite."""
    y = np.asarray(y, float)
    total = np.asarray(v, float) + tau2
    if np.any(total <= 0):
        return float("inf")
    X = _design(len(y), X)
    w = 1 / total
    xw = X * w[:, None]
    beta = np.linalg.solve(xw.T @ X, xw.T @ y)
    r = y - X @ beta
    return float(np.sum(w * r * r))


def tau2_qprofile(
    y: np.ndarray, v: np.ndarray, confidence: float, X: np.ndarray | None = None
) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007, Stat Med 26:37-52).

    The generalised Q (:func:`generalized_q`) at the true tau^2 follows chi^2 on k - p
    degrees of freedom (``X``: k x p, default an intercept) when the within-study variances
    ``v`` are known, and Q decreases in tau^2. The interval is every tau^2 with
    chi^2_{a/2} <= Q(tau^2) <= chi^2_{1-a/2}, a = 1 - confidence: a bound where Q(0) is already
    below its quantile is 0 (as metafor's ``confint``). Exact for known ``v``; here ``v`` are
    estimated from the seeds of each condition, which matters little with several seeds.
    """
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    k, p = _design(len(y), X).shape
    if k - p < 1:
        return float("nan"), float("nan")
    alpha = 1 - confidence
    q0 = generalized_q(y, v, 0.0, X)
    scale = float(np.var(y)) + float(np.max(v)) + 1e-12

    def solve(quantile: float) -> float:
        crit = stats.chi2.ppf(quantile, k - p)
        if q0 <= crit:
            return 0.0
        low = 0.0 if np.isfinite(q0) else scale * 1e-12  # a zero variance: Q(0) infinite
        if generalized_q(y, v, low, X) <= crit:
            return low
        high = scale
        while generalized_q(y, v, high, X) > crit:
            high *= 4
        return float(
            optimize.brentq(
                lambda t: generalized_q(y, v, t, X) - crit, low, high, xtol=1e-12 * scale
            )
        )

    return solve(1 - alpha / 2), solve(alpha / 2)


def tau2_reml(y: np.ndarray, v: np.ndarray, X: np.ndarray | None = None) -> float:
    """Restricted maximum likelihood tau^2 (metafor's default, ``rma(method="REML")``).

    Maximises -1/2 [sum log(v + tau2) + log det(X' W X) + sum w (y - X b_w)^2] over
    tau2 >= 0 (w = 1 / (v + tau2)) on a log-spaced grid refined by Brent's method; 0 when it
    is the maximum. ``X``: moderators (k x p), default an intercept.
    """
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    X = _design(len(y), X)

    def neg_llf(tau2: float) -> float:
        w = 1 / (v + tau2)
        xw = X * w[:, None]
        a = xw.T @ X
        beta = np.linalg.solve(a, xw.T @ y)
        r = y - X @ beta
        logdet = np.linalg.slogdet(a)[1]
        return 0.5 * float(np.sum(np.log(v + tau2)) + logdet + np.sum(w * r * r))

    scale = float(np.var(y)) + float(np.mean(v))
    grid = scale * np.logspace(-8, 3, 45)
    values = np.array([neg_llf(t) for t in grid])
    j = int(np.argmin(values))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    best = optimize.minimize_scalar(
        neg_llf, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12 * scale}
    )
    tau2 = float(best.x) if best.fun <= values[j] else float(grid[j])
    return 0.0 if neg_llf(0.0) <= neg_llf(tau2) else tau2


#: How :func:`pooled_effect` builds its interval (the heterogeneity table's ``ci_method``).
POOLED_CI_METHOD = "Hartung-Knapp, t on k-1 df, variance scale truncated at 1"


def pooled_effect(
    y: np.ndarray, v: np.ndarray, tau2: float, confidence: float
) -> tuple[float, float, float]:
    """Inverse-variance random-effects mean with a Hartung-Knapp interval, given ``tau2``.

    The interval is mean +- t_{k-1} sqrt(max(1, q) / sum(w)), w = 1 / (v + tau2),
    q = sum(w (y - mean)^2) / (k - 1): the Hartung-Knapp(-Sidik-Jonkman) variance on k - 1
    degrees of freedom, with the scale q truncated at 1 (Roever, Knapp & Friede 2015) so the
    interval is never narrower than the t interval with the usual variance 1 / sum(w). The
    normal quantile used before ignored that tau2 is estimated from k effects, and gave too
    narrow intervals with few conditions. With k = 1 the interval is nan.
    """
    y = np.asarray(y, float)
    w = 1 / (np.asarray(v, float) + tau2)
    k = len(y)
    mean = float(np.sum(w * y) / np.sum(w))
    if k < 2:
        return mean, float("nan"), float("nan")
    q = float(np.sum(w * (y - mean) ** 2) / (k - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1) * np.sqrt(max(1.0, q) / np.sum(w)))
    return mean, mean - half, mean + half


def heterogeneity(y: np.ndarray, v: np.ndarray, confidence: float) -> pd.DataFrame:
    """Random-effects meta-analysis of k effects ``y`` with variances ``v``, three estimators.

    Returns one row per estimator (DerSimonian-Laird, Paule-Mandel, REML, metafor's default):
    estimator, k, tau2, tau, i2 (fraction), q, q_df, q_p, pooled, pooled_se (1 / sqrt(sum w),
    w = 1 / (v + tau2)), pooled_ci_low, pooled_ci_high (see :func:`pooled_effect`),
    tau2_ci_low, tau2_ci_high (Q-profile, :func:`tau2_qprofile`; the same for every
    estimator), ci_method, note (warnings met).
    Caveat: v are per-condition sampling variances from few seeds; their noise inflates Q and
    the moment estimators somewhat (the paired model's REML tau^2 pools them instead).
    """
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    k = len(y)
    w = 1 / v
    q = float(np.sum(w * (y - np.sum(w * y) / np.sum(w)) ** 2))
    pm, notes = tau2_pm(y, v)
    tau2_low, tau2_high = tau2_qprofile(y, v, confidence)
    rows = []
    estimators = (("DL", tau2_dl(y, v), []), ("PM", pm, notes), ("REML", tau2_reml(y, v), []))
    for name, tau2, note in estimators:
        pooled, low, high = pooled_effect(y, v, tau2, confidence)
        rows.append(
            dict(
                estimator=name,
                k=k,
                tau2=tau2,
                tau=float(np.sqrt(tau2)),
                i2=i_squared(tau2, v),
                q=q,
                q_df=k - 1,
                q_p=float(stats.chi2.sf(q, k - 1)),
                pooled=pooled,
                pooled_se=float(1 / np.sqrt(np.sum(1 / (v + tau2)))),
                pooled_ci_low=low,
                pooled_ci_high=high,
                tau2_ci_low=tau2_low,
                tau2_ci_high=tau2_high,
                ci_method=POOLED_CI_METHOD,
                note="; ".join(dict.fromkeys(note)),
            )
        )
    return pd.DataFrame(rows)
