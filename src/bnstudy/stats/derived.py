"""Metrics derived from other columns of the results table (``catalogue.DERIVED_METRICS``).

Training records what it measures; a derived metric is computed here, at analysis time, so
that tables written before it existed have it too and it can be named like any other
metric (``analysis.metrics``, a hypothesis' ``metric``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnstudy.catalogue import LEARNED_SHARE, OK
from bnstudy.stats.imputation import num_classes


def with_derived_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every derived metric column added (a new frame; the input is kept).

    ``failure``: 1.0 when the trial did not end ok (collapsed, diverged, failed, timed out,
    out of memory), else 0.0. Recomputed from ``status`` even when a column of that name
    exists, so it can never disagree with the status.

    ``not_learned``: 1.0 when the trial failed or its balanced accuracy is below
    ``1/C + LEARNED_SHARE * (1 - 1/C)`` (C classes, from the row's ``class_counts``, else
    the most common C of its dataset's rows), else 0.0; NaN for an ok trial whose C or
    balanced accuracy is unknown.
    """
    if "status" not in table.columns:
        return table
    failed = (table["status"].astype(str) != OK).to_numpy()
    out = table.assign(failure=failed.astype(float))
    if "balanced_acc" not in table.columns:
        return out
    # A row without class_counts (a failed trial) takes its dataset's most common count.
    by = table["dataset"] if "dataset" in table.columns else pd.Series(0, index=table.index)
    classes = num_classes(table, by.astype(str).factorize()[0]).astype(float)
    chance = np.where(classes > 0, 1.0 / np.where(classes > 0, classes, 1.0), np.nan)
    line = chance + LEARNED_SHARE * (1.0 - chance)
    acc = pd.to_numeric(table["balanced_acc"], errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(acc) & np.isfinite(line)
    below = np.where(known, acc < np.where(known, line, 0.0), False)
    not_learned = np.where(failed | below, 1.0, np.where(known, 0.0, np.nan))
    return out.assign(not_learned=not_learned)
