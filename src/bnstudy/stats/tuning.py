"""The tuned comparison: each arm at its own best level of the tuning factors.

Batch norm changes the effective learning rate, so comparing two heads at one learning rate
confounds "the head helps" with "the head suits this learning rate". When the design
declares tuning factors (e.g. ``("lr",)``) and a selection metric ``select_by`` (a metric of
the validation split, never of the test set), the tuned estimand is

    effect(tuned) = Y_variant(best level for the variant) - Y_control(best level for the control)

per *base condition* (a condition without the tuning factors). The best level is chosen per
arm and base condition as the level with the best mean ``select_by`` over its seeds (in the
analysis population: under intention to treat, trials without metrics count at the declared
``failed_score``, so a learning rate at which an arm diverges is not chosen for it). The
selected trials are then paired by seed within the base condition (the data subset, body
initialisation and data order follow the seed, not the learning rate) and analysed like the
fixed-setting comparison; their rows carry ``estimand == "tuned"``.

Optimism. The levels are chosen on the validation split and evaluated on the test split, so
the test noise of a trial does not enter its selection. The *seed* does: the same seeds
serve selection and evaluation, and a seed that happens to suit a level on validation tends
to suit it on test as well, which flatters the selected level (winner's curse). The bias
enters both arms; it cancels in the difference only when both have as many levels and the
same spread. Selecting on separate seeds (or leave-one-seed-out) would remove it; this
implementation records the selected level per arm and condition (:data:`SELECTION_COLUMNS`)
with the margin to the next-best level, so a reader sees how clear each choice was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import Design
from bnstudy.stats.imputation import ITT, Scored, score_trials
from bnstudy.stats.paired import (
    Pairs,
    condition_columns,
    condition_labels,
    paired_differences,
    varying_columns,
)

FIXED = "fixed"
TUNED = "tuned"
#: The column pairing the arms of a tuned comparison (the tuning level differs per arm, so
#: the pairing block, which includes it, cannot).
SEED_COLUMN = "seed"
SELECTION_COLUMNS = [
    "population",
    "arm",
    "condition",
    "selected",
    "select_by",
    "value",
    "next_best",
    "next_best_value",
    "n_levels",
    "n_trials",
]


@dataclasses.dataclass(frozen=True)
class Selection:
    """The level chosen per arm x base condition, for one population.

    ``table`` has :data:`SELECTION_COLUMNS` plus one column per base-condition factor that
    varies in the results table and one per tuning factor (the selected level); ``notes``
    are diagnostics.
    """

    table: pd.DataFrame
    base_columns: list[str]
    tuning_columns: list[str]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.table.empty


def base_design(design: Design) -> Design:
    """The design of the tuned comparison: conditions and moderators without the tuning
    factors."""
    return dataclasses.replace(
        design,
        conditions=tuple(c for c in design.conditions if c not in design.tuning),
        moderators={m: t for m, t in design.moderators.items() if m not in design.tuning},
    )


def select_levels(table: pd.DataFrame, design: Design, population: str = ITT) -> Selection:
    """Each arm's best level of ``design.tuning`` per base condition, on ``design.select_by``."""
    tune = [c for c in design.tuning if c in table.columns]
    # Factors constant over the table add nothing to a condition: left out of the table.
    base = varying_columns(
        table, [c for c in condition_columns(design, table) if c not in design.tuning]
    )
    empty = Selection(pd.DataFrame(columns=[*SELECTION_COLUMNS, *base, *tune]), base, tune)
    select_by = design.select_by
    missing = [c for c in design.tuning if c not in table.columns]
    if missing:
        return dataclasses.replace(empty, notes=(f"tuning factor(s) {missing} not in the table",))
    if not select_by or select_by not in table.columns:
        return dataclasses.replace(
            empty, notes=(f"selection metric {select_by!r} not in the table: no tuned comparison",)
        )
    direction = METRICS[select_by].direction if select_by in METRICS else "higher"
    scored = score_trials(
        table,
        select_by,
        condition_columns(design, table),
        population,
        design.failed_score,
        direction,
    )
    if not np.isfinite(scored.values).any():
        return dataclasses.replace(
            empty,
            notes=(
                f"no finite {select_by} in the table (a dataset without a validation split?): "
                "no tuned comparison",
            ),
        )
    keys = [design.treatment, *base]
    frame = table[[*keys, *tune]].assign(_v=scored.values, _finite=np.isfinite(scored.values))
    means = (
        frame.groupby([*keys, *tune], sort=True, dropna=False)
        .agg(value=("_v", "mean"), n_trials=("_v", "size"), n_finite=("_finite", "sum"))
        .reset_index()
    )
    sign = 1.0 if direction == "higher" else -1.0
    # Best first; a level with no value at all can never be chosen; ties go to the lowest.
    means["_rank"] = np.where(np.isfinite(means["value"]), -sign * means["value"], np.inf)
    rows = []
    for key, group in means.groupby(keys, sort=False, dropna=False):
        ranked = group.sort_values("_rank", kind="stable")
        best = ranked.iloc[0]
        if not np.isfinite(best["_rank"]):
            continue
        nxt = ranked.iloc[1] if len(ranked) > 1 else None
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row.update({c: best[c] for c in tune})
        row.update(
            arm=row[design.treatment],
            selected=", ".join(f"{c}={best[c]}" for c in tune),
            select_by=select_by,
            value=float(best["value"]) * _scale(select_by),
            next_best=(", ".join(f"{c}={nxt[c]}" for c in tune) if nxt is not None else ""),
            next_best_value=(
                float(nxt["value"]) * _scale(select_by) if nxt is not None else float("nan")
            ),
            n_levels=int(np.isfinite(group["_rank"]).sum()),
            n_trials=int(best["n_trials"]),
            population=population,
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return empty
    out["condition"] = condition_labels(out, base).to_numpy() if base else "all"
    out = out[[*SELECTION_COLUMNS, *base, *tune]]
    return Selection(out.reset_index(drop=True), base, tune, scored.notes)


def _scale(metric: str) -> float:
    return METRICS[metric].scale if metric in METRICS else 1.0


def tuned_differences(
    table: pd.DataFrame,
    design: Design,
    metric: str,
    variant: str,
    scored: Scored,
    selection: Selection,
) -> Pairs:
    """Paired differences of ``metric`` between the variant at its selected level and the
    control at its own, by seed within each base condition (see the module docstring).

    ``scored``: the metric's values for every row of ``table`` (its population decides the
    pairs'). Raises ValueError when the table has no :data:`SEED_COLUMN`.
    """
    if SEED_COLUMN not in table.columns:
        raise ValueError(f"the tuned comparison pairs arms by {SEED_COLUMN!r}: no such column")
    sel = selection.table.rename(columns={"arm": design.treatment})
    keys = [design.treatment, *selection.base_columns, *selection.tuning_columns]
    chosen = sel[sel[design.treatment].isin([design.control, variant])][keys]
    chosen = chosen.assign(_chosen=True)
    marked = table[keys].merge(chosen, on=keys, how="left", sort=False)
    mask = marked["_chosen"].fillna(False).astype(bool).to_numpy()
    sub = table[mask]
    base_code = (
        sub.groupby(selection.base_columns, sort=False, dropna=False).ngroup().astype(str)
        if selection.base_columns
        else pd.Series("0", index=sub.index)
    )
    sub = sub.assign(block_id="tuned:" + base_code + ":" + sub[SEED_COLUMN].astype(str))
    sub_scored = Scored(
        scored.population, scored.values[mask], scored.imputed[mask], scored.rule[mask]
    )
    return paired_differences(sub, base_design(design), metric, variant, scored=sub_scored)


def tuning_moderators(design: Design) -> Sequence[str]:
    """The moderators of the tuned comparison (the tuning factors are chosen, not varied)."""
    return [m for m in design.moderators if m not in design.tuning]
