"""Heterogeneity of the effect across conditions: per-condition effects, tau^2 and I^2.

I^2 is computed from the reported tau^2 as tau^2 / (tau^2 + s^2) with the Higgins-Thompson
"typical" within-study variance s^2 = (k - 1) sum(w) / (sum(w)^2 - sum(w^2)), w = 1/v (as
metafor does for every tau^2 estimator). statsmodels' ``combine_effects`` reports the
Q-based I^2 whatever the estimator, which disagrees with tau^2 for Paule-Mandel.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
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
    """Random-effects meta-analysis of k effects ``y`` with variances ``v``, two estimators.

    Returns one row per estimator (DerSimonian-Laird, Paule-Mandel): estimator, k, tau2, tau,
    i2 (fraction), q, q_df, q_p, pooled, pooled_ci_low, pooled_ci_high (see
    :func:`pooled_effect`), ci_method, note (warnings met).
    Caveat: v are per-condition sampling variances from few seeds; their noise inflates Q and
    the moment estimators somewhat (the paired model's REML tau^2 pools them instead).
    """
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    k = len(y)
    w = 1 / v
    q = float(np.sum(w * (y - np.sum(w * y) / np.sum(w)) ** 2))
    pm, notes = tau2_pm(y, v)
    rows = []
    for name, tau2, note in (("DL", tau2_dl(y, v), []), ("PM", pm, notes)):
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
                pooled_ci_low=low,
                pooled_ci_high=high,
                ci_method=POOLED_CI_METHOD,
                note="; ".join(dict.fromkeys(note)),
            )
        )
    return pd.DataFrame(rows)
