"""Decisions: t intervals, TOST equivalence, multiplicity adjustment and verdicts.

How TOST and multiplicity interact: the difference tests (H0: effect = 0) and the
equivalence tests (H0: |effect| >= margin) are two families over the same estimates; each is
adjusted with the protocol's correction over the same set of estimates. An estimate is
``equivalent`` when its adjusted TOST p < alpha (with no correction, that is exactly "the
(1 - 2 alpha) CI lies inside +-margin"); otherwise ``better``/``worse`` when its adjusted
difference p < alpha, the sign read through the metric's direction; else ``inconclusive``.
Equivalence takes precedence: an effect shown to be smaller than the margin is practically
negligible even if it is also statistically non-zero (the estimate and CI still show it).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

VERDICTS = ("better", "worse", "equivalent", "inconclusive")


def t_interval(estimate: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    """Two-sided t confidence interval ``estimate +- t_{df} * se``."""
    q = stats.t.ppf(0.5 + confidence / 2, df)
    return estimate - q * se, estimate + q * se


def p_value(estimate: float, se: float, df: float) -> float:
    """Two-sided t-test p-value of H0: effect = 0.

    A zero standard error (every paired difference identical) gives the limit: 0 for a
    non-zero estimate, 1 for an estimate of exactly 0.
    """
    if se == 0 and np.isfinite(estimate):
        return 0.0 if estimate != 0 else 1.0
    if not (se > 0 and np.isfinite(se)):
        return float("nan")
    return float(2 * stats.t.sf(abs(estimate / se), df))


def tost_p(estimate: float, se: float, df: float, margin: float | None) -> float:
    """Two one-sided tests p-value for H0: |effect| >= margin (nan without a margin).

    p = max(P(T >= (est + margin)/se), P(T <= (est - margin)/se)); p < alpha iff the
    (1 - 2 alpha) t interval lies inside (-margin, margin).
    """
    if margin is None:
        return float("nan")
    if se == 0 and np.isfinite(estimate):  # the limit as se -> 0, as in :func:`p_value`
        return 0.0 if abs(estimate) < margin else 1.0
    if not (se > 0 and np.isfinite(se)):
        return float("nan")
    p_low = stats.t.sf((estimate + margin) / se, df)
    p_high = stats.t.cdf((estimate - margin) / se, df)
    return float(max(p_low, p_high))


def adjust(p: np.ndarray, correction: str) -> np.ndarray:
    """Multiplicity-adjusted p-values; nan entries stay nan and do not count as tests.

    ``correction``: "holm", "fdr_bh" or "none" (passed explicitly: multipletests' default is
    Holm-Sidak, not Holm).
    """
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if correction == "none" or ok.sum() == 0:
        out[ok] = p[ok]
        return out
    if correction not in ("holm", "fdr_bh"):
        raise ValueError(f"unknown correction {correction!r}; allowed: holm, fdr_bh, none")
    out[ok] = multipletests(p[ok], method=correction)[1]
    return out


def verdict(estimate: float, p_diff: float, p_equiv: float, alpha: float, direction: str) -> str:
    """better / worse / equivalent / inconclusive (see the module docstring).

    ``direction``: "higher" or "lower" is better. A non-significant difference is never read
    as "no effect": without equivalence it is inconclusive.
    """
    if np.isfinite(p_equiv) and p_equiv < alpha:
        return "equivalent"
    if np.isfinite(p_diff) and p_diff < alpha:
        improves = estimate > 0 if direction == "higher" else estimate < 0
        return "better" if improves else "worse"
    return "inconclusive"
