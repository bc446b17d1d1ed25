"""Pairing: one paired difference (variant - control) per complete pairing block."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS, OK
from bnstudy.protocol import TREATMENT, Factors, Protocol


def condition_columns(protocol: Protocol, table: pd.DataFrame | None = None) -> list[str]:
    """The factor columns that define a condition: every factor except the treatment.

    With ``table``, only those present in it (a table may omit constant factors).
    """
    cols = [f for f in Factors.model_fields if f != TREATMENT]
    return cols if table is None else [c for c in cols if c in table.columns]


@dataclasses.dataclass(frozen=True)
class Pairs:
    """The complete pairs of one metric x variant.

    ``frame`` has one row per complete block: block_id, the condition columns, ``condition``
    (int code, 0..G-1 in first-seen order), ``control``, ``variant`` and ``d`` = variant -
    control, all in analysis units (stored value x metric scale).
    """

    frame: pd.DataFrame
    condition_columns: list[str]
    n_blocks: int  # blocks in which at least one arm has a row
    n_dropped: int  # of those, blocks without a usable value for both arms

    @property
    def n_pairs(self) -> int:
        return len(self.frame)

    @property
    def n_conditions(self) -> int:
        return int(self.frame["condition"].nunique()) if len(self.frame) else 0


def usable(table: pd.DataFrame, metric: str) -> pd.Series:
    """Rows that can enter a paired estimate: status ok and a finite metric value."""
    values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    return (table["status"] == OK).to_numpy() & np.isfinite(values)


def paired_differences(table: pd.DataFrame, protocol: Protocol, metric: str, variant: str) -> Pairs:
    """Block-level differences variant - control of ``metric`` on the analysis scale.

    Blocks missing an arm (failed, diverged, collapsed, absent, or a non-finite value) drop
    out and are counted in ``n_dropped``. Duplicate rows of one arm in a block keep the first.
    """
    cols = condition_columns(protocol, table)
    arms = table[table[TREATMENT].isin([protocol.control, variant])]
    n_blocks = int(arms["block_id"].nunique())
    ok = arms[usable(arms, metric)]
    ctrl = ok[ok[TREATMENT] == protocol.control].drop_duplicates("block_id")
    var = ok[ok[TREATMENT] == variant].drop_duplicates("block_id")
    scale = METRICS[metric].scale
    frame = ctrl[["block_id", *cols, metric]].merge(
        var[["block_id", metric]], on="block_id", suffixes=("_c", "_v"), sort=False
    )
    frame = frame.rename(columns={f"{metric}_c": "control", f"{metric}_v": "variant"})
    frame["control"] = frame["control"].astype(float) * scale
    frame["variant"] = frame["variant"].astype(float) * scale
    frame["d"] = frame["variant"] - frame["control"]
    codes = frame.groupby(cols, sort=False, dropna=False).ngroup() if cols else 0
    frame["condition"] = np.asarray(codes, dtype=int) if len(frame) else np.zeros(0, int)
    return Pairs(frame.reset_index(drop=True), cols, n_blocks, n_blocks - len(frame))


def varying_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Those of ``columns`` that take more than one value in ``frame``."""
    return [c for c in columns if frame[c].nunique(dropna=False) > 1]


def condition_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A readable label per row, 'factor=value, ...' over the factors that vary."""
    vary = varying_columns(frame, columns)
    if not vary:
        return pd.Series("all", index=frame.index)
    parts = [c + "=" + frame[c].astype(str) for c in vary]
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label
