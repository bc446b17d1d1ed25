"""Effect sizes of paired differences d = variant - control (one per complete block)."""

from __future__ import annotations

import numpy as np


def improvement_score(d: np.ndarray, direction: str) -> np.ndarray:
    """Per pair: 1 if the variant is better, 0.5 on a tie, 0 if worse."""
    d = np.asarray(d, float)
    signed = d if direction == "higher" else -d
    return np.where(signed > 0, 1.0, np.where(signed == 0, 0.5, 0.0))


def mean_difference(d: np.ndarray) -> float:
    """Mean paired difference, in the metric's analysis units."""
    return float(np.mean(d))


def d_z(d: np.ndarray) -> float:
    """Standardised paired effect: mean(d) / sd(d) (ddof 1); nan when sd is 0 or n < 2."""
    d = np.asarray(d, float)
    if len(d) < 2:
        return float("nan")
    sd = np.std(d, ddof=1)
    return float(np.mean(d) / sd) if sd > 0 else float("nan")


def probability_of_improvement(d: np.ndarray, direction: str) -> float:
    """P(variant better than control) over pairs, ties counting half."""
    return float(np.mean(improvement_score(d, direction)))
