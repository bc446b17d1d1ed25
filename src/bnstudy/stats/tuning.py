"""The tuned comparison: each arm at its own best level of the tuning factors, cross-fitted.

Batch norm changes the effective learning rate, so comparing two heads at one learning rate
confounds "the head helps" with "the head suits this learning rate". When the design
declares tuning factors (e.g. ``("lr",)``) and a selection metric ``select_by`` (a metric of
the validation split, never of the test set), the tuned estimand is

    effect(tuned) = Y_variant(best level for the variant) - Y_control(best level for the control)

per *base condition* (a condition without the tuning factors), estimated by cross-fitting
the seeds so that no seed both chooses a level and is evaluated at it:

1. Folds. Within each base condition the distinct seeds, in ascending order, alternate
   between fold A and fold B (the 1st, 3rd, 5th, ... seed in A; the 2nd, 4th, ... in B):
   deterministic, blind to every outcome, balanced to one seed, and the same for both arms
   and every level (:func:`seed_folds`).
2. Selection. For each arm, base condition and fold, the best level is the one with the best
   mean ``select_by`` over that fold's seeds (in the analysis population: under intention to
   treat, trials without metrics count at the declared ``failed_score``, so a learning rate
   at which an arm diverges is not chosen for it; ties go to the lowest level).
3. Evaluation. The pairs of fold B (the same seed in both arms) are evaluated at the levels
   selected on fold A, and the pairs of fold A at the levels selected on fold B. The pairs
   of both folds together are then analysed like the fixed-setting comparison; their rows
   carry ``estimand == "tuned"``.

Why. Selecting on the validation split already keeps a trial's *test* noise out of its
selection, but not its *seed*: a trial that happens to go well (its initialisation, data
order and subset) goes well on validation and test alike, and selecting the level whose
seeds did best on validation flatters that level on test (winner's curse). The bias grows
with an arm's seed-to-seed spread, so it does not cancel in the difference when the arms
differ in spread: with seed SDs of 1.5 and 0.5 pp, identical means, four levels and 20
seeds, the same-seed selection is biased by +0.11 pp toward the noisier arm (as theory
predicts), the cross-fitted one by -0.007 +- 0.006 pp (Monte Carlo SE), i.e. not at all
(``benchmarks/tuned_bias.txt``). The price: each choice rests on half the seeds, so the
estimate varies more from study to study (SD 0.10 against 0.07 pp there; RMSE 0.10 against
0.13), and the estimand is "each arm at a level chosen on half the seeds". The same-seed
selection stays available as :func:`same_seed_selection` for that comparison only; it is
not the estimand.

The selections are in ``selected_levels`` (:data:`SELECTION_COLUMNS`): one row per
population x arm x base condition x fold, saying on which fold's seeds the level was chosen
(``fold``), whose pairs it was applied to (``evaluated_on``), the margin to the next-best
level, and ``at_edge`` (below).

Grid edges. A level chosen at the lowest or highest level tried may not be the arm's best:
the best may lie outside the grid. ``at_edge`` says so for each selection, per numeric tuning
factor: ``"low"`` (the lowest level tried for that arm, base condition and fold: the levels
with trials in the table, whether or not they brought a value), ``"high"`` (the highest) or
``""`` (inside the grid; a grid of one level, which has no edge to tell from, as
``spec.design.TuneDesign.open_edge`` has it; a non-numeric factor, whose levels have no
order). With several tuning factors each edge is named, e.g. ``"lr low, weight_decay
high"``. The column records the grid's edges whatever the protocol declares;
:func:`tuning_edges` says per metric x variant x base condition whether the tuned comparison
rests on such a selection of either arm, not counting an edge at a declared bound (a level at
or beyond the bound that anyone would use, e.g. lr 1.0 as the largest; ``Design.tune_settings``
or a mapping); the analysis reads a verdict resting on one as :data:`EDGE_VERDICT`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import Design
from bnstudy.stats.imputation import ITT, Scored, score_trials
from bnstudy.stats.inference import EDGE_VERDICT as EDGE_VERDICT  # re-exported
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
#: the pairing block, which includes it, cannot), and splitting its seeds into folds.
SEED_COLUMN = "seed"
#: The folds of a base condition's seeds (cross-fitting), and the fold label of a selection
#: on every seed (:func:`same_seed_selection`).
FOLDS = ("A", "B")
ALL_SEEDS = "all"
#: How the levels were selected (``Selection.scheme``).
CROSS_FIT = "cross-fitted"
SAME_SEEDS = "same seeds"
SELECTION_COLUMNS = [
    "population",
    "arm",
    "condition",
    "fold",
    "evaluated_on",
    "selected",
    "select_by",
    "value",
    "next_best",
    "next_best_value",
    "n_levels",
    "n_trials",
    "at_edge",
]


@dataclasses.dataclass(frozen=True)
class Selection:
    """The level chosen per arm x base condition x fold, for one population.

    ``table`` has :data:`SELECTION_COLUMNS` plus one column per base-condition factor that
    varies in the results table and one per tuning factor (the selected level); ``notes``
    are diagnostics; ``scheme`` is :data:`CROSS_FIT` (the estimand) or :data:`SAME_SEEDS`.
    """

    table: pd.DataFrame
    base_columns: list[str]
    tuning_columns: list[str]
    notes: tuple[str, ...] = ()
    scheme: str = CROSS_FIT

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


def seed_folds(table: pd.DataFrame, base_columns: Sequence[str]) -> np.ndarray:
    """Each row's fold: within its base condition (the rows sharing ``base_columns``), the
    distinct seeds in ascending order alternate A, B, A, ... ("" for a row without a seed).

    Depends on the seeds present only, never on an outcome, and is the same for every arm
    and level, so both arms of a pair (one seed) are always in the same fold."""
    seeds = table[SEED_COLUMN]
    if base_columns:
        rank = seeds.groupby([table[c] for c in base_columns], sort=False, dropna=False).rank(
            method="dense"
        )
    else:
        rank = seeds.rank(method="dense")
    rank = rank.to_numpy(dtype=float)
    odd = np.mod(rank, 2) == 1
    return np.where(np.isnan(rank), "", np.where(odd, FOLDS[0], FOLDS[1])).astype(object)


def select_levels(table: pd.DataFrame, design: Design, population: str = ITT) -> Selection:
    """Each arm's best level of ``design.tuning`` on ``design.select_by``, per base condition
    and fold of its seeds (cross-fitting; see the module docstring)."""
    return _select(table, design, population, CROSS_FIT)


def same_seed_selection(table: pd.DataFrame, design: Design, population: str = ITT) -> Selection:
    """The old, optimistic selection: each arm's best level per base condition on *all* its
    seeds, evaluated on those same seeds (``fold == evaluated_on == "all"``).

    Not the tuned estimand (it is biased toward the arm with the larger seed-to-seed spread);
    kept to measure that bias (``benchmarks/tuned_bias.py``). :func:`tuned_differences`
    accepts its result."""
    return _select(table, design, population, SAME_SEEDS)


def _select(table: pd.DataFrame, design: Design, population: str, scheme: str) -> Selection:
    tune = [c for c in design.tuning if c in table.columns]
    # Factors constant over the table add nothing to a condition: left out of the table.
    base = varying_columns(
        table, [c for c in condition_columns(design, table) if c not in design.tuning]
    )
    empty = Selection(
        pd.DataFrame(columns=[*SELECTION_COLUMNS, *base, *tune]), base, tune, scheme=scheme
    )
    select_by = design.select_by
    if why := _cannot_select(table, design):
        return dataclasses.replace(empty, notes=(why,))
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
    folds = (
        seed_folds(table, base)
        if scheme == CROSS_FIT
        else np.full(len(table), ALL_SEEDS, dtype=object)
    )
    frame = table[[*keys, *tune]].assign(
        _fold=folds, _v=scored.values, _finite=np.isfinite(scored.values)
    )
    frame = frame[frame["_fold"] != ""]
    means = (
        frame.groupby([*keys, "_fold", *tune], sort=True, dropna=False)
        .agg(value=("_v", "mean"), n_trials=("_v", "size"), n_finite=("_finite", "sum"))
        .reset_index()
    )
    sign = 1.0 if direction == "higher" else -1.0
    # Best first; a level with no value at all can never be chosen; ties go to the lowest.
    means["_rank"] = np.where(np.isfinite(means["value"]), -sign * means["value"], np.inf)
    numeric = [c for c in tune if _is_numeric(table[c])]
    groups = means.groupby([*keys, "_fold"], sort=False, dropna=False)
    rows = [_choice(key, group, keys, tune, numeric, design, population) for key, group in groups]
    out = pd.DataFrame([row for row in rows if row is not None])
    if out.empty:
        return dataclasses.replace(empty, notes=scored.notes)
    out["condition"] = condition_labels(out, base).to_numpy() if base else "all"
    out = out[[*SELECTION_COLUMNS, *base, *tune]]
    notes = scored.notes
    if scheme == CROSS_FIT:
        notes += _fold_notes(out)
    return Selection(out.reset_index(drop=True), base, tune, notes, scheme)


def _cannot_select(table: pd.DataFrame, design: Design) -> str:
    """Why ``table`` allows no tuned comparison ("" when it does)."""
    missing = [c for c in design.tuning if c not in table.columns]
    if missing:
        return f"tuning factor(s) {missing} not in the table"
    if not design.select_by or design.select_by not in table.columns:
        return f"selection metric {design.select_by!r} not in the table: no tuned comparison"
    if SEED_COLUMN not in table.columns:
        return (
            f"the tuned comparison pairs arms by {SEED_COLUMN!r} and cross-fits over its "
            "values: no such column, no tuned comparison"
        )
    return ""


def _choice(
    key: tuple,
    group: pd.DataFrame,
    keys: Sequence[str],
    tune: Sequence[str],
    numeric: Sequence[str],
    design: Design,
    population: str,
) -> dict[str, Any] | None:
    """The selected_levels row of one arm x condition x fold (``group``: its levels' mean
    selection metric, ranked by ``_rank``); None when no level has a value."""
    ranked = group.sort_values("_rank", kind="stable")
    best = ranked.iloc[0]
    if not np.isfinite(best["_rank"]):
        return None
    nxt = ranked.iloc[1] if len(ranked) > 1 else None
    *values, fold = key
    select_by = design.select_by
    row = dict(zip(keys, values, strict=True))
    row.update({c: best[c] for c in tune})
    row.update(
        arm=row[design.treatment],
        fold=fold,
        evaluated_on=_other(fold),
        selected=", ".join(f"{c}={best[c]}" for c in tune),
        select_by=select_by,
        value=float(best["value"]) * _scale(select_by),
        next_best=(", ".join(f"{c}={nxt[c]}" for c in tune) if nxt is not None else ""),
        next_best_value=(
            float(nxt["value"]) * _scale(select_by) if nxt is not None else float("nan")
        ),
        n_levels=int(np.isfinite(group["_rank"]).sum()),
        n_trials=int(best["n_trials"]),
        at_edge=_at_edge(best, group, numeric, len(tune)),
        population=population,
    )
    return row


def _other(fold: str) -> str:
    """The fold whose pairs a selection on ``fold`` is applied to."""
    if fold == ALL_SEEDS:
        return ALL_SEEDS
    return FOLDS[1] if fold == FOLDS[0] else FOLDS[0]


def _fold_notes(out: pd.DataFrame) -> tuple[str, ...]:
    """Base conditions and arms with a selection on one fold only: the pairs of the other
    fold have no level to be evaluated at (with one seed there is no second fold)."""
    folds = out.groupby(["arm", "condition"], sort=False)["fold"].nunique()
    one = folds[folds < len(FOLDS)]
    if one.empty:
        return ()
    where = ", ".join(f"{arm} in {cond}" for arm, cond in one.index[:5])
    more = f" and {len(one) - 5} more" if len(one) > 5 else ""
    return (
        f"cross-fitting: {len(one)} arm x condition selection(s) rest on one fold of seeds only "
        f"(fewer than 2 seeds, or no value in the other fold): {where}{more}; the pairs of the "
        "fold without a selection are left out of the tuned comparison",
    )


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _at_edge(best: pd.Series, tried: pd.DataFrame, numeric: Sequence[str], n_tune: int) -> str:
    """The edges of the grid tried (``tried``: one row per level) at which the selected level
    lies (module docstring)."""
    parts = []
    for c in numeric:
        level, levels = best[c], tried[c].dropna()
        if pd.isna(level) or levels.nunique() < 2:
            continue
        side = "low" if level == levels.min() else "high" if level == levels.max() else ""
        if side:
            parts.append(side if n_tune == 1 else f"{c} {side}")
    return ", ".join(parts)


def edge_sides(at_edge: str, tuning: Sequence[str]) -> list[tuple[str, str]]:
    """``at_edge`` read back as (factor, side) pairs, side "low" or "high"."""
    if not at_edge:
        return []
    pairs = [
        (tuning[0], part) if len(tuning) == 1 else part.rsplit(" ", 1)
        for part in at_edge.split(", ")
    ]
    return [(factor, side) for factor, side in pairs]


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
    """Paired differences of ``metric`` between the variant and the control, each at the
    level selected for it on the *other* fold of seeds (cross-fitting, see the module
    docstring; with :func:`same_seed_selection`, on the same seeds), by seed within each base
    condition. The pairs of both folds are returned together.

    ``scored``: the metric's values for every row of ``table`` (its population decides the
    pairs'). Raises ValueError when the table has no :data:`SEED_COLUMN`.
    """
    if SEED_COLUMN not in table.columns:
        raise ValueError(f"the tuned comparison pairs arms by {SEED_COLUMN!r}: no such column")
    sel = selection.table.rename(columns={"arm": design.treatment})
    keys = [design.treatment, *selection.base_columns, *selection.tuning_columns]
    chosen = sel[sel[design.treatment].isin([design.control, variant])]
    chosen = chosen[[*keys, "evaluated_on"]].rename(columns={"evaluated_on": "_fold"})
    chosen = chosen.assign(_chosen=True)
    folds = (
        seed_folds(table, selection.base_columns)
        if selection.scheme == CROSS_FIT
        else np.full(len(table), ALL_SEEDS, dtype=object)
    )
    marked = (
        table[keys].assign(_fold=folds).merge(chosen, on=[*keys, "_fold"], how="left", sort=False)
    )
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
