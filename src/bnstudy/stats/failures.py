"""Failure as an outcome: failure rates by arm and a paired comparison with the control."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from bnstudy.catalogue import OK
from bnstudy.spec.design import Design
from bnstudy.stats.paired import as_design

#: ``arm`` is the treatment level (e.g. a head variant); :func:`failure_columns` repeats it
#: under the treatment's name.
FAILURE_COLUMNS = [
    "arm",
    "comparison",
    "status",
    "n",
    "n_failed",
    "rate",
    "ci_low",
    "ci_high",
    "p",
    "method",
]


def failure_columns(treatment: str) -> list[str]:
    """:data:`FAILURE_COLUMNS` with the arm repeated under the treatment's name after ``arm``
    (for readers written before the column ``arm``; deprecated), unless the treatment is
    ``arm`` itself."""
    repeat = [treatment] if treatment and treatment != "arm" else []
    return [FAILURE_COLUMNS[0], *repeat, *FAILURE_COLUMNS[1:]]


def wilson_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (nan when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    z = special.ndtri(0.5 + confidence / 2)
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def paired_difference_interval(
    a: int, b: int, c: int, d: int, confidence: float
) -> tuple[float, float]:
    """Newcombe (1998, method 10) hybrid score interval for p1 - p2 from paired binary data.

    Cells: ``a`` both arms failed, ``b`` only arm 1, ``c`` only arm 2, ``d`` neither. Built
    from the two Wilson intervals and the phi correlation of the pairs; it stays inside
    [-1, 1] and has positive width when no block is discordant (the Wald interval collapses
    to [0, 0] there, the common case of no failures at all).
    """
    n = a + b + c + d
    if n == 0:
        return float("nan"), float("nan")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence)
    l2, u2 = wilson_interval(a + c, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / np.sqrt(margins) if margins > 0 else 0.0
    lower = np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    upper = np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return float(max(-1.0, p1 - p2 - lower)), float(min(1.0, p1 - p2 + upper))


def failure_rates(table: pd.DataFrame, design: Design | Any, confidence: float) -> pd.DataFrame:
    """Failure rate (status != ok) per arm, overall and per status kind, with Wilson CIs;
    plus, per variant, the paired difference in failure rate against the control over blocks
    where both arms have a row (Newcombe's hybrid score CI for paired proportions, exact
    McNemar p).

    ``design`` names the treatment column and the arms (a Protocol is accepted too).
    Returns columns :func:`failure_columns`; rows with comparison "rate" (per arm) or
    "variant - control".
    """
    design = as_design(design)
    treatment, control = design.treatment, design.control
    rows = []
    kinds = sorted(set(table["status"].astype(str)) - {OK})
    for arm, sub in table.groupby(treatment, sort=False):
        n = len(sub)
        status = sub["status"].astype(str)
        for kind in ["any", *kinds]:
            k = int((status != OK).sum() if kind == "any" else (status == kind).sum())
            low, high = wilson_interval(k, n, confidence)
            rows.append(
                {
                    "arm": arm,
                    treatment: arm,
                    "comparison": "rate",
                    "status": kind,
                    "n": n,
                    "n_failed": k,
                    "rate": k / n if n else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "p": np.nan,
                    "method": "Wilson",
                }
            )
    failed = table.assign(_f=(table["status"].astype(str) != OK).astype(int))
    wide = failed.pivot_table(index="block_id", columns=treatment, values="_f", aggfunc="max")
    for variant in design.variants:
        if variant not in wide or control not in wide:
            continue
        both = wide[[variant, control]].dropna()
        n = len(both)
        if n == 0:
            continue
        fv, fc = both[variant].to_numpy(), both[control].to_numpy()
        b, c = int(((fv == 1) & (fc == 0)).sum()), int(((fv == 0) & (fc == 1)).sum())
        a = int(((fv == 1) & (fc == 1)).sum())
        diff = (b - c) / n
        low, high = paired_difference_interval(a, b, c, n - a - b - c, confidence)
        p = stats.binomtest(b, b + c).pvalue if b + c > 0 else 1.0
        rows.append(
            {
                "arm": variant,
                treatment: variant,
                "comparison": f"{variant} - {control}",
                "status": "any",
                "n": n,
                "n_failed": b + c,
                "rate": diff,
                "ci_low": low,
                "ci_high": high,
                "p": float(p),
                "method": "paired difference over blocks; n_failed = discordant "
                "blocks; Newcombe hybrid score CI, exact McNemar p",
            }
        )
    return pd.DataFrame(rows, columns=failure_columns(treatment))
