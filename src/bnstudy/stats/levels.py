"""Each arm's metric level per condition: the numbers behind the paired differences.

An effect of +12.6 pp does not say whether the control scores 30% or 90%; these levels do.
A trial's value follows the population rules of the paired analysis
(:mod:`bnstudy.stats.imputation`): for a catalogue metric (:data:`~bnstudy.catalogue.METRICS`)
intention to treat by default, i.e. collapsed trials with their measured values and trials
without metrics at the declared ``failed_score``; for any other recorded column (dead units,
train/eval gap, ...) the measured values of ok and collapsed trials. The ``values`` column
of the result says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy.catalogue import MEASURED_STATUSES, METRICS, OK
from bnstudy.stats.imputation import ITT, OK_ONLY, POPULATIONS, score_trials

#: ``values`` of rows whose trials count with measured values only (no declared scores).
MEASURED = "measured (ok and collapsed trials)"
#: Every column of :func:`arm_levels`' result, with the ``by`` columns after ``arm``.
LEVEL_COLUMNS = [
    "metric",
    "unit",
    "arm",
    "values",
    "n",
    "n_imputed",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "median",
]
#: :attr:`Analysis.arm_levels <bnstudy.stats.analysis_result.Analysis>`: the columns of
#: :data:`LEVEL_COLUMNS` with ``by`` (which grouping a row belongs to, see :func:`by_label`)
#: after ``arm``; :func:`level_table` inserts a column per varying factor after ``by``.
LEVEL_TABLE_COLUMNS = [*LEVEL_COLUMNS[:3], "by", *LEVEL_COLUMNS[3:]]
#: ``by`` of the rows over every trial of an arm (no grouping).
EVERY_TRIAL = "overall"


def level_unit(metric: str) -> str:
    """The unit a level of ``metric`` is given in: "%" for metrics whose differences are in
    percentage points, the catalogue's unit otherwise, "" for columns outside the catalogue."""
    info = METRICS.get(metric)
    if info is None:
        return ""
    return "%" if info.unit == "pp" else info.unit


def arm_levels(
    table: pd.DataFrame,
    metrics: Sequence[str],
    *,
    treatment: str,
    conditions: Sequence[str] = (),
    by: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
    population: str = ITT,
    failed_score: str = "chance",
    directions: Mapping[str, str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean of each arm's ``metric`` per group of ``by``, with a t interval over its trials.

    ``table``: one row per trial (``status``, ``treatment`` and the metric columns);
    ``conditions``: the columns that define a condition (where a "worst" score is looked
    up); ``by``: the columns to group by (default: those of ``conditions`` that take more
    than one value; ``()``: one row per arm); ``arms``: the arm order (default: first seen);
    ``population``: "intention-to-treat" or "ok only" for catalogue metrics.

    Returns :data:`LEVEL_COLUMNS` with the ``by`` columns inserted after ``arm``: one row per
    metric x arm x group with at least one value, in analysis units (accuracies in %, see
    :func:`level_unit`); ``n`` trials with a value, ``n_imputed`` of them declared scores;
    ``ci_low``/``ci_high`` NaN where n < 2. Metrics absent from the table are skipped.
    Several groupings of one table: :func:`trial_values` once, then :func:`summarize_levels`.
    """
    cond_cols = [c for c in conditions if c in table.columns]
    if by is None:
        by = [c for c in cond_cols if table[c].nunique(dropna=False) > 1]
    values = trial_values(
        table,
        metrics,
        treatment=treatment,
        conditions=conditions,
        keep=by,
        population=population,
        failed_score=failed_score,
        directions=directions,
    )
    return summarize_levels(values, by, arms=arms, confidence=confidence)


def trial_values(
    table: pd.DataFrame,
    metrics: Sequence[str],
    *,
    treatment: str,
    conditions: Sequence[str] = (),
    keep: Sequence[str] | None = None,
    population: str = ITT,
    failed_score: str = "chance",
    directions: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Each trial's value of each metric for ``population``, long: one row per trial x metric
    with a value, columns metric, unit, values (which population rule), arm, the ``keep``
    columns (default: ``conditions``), value (analysis units) and imputed (a declared
    score). See :func:`arm_levels` for the arguments."""
    if population not in POPULATIONS:
        raise ValueError(f"unknown population {population!r}; allowed: {', '.join(POPULATIONS)}")
    for column in ("status", treatment):
        if column not in table.columns:
            raise ValueError(f"results table lacks column {column!r}; has {list(table.columns)}")
    cond_cols = [c for c in conditions if c in table.columns]
    keep = list(cond_cols if keep is None else keep)
    missing = [c for c in keep if c not in table.columns]
    if missing:
        raise ValueError(f"cannot group levels by {missing}: not columns of the results table")
    directions = directions or {}
    parts = []
    base = table[[treatment, *keep]].rename(columns={treatment: "arm"})
    for metric in metrics:
        if metric not in table.columns:
            continue
        values, imputed, label = _values(
            table, metric, cond_cols, population, failed_score, directions.get(metric)
        )
        finite = np.isfinite(values)
        if not finite.any():
            continue
        part = base[finite].assign(value=values[finite], imputed=imputed[finite])
        part.insert(0, "metric", metric)
        part.insert(1, "unit", level_unit(metric))
        part.insert(2, "values", label)
        parts.append(part)
    columns = ["metric", "unit", "values", "arm", *keep, "value", "imputed"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def summarize_levels(
    values: pd.DataFrame,
    by: Sequence[str] = (),
    *,
    arms: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`trial_values` summarised per metric x arm x ``by`` group (see
    :func:`arm_levels` for the result)."""
    by = list(by)
    columns = [*LEVEL_COLUMNS[:3], *by, *LEVEL_COLUMNS[3:]]
    if values.empty:
        return pd.DataFrame(columns=columns)
    keys = ["metric", "unit", "values", "arm", *by]
    grouped = values.groupby(keys, sort=False, dropna=False)
    out = grouped["value"].agg(n="count", mean="mean", sd="std", median="median")
    out["n_imputed"] = grouped["imputed"].sum().astype(int)
    out = out.reset_index()
    n = out["n"].to_numpy(dtype=float)
    half = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * out["sd"] / np.sqrt(n)
    out["ci_low"] = np.where(n > 1, out["mean"] - half, np.nan)
    out["ci_high"] = np.where(n > 1, out["mean"] + half, np.nan)
    metric_order = list(pd.unique(values["metric"]))
    arm_order = list(arms) if arms is not None else list(pd.unique(values["arm"]))
    out["_metric"] = [metric_order.index(m) for m in out["metric"]]
    out["_arm"] = [arm_order.index(a) if a in arm_order else len(arm_order) for a in out["arm"]]
    out = out.sort_values(["_metric", *by, "_arm"], kind="stable")
    out = out.drop(columns=["_metric", "_arm"])[columns].reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    return out


def by_label(by: Sequence[str]) -> str:
    """The ``by`` of a grouping's rows in a level table: the factors' names, or
    :data:`EVERY_TRIAL` for none."""
    return ", ".join(by) or EVERY_TRIAL


def level_groupings(varying: Sequence[str]) -> list[tuple[str, ...]]:
    """The groupings of a level table: every trial, each varying factor alone, and (when
    several vary) all of them together, i.e. per condition."""
    out: list[tuple[str, ...]] = [(), *((f,) for f in varying)]
    if len(varying) > 1:
        out.append(tuple(varying))
    return out


def level_table(
    table: pd.DataFrame,
    metrics: Sequence[str],
    *,
    treatment: str,
    conditions: Sequence[str] = (),
    arms: Sequence[str] | None = None,
    failed_score: str = "chance",
    directions: Mapping[str, str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Each arm's intention-to-treat levels of ``metrics`` in every grouping of
    :func:`level_groupings` over the ``conditions`` that vary in ``table``, one long table
    (:data:`LEVEL_TABLE_COLUMNS` plus a column per varying factor, empty where a row's
    grouping does not use it). :func:`levels_by` takes one grouping back out."""
    conds = [c for c in conditions if c in table.columns]
    varying = [c for c in conds if len(table) and table[c].nunique(dropna=False) > 1]
    columns = [*LEVEL_TABLE_COLUMNS[:4], *varying, *LEVEL_TABLE_COLUMNS[4:]]
    if len(table) == 0:
        return pd.DataFrame(columns=columns)
    values = trial_values(
        table,
        metrics,
        treatment=treatment,
        conditions=conditions,
        keep=varying,
        failed_score=failed_score,
        directions=directions,
    )
    parts = []
    for by in level_groupings(varying):
        rows = summarize_levels(values, by, arms=arms, confidence=confidence)
        # Object columns, so that a factor's integers stay integers beside other groupings'
        # empty cells (:func:`levels_by` gives them their own type back).
        rows = rows.astype({c: object for c in by})
        rows.insert(3, "by", by_label(by))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)


def levels_by(levels: pd.DataFrame | None, by: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of one grouping of a :func:`level_table`, as :func:`summarize_levels` gives
    them (the ``by`` columns after ``arm``); empty when the table has no such grouping."""
    by = list(by)
    columns = [*LEVEL_COLUMNS[:3], *by, *LEVEL_COLUMNS[3:]]
    if levels is None or "by" not in levels.columns or not set(by) <= set(levels.columns):
        return pd.DataFrame(columns=columns)
    rows = levels[levels["by"] == by_label(by)]
    return rows[columns].infer_objects().reset_index(drop=True)


def _values(
    table: pd.DataFrame,
    metric: str,
    conditions: list[str],
    population: str,
    failed_score: str,
    direction: str | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per row: the value in analysis units, whether it was declared, and the label."""
    raw = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    status = table["status"].astype(str).to_numpy()
    info = METRICS.get(metric)
    if info is None:  # a recorded column: no declared scores exist for it
        keep = np.isin(status, MEASURED_STATUSES) & np.isfinite(raw)
        return np.where(keep, raw, np.nan), np.zeros(len(table), bool), MEASURED
    scored = score_trials(table, metric, conditions, population, failed_score, direction)
    label = "intention to treat" if population == ITT else f"{OK_ONLY} (status {OK})"
    return np.asarray(scored.values, float) * info.scale, np.asarray(scored.imputed, bool), label
