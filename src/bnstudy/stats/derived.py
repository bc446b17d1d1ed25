"""Metrics derived from other columns of the results table (``catalogue.DERIVED_METRICS``).

Training records what it measures; a derived metric is computed here, at analysis time, so
that tables written before it existed have it too and it can be named like any other
metric (``analysis.metrics``, a hypothesis' ``metric``).
"""

from __future__ import annotations

import pandas as pd

from bnstudy.catalogue import OK


def with_derived_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every derived metric column added (a new frame; the input is kept).

    ``failure``: 1.0 when the trial did not end ok (collapsed, diverged, failed, timed out,
    out of memory), else 0.0. Recomputed from ``status`` even when a column of that name
    exists, so it can never disagree with the status.
    """
    if "status" not in table.columns:
        return table
    return table.assign(failure=(table["status"].astype(str) != OK).astype(float))
