"""Decisions: t intervals, TOST equivalence, multiplicity adjustment and verdicts.

How TOST and multiplicity interact: the difference tests (H0: effect = 0) and the
equivalence tests (H0: |effect| >= margin) are two families over the same estimates; each is
adjusted with the protocol's correction over the same set of estimates. An estimate is
equivalent when its adjusted TOST p < alpha (with no correction, that is exactly "the
(1 - 2 alpha) CI lies inside +-margin"); otherwise ``better``/``worse`` when its adjusted
difference p < alpha, the sign read through the metric's direction; else ``inconclusive``.
Equivalence takes precedence: an effect shown to be smaller than the margin is practically
negligible even if it is also statistically non-zero (the estimate and CI still show it).

Equivalence comes in two strengths, and the verdict says which:

- ``equivalent (on average)``: the *mean* effect over conditions is inside +-margin (TOST);
  the effect in a particular new condition may still lie outside it.
- ``equivalent (PI within margin)``: in addition, the prediction interval for the effect in
  a new condition (``mixed.EffectFit.prediction_interval``: t on G - p - 1 df, Higgins,
  Thompson & Spiegelhalter 2009) lies inside +-margin, and so does the same interval with
  tau^2 at its upper one-sided confidence bound (``mixed.EffectFit.claim_interval``: the
  Q-profile method, Viechtbauer 2007): no condition like the ones studied is expected to
  show a difference beyond the margin, even if the conditions differ as much as the data
  allow. The point estimate of tau^2 alone is often 0 when the effect does vary
  (``decisions.pi_claim``, benchmarks/equivalence_claim_rate.txt).

Rows outside the multiplicity family (moderator levels, slopes and contrasts with family
"overall") are descriptive, never verdicts: :func:`unadjusted_words` words them
"unadjusted: higher" / "unadjusted: lower" (the sign of the difference, not a judgement),
"unadjusted: within margin" or "unadjusted: inconclusive".
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EQUIVALENT_ON_AVERAGE = "equivalent (on average)"
EQUIVALENT_PI = "equivalent (PI within margin)"
#: The verdict of a tuned comparison resting on a level chosen at an edge of the tuning grid
#: (:func:`bnstudy.stats.edges.rests_on_edge`): the best level may lie outside the grid.
EDGE_VERDICT = "inconclusive (tuning grid edge)"
#: Verdicts of rows in the multiplicity family.
VERDICTS = (
    "better",
    "worse",
    EQUIVALENT_PI,
    EQUIVALENT_ON_AVERAGE,
    "inconclusive",
    EDGE_VERDICT,
)
#: Prefix of every row outside the family: a description, not a verdict.
UNADJUSTED = "unadjusted: "
UNADJUSTED_WORDS = tuple(
    UNADJUSTED + w
    for w in ("higher", "lower", "increasing", "decreasing", "within margin", "inconclusive")
)


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

    ``correction``: "holm" (Holm's step-down), "fdr_bh" (Benjamini-Hochberg) or "none".
    Computed here (statsmodels' ``multipletests`` gives the same values but runs a full
    garbage collection on every call, a tenth of a second).
    """
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if correction not in ("holm", "fdr_bh", "none"):
        raise ValueError(f"unknown correction {correction!r}; allowed: holm, fdr_bh, none")
    if correction == "none" or ok.sum() == 0:
        out[ok] = p[ok]
        return out
    x = p[ok]
    m = len(x)
    order = np.argsort(x, kind="stable")
    ranked = x[order]
    if correction == "holm":
        steps = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        steps = np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(steps, 1.0)
    out[ok] = adjusted
    return out


def verdict(
    estimate: float,
    p_diff: float,
    p_equiv: float,
    alpha: float,
    direction: str,
    pi_within_margin: bool | None = None,
) -> str:
    """better / worse / equivalent / inconclusive (see the module docstring).

    ``direction``: "higher" or "lower" is better. A non-significant difference is never read
    as "no effect": without equivalence it is inconclusive. ``pi_within_margin``: whether
    the prediction interval for a new condition lies inside the margin (True: "equivalent
    (PI within margin)"; False: "equivalent (on average)"; None, no prediction interval
    considered: plain "equivalent").
    """
    if np.isfinite(p_equiv) and p_equiv < alpha:
        if pi_within_margin is None:
            return "equivalent"
        return EQUIVALENT_PI if pi_within_margin else EQUIVALENT_ON_AVERAGE
    if np.isfinite(p_diff) and p_diff < alpha:
        improves = estimate > 0 if direction == "higher" else estimate < 0
        return "better" if improves else "worse"
    return "inconclusive"


def unadjusted_words(
    estimate: float, p_diff: float, p_equiv: float, alpha: float, slope: bool = False
) -> str:
    """A row outside the multiplicity family, in words that are not a verdict.

    The sign of the difference ("higher"/"lower"; "increasing"/"decreasing" for a slope)
    when the unadjusted p < alpha, "within margin" when the unadjusted TOST passes, else
    "inconclusive"; always prefixed :data:`UNADJUSTED`. Never "better"/"worse": with many
    such rows some reach p < alpha by chance.
    """
    if np.isfinite(p_equiv) and p_equiv < alpha:
        return UNADJUSTED + "within margin"
    if np.isfinite(p_diff) and p_diff < alpha:
        if slope:
            return UNADJUSTED + ("increasing" if estimate > 0 else "decreasing")
        return UNADJUSTED + ("higher" if estimate > 0 else "lower")
    return UNADJUSTED + "inconclusive"
