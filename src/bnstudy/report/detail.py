"""The per-trial list columns (training curves, per-class values) aggregated for figures.

Pure pandas/numpy: a results table in, per-arm summaries out. Lists may differ in length
(trials of different lengths, a diverged trial stopped early); they are NaN-padded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bnstudy.catalogue import MEASURED_STATUSES
from bnstudy.report.figures_arms import CurvePanel


def stack_lists(values: Sequence) -> np.ndarray:
    """(n, L) float array of n lists, NaN-padded to the longest (L = 0 when all are empty);
    non-finite entries become NaN."""
    arrays = [
        np.asarray(v, dtype=float).ravel() if isinstance(v, list | tuple | np.ndarray) else
        np.zeros(0) for v in values
    ]  # fmt: skip
    width = max((len(a) for a in arrays), default=0)
    out = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    out[~np.isfinite(out)] = np.nan
    return out


def has_lists(table: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` exists and holds at least one non-empty list."""
    if column not in table.columns:
        return False
    return any(isinstance(v, list | tuple | np.ndarray) and len(v) for v in table[column])


def _length(value: object) -> int:
    return len(value) if isinstance(value, list | tuple | np.ndarray) else 0


def group_label(keys: Sequence[str], values: Sequence) -> str:
    return " · ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all trials"


def curve_panels(
    table: pd.DataFrame,
    column: str,
    treatment: str,
    arms: Sequence[str],
    by: Sequence[str],
    max_panels: int = 12,
) -> tuple[list[CurvePanel], list[str]]:
    """Median and quartiles of ``column``'s curves per arm, one panel per group of ``by``.

    When ``by`` makes more than ``max_panels`` groups, the trailing columns are pooled over
    until it does not; returns the panels and the columns pooled over.
    """
    by = list(by)
    pooled: list[str] = []
    while by and table.groupby(by, sort=False, dropna=False).ngroups > max_panels:
        pooled.insert(0, by.pop())
    panels = []
    groups = table.groupby(by, sort=True, dropna=False) if by else [((), table)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        median, q25, q75, n = {}, {}, {}, {}
        for arm in arms:
            curves = stack_lists(part.loc[part[treatment] == arm, column].tolist())
            keep = np.isfinite(curves).any(axis=1) if curves.size else np.zeros(0, bool)
            curves = curves[keep]
            if not len(curves) or not curves.shape[1]:
                continue
            # A column where no trial has a point would warn; those points stay NaN.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                q = np.nanpercentile(curves, [25, 50, 75], axis=0)
            q25[arm], median[arm], q75[arm], n[arm] = q[0], q[1], q[2], len(curves)
        if median:
            panels.append(CurvePanel(group_label(by, key), median, q25, q75, n))
    return panels, pooled


def per_class_rows(
    table: pd.DataFrame,
    column: str,
    treatment: str,
    counts_column: str = "class_counts",
    relative: bool = False,
    scale: float = 1.0,
    max_bins: int = 12,
) -> pd.DataFrame:
    """Per-class values of ``column`` against the class's training count, per arm.

    Uses trials with measured metrics whose value and count lists have the same length.
    ``relative``: divide each trial's values by their mean (to pool networks whose weight
    norms differ in scale). Classes are grouped by their count (log-spaced bins when there
    are more than ``max_bins`` distinct counts). Returns columns arm, count (median count
    in the bin), mean, q25, q75, n_classes (class x trial points).
    """
    empty = pd.DataFrame(columns=["arm", "count", "mean", "q25", "q75", "n_classes"])
    if not has_lists(table, column) or counts_column not in table.columns:
        return empty
    measured = table["status"].astype(str).isin(MEASURED_STATUSES).to_numpy()
    values = stack_lists(table[column].tolist())
    counts = stack_lists(table[counts_column].tolist())
    width = min(values.shape[1], counts.shape[1])
    lengths_v = np.array([_length(v) for v in table[column]])
    lengths_c = np.array([_length(c) for c in table[counts_column]])
    use = measured & (lengths_v == lengths_c) & (lengths_v > 0)
    if not use.any() or width == 0:
        return empty
    values, counts = values[use, :width], counts[use, :width]
    if relative:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=1, keepdims=True)
        values = np.where((mean != 0) & np.isfinite(mean), values / mean, np.nan)
    arms = np.repeat(table[treatment].to_numpy()[use], width)
    long = pd.DataFrame({"arm": arms, "count": counts.ravel(), "value": values.ravel() * scale})
    long = long[np.isfinite(long["value"]) & (long["count"] > 0)]
    if long.empty:
        return empty
    distinct = np.unique(long["count"])
    if len(distinct) > max_bins:
        edges = np.geomspace(distinct.min(), distinct.max() * 1.0001, max_bins + 1)
        bins = np.searchsorted(edges, long["count"], side="right") - 1
        long["bin"] = np.clip(bins, 0, max_bins - 1)
    else:
        long["bin"] = np.searchsorted(distinct, long["count"])
    grouped = long.groupby(["arm", "bin"], sort=False)
    out = grouped.agg(
        count=("count", "median"), mean=("value", "mean"), n_classes=("value", "size")
    )
    out["q25"] = grouped["value"].quantile(0.25)
    out["q75"] = grouped["value"].quantile(0.75)
    return out.reset_index()[["arm", "count", "mean", "q25", "q75", "n_classes"]]
