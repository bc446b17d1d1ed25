"""Grid edges of the tuned comparison: which comparisons rest on a level chosen at the lowest
or highest level tried, unless the protocol declares that level a bound (then the grid was
meant to stop there). A verdict that rests on an edge reads ``EDGE_VERDICT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.spec.design import Design
from bnstudy.stats.imputation import ITT
from bnstudy.stats.tuning import Selection, edge_sides

#: :func:`tuning_edges`' columns (then one per varying base-condition factor).
EDGE_COLUMNS = ["population", "metric", "variant", "control", "condition", "edge", "detail"]


Bounds = Mapping[str, tuple[Any, Any]]


def declared_bounds(design: Design) -> dict[str, tuple[Any, Any]]:
    """The bounds the protocol declares per tuning factor (``analysis.tune``'s mapping form)."""
    settings = getattr(design, "tune_settings", None) or {}
    return {f: s.bounds for f, s in settings.items() if getattr(s, "bounds", None) is not None}


def tuning_edges(
    selection: Selection,
    design: Design,
    bounds: Bounds | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Whether the tuned comparison rests on a selection at an edge of the tuning grid, per
    population x metric x variant x base condition (:data:`EDGE_COLUMNS`, then the varying
    base-condition factors, to match moderator levels).

    ``edge`` is True where a level selected for the variant or the control (either fold) lies
    at the lowest or highest level tried (``at_edge``), unless a declared bound explains it:
    ``bounds`` maps a tuning factor to ``(low, high)`` (either may be None: not declared;
    default: the bounds the design declares, ``design.tune_settings``), and a level at or
    beyond its side's bound (e.g. lr 1.0 with high 1.0) is where the grid was meant to stop,
    not an edge to worry about. ``detail`` says which arm, level and folds
    (empty when ``edge`` is False). The selection does not depend on the metric: every
    metric of ``metrics`` (default: the design's) gets the same rows.
    """
    base = selection.base_columns
    columns = [*EDGE_COLUMNS, *base]
    sel = selection.table
    if sel.empty:
        return pd.DataFrame(columns=columns)
    if bounds is None:
        bounds = declared_bounds(design)
    tune = selection.tuning_columns
    worries = [_worrying_sides(r, tune, bounds) for r in sel.to_dict("records")]
    sel = sel.assign(_worry=worries)
    rows = []
    conditions = sel.drop_duplicates(["population", "condition"])
    for cond in conditions.to_dict("records"):
        here = sel[
            (sel["population"] == cond["population"]) & (sel["condition"] == cond["condition"])
        ]
        for variant in design.variants:
            detail = "; ".join(
                d for arm in (variant, design.control) if (d := _edge_detail(here, arm))
            )
            row = {
                "population": cond["population"],
                "variant": variant,
                "control": design.control,
                "condition": cond["condition"],
                "edge": bool(detail),
                "detail": detail,
                **{c: cond[c] for c in base},
            }
            rows += [{**row, "metric": m} for m in (design.metrics if metrics is None else metrics)]
    return pd.DataFrame(rows, columns=columns)


def _worrying_sides(row: Mapping[str, Any], tune: Sequence[str], bounds: Bounds) -> str:
    """The edges of one selection that no declared bound explains, as text ("" if none)."""
    found = []
    for factor, side in edge_sides(str(row["at_edge"]), tune):
        level = row[factor]
        low, high = bounds.get(factor, (None, None))
        bound = low if side == "low" else high
        if bound is not None and (
            np.isclose(level, bound) or (level < bound if side == "low" else level > bound)
        ):
            continue
        found.append(f"{factor}={level}, the {'lowest' if side == 'low' else 'highest'} tried")
    return " and ".join(found)


def _edge_detail(here: pd.DataFrame, arm: str) -> str:
    """One arm's worrying edges in one condition, e.g. "bn at lr=0.03, the lowest tried
    (folds A, B)"."""
    hits = here[(here["arm"] == arm) & (here["_worry"] != "")]
    if hits.empty:
        return ""
    parts = [
        f"{arm} at {worry} (fold{'s' if len(g) > 1 else ''} {', '.join(g['fold'])})"
        for worry, g in hits.groupby("_worry", sort=False)
    ]
    return "; ".join(parts)


def rests_on_edge(
    edges: pd.DataFrame,
    metric: str,
    variant: str,
    population: str = ITT,
    where: Mapping[str, Any] | None = None,
) -> str:
    """A diagnostics sentence when the tuned comparison of ``metric`` x ``variant`` (in the
    conditions matching ``where``, e.g. ``{"dataset": "d0"}`` for a moderator level's row, the
    level as a value or as the estimates table's text; all when None) rests on a selection at
    a grid edge (:func:`tuning_edges`); "" when not. A verdict with a sentence here reads
    :data:`~bnstudy.stats.inference.EDGE_VERDICT`."""
    if edges.empty:
        return ""
    keep = (
        (edges["metric"] == metric)
        & (edges["variant"] == variant)
        & (edges["population"] == population)
    )
    for factor, level in (where or {}).items():
        if factor in edges.columns:  # estimate rows carry a level as text ("1.0", "d0")
            keep &= edges[factor].astype(str) == str(level)
    rows = edges[keep]
    hit = rows[rows["edge"].astype(bool)]
    if hit.empty:
        return ""
    first = f"{hit['condition'].iloc[0]}: {hit['detail'].iloc[0]}"
    return (
        f"the tuned comparison rests on a level chosen at the edge of the tuning grid in "
        f"{len(hit)} of {len(rows)} condition(s) (e.g. {first}): the best level may lie "
        "outside the grid, so the verdict is inconclusive; widen the grid or declare the "
        "bound"
    )
