"""Pairing: one paired difference (variant - control) per complete pairing block.

Which trials bring a value, and which value, depends on the analysis population (see
:mod:`bnstudy.stats.imputation`): intention to treat (primary) or ok trials only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS, OK
from bnstudy.spec.design import Design
from bnstudy.stats.imputation import ITT, Scored, score_trials


def as_design(design: Design | Any) -> Design:
    """A :class:`~bnstudy.spec.design.Design`, from itself or from anything with a ``design()``
    method (a ``Protocol``: accepted for compatibility, without importing pydantic here)."""
    if isinstance(design, Design):
        return design
    if callable(getattr(design, "design", None)):
        return design.design()
    raise TypeError(f"expected a bnstudy Design (or a Protocol), got {type(design).__name__}")


def condition_columns(design: Design | Any, table: pd.DataFrame | None = None) -> list[str]:
    """The factor columns that define a condition: every factor except the treatment.

    With ``table``, only those present in it (a table may omit constant factors).
    """
    cols = list(as_design(design).conditions)
    return cols if table is None else [c for c in cols if c in table.columns]


@dataclasses.dataclass(frozen=True)
class Pairs:
    """The complete pairs of one metric x variant.

    ``frame`` has one row per complete block: block_id, the condition columns, ``condition``
    (int code, 0..G-1 in first-seen order), ``control``, ``variant`` and ``d`` = variant -
    control, all in analysis units (stored value x metric scale), and ``control_imputed`` /
    ``variant_imputed`` (bool: the value was declared for a trial without metrics).
    """

    frame: pd.DataFrame
    condition_columns: list[str]
    n_blocks: int  # blocks in which at least one arm has a row
    n_dropped: int  # of those, blocks without a usable value for both arms
    population: str = ITT
    #: Of the dropped blocks, those whose arms both lack metrics (intention to treat only).
    n_unmeasured: int = 0

    @property
    def n_pairs(self) -> int:
        return len(self.frame)

    @property
    def n_imputed_control(self) -> int:
        return int(self.frame["control_imputed"].sum())

    @property
    def n_imputed_variant(self) -> int:
        return int(self.frame["variant_imputed"].sum())

    @property
    def n_conditions(self) -> int:
        return int(self.frame["condition"].nunique()) if len(self.frame) else 0


def usable(table: pd.DataFrame, metric: str) -> pd.Series:
    """Rows of the "ok only" population: status ok and a finite metric value."""
    values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    return (table["status"] == OK).to_numpy() & np.isfinite(values)


def paired_differences(
    table: pd.DataFrame,
    design: Design | Any,
    metric: str,
    variant: str,
    population: str = ITT,
    scored: Scored | None = None,
) -> Pairs:
    """Block-level differences variant - control of ``metric`` on the analysis scale.

    ``design``: a :class:`~bnstudy.spec.design.Design` (or a Protocol). ``population``:
    "intention-to-treat" (default, the primary analysis: collapsed trials with their
    metrics, trials without metrics at the design's ``failed_score``) or
    "ok only". ``scored``: the rows' values from :func:`~bnstudy.stats.imputation.
    score_trials` when already computed (it then decides the population). Blocks missing
    an arm (absent, no value in this population, or a non-finite value) drop out and are
    counted in ``n_dropped``. Duplicate rows of one arm in a block keep the first usable one.

    A block in which *both* arms lack metrics also drops out (``n_unmeasured``): it measured
    nothing, and the declared score it would give both arms makes its difference exactly 0,
    which would only shrink the variance and push towards "equivalent" (a study in which
    every trial diverged would be declared equivalent). The failure-rate analysis counts it.
    """
    design = as_design(design)
    cols = condition_columns(design, table)
    if scored is None:
        spec = design.metrics.get(metric)
        scored = score_trials(
            table,
            metric,
            cols,
            population,
            design.failed_score,
            spec.direction if spec is not None else None,
        )
    arm = table[design.treatment]
    in_arms = arm.isin([design.control, variant]).to_numpy()
    arms = table[in_arms].assign(_value=scored.values[in_arms], _imputed=scored.imputed[in_arms])
    n_blocks = int(arms["block_id"].nunique())
    ok = arms[np.isfinite(arms["_value"].to_numpy(dtype=float))]
    ctrl = ok[ok[design.treatment] == design.control].drop_duplicates("block_id")
    var = ok[ok[design.treatment] == variant].drop_duplicates("block_id")
    scale = METRICS[metric].scale
    frame = ctrl[["block_id", *cols, "_value", "_imputed"]].merge(
        var[["block_id", "_value", "_imputed"]], on="block_id", suffixes=("_c", "_v"), sort=False
    )
    frame = frame.rename(
        columns={
            "_value_c": "control",
            "_value_v": "variant",
            "_imputed_c": "control_imputed",
            "_imputed_v": "variant_imputed",
        }
    )
    frame["control"] = frame["control"].astype(float) * scale
    frame["variant"] = frame["variant"].astype(float) * scale
    frame["control_imputed"] = frame["control_imputed"].astype(bool)
    frame["variant_imputed"] = frame["variant_imputed"].astype(bool)
    unmeasured = (frame["control_imputed"] & frame["variant_imputed"]).to_numpy()
    frame = frame[~unmeasured].copy()
    frame["d"] = frame["variant"] - frame["control"]
    codes = frame.groupby(cols, sort=False, dropna=False).ngroup() if cols else 0
    frame["condition"] = np.asarray(codes, dtype=int) if len(frame) else np.zeros(0, int)
    return Pairs(
        frame.reset_index(drop=True),
        cols,
        n_blocks,
        n_blocks - len(frame),
        scored.population,
        int(unmeasured.sum()),
    )


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
