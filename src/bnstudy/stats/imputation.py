"""Which value each trial brings to an analysis: intention to treat, or ok trials only.

Intention to treat (the primary analysis): a head that makes the network collapse or diverge
*is* the effect, so no trial leaves the comparison for how it ended.

- Trials with measured metrics (:data:`~bnstudy.catalogue.MEASURED_STATUSES`: ok and
  collapsed) count with their values.
- Trials without metrics (diverged, failed, and any other status such as a timeout) get the
  protocol's ``failed_score``: ``"chance"`` is a uniform random guesser's score,
  ``METRICS[metric].chance(C)`` with C the number of classes (the length of the row's
  ``class_counts``; from the condition's other rows, else from any row, when that list is
  empty); ``"worst"`` is the worst value measured in the same condition (any arm). Where a
  metric has no chance level or C is unknown, the worst value stands in and a note says so.
  A trial in a condition without any measured value of the metric gets no value (its block
  drops out), as does one in a condition where the metric is undefined for every measured
  trial (e.g. minority recall on balanced data). A pairing block whose arms both lack metrics
  is left out of the comparison by :func:`~bnstudy.stats.paired.paired_differences`.

In both populations a value above the metric's ceiling (``MetricInfo.ceiling``: nll's is
15.9 nats, see :data:`~bnstudy.catalogue.NLL_CEILING`) counts at the ceiling, with a note,
so that one runaway trial cannot decide a mean.

"ok only" (the sensitivity analysis, and the behaviour before intention to treat): only
trials with status ok and a finite value count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bnstudy.catalogue import MEASURED_STATUSES, METRICS, OK

ITT = "intention-to-treat"
OK_ONLY = "ok only"
#: The analysis populations, primary first.
POPULATIONS = (ITT, OK_ONLY)

#: ``Scored.rule`` of a trial without metrics that could not be given a value.
NOT_IMPUTABLE = "not imputable"


@dataclasses.dataclass(frozen=True)
class Scored:
    """One metric's value per table row for one population, in stored units.

    ``values`` (n,) is NaN where a row brings no value; ``imputed`` (n,) marks values that
    were declared, not measured; ``rule`` (n,) says for each row without metrics which rule
    gave its value ("chance", "worst" or :data:`NOT_IMPUTABLE`; "" for every other row);
    ``notes`` are messages for the analysis diagnostics.
    """

    population: str
    values: np.ndarray
    imputed: np.ndarray
    rule: np.ndarray
    notes: tuple[str, ...] = ()


def score_trials(
    table: pd.DataFrame,
    metric: str,
    condition_columns: Sequence[str],
    population: str = ITT,
    failed_score: str = "chance",
    direction: str | None = None,
) -> Scored:
    """Each row's value of ``metric`` for ``population`` (see the module docstring).

    ``condition_columns``: the columns whose values define a condition (every factor but the
    treatment); ``direction``: "higher" or "lower" is better (default: the catalogue's), used
    to find the worst value.
    """
    if population not in POPULATIONS:
        raise ValueError(f"unknown population {population!r}; allowed: {', '.join(POPULATIONS)}")
    if failed_score not in ("chance", "worst"):
        raise ValueError(f"unknown failed_score {failed_score!r}; allowed: chance, worst")
    n = len(table)
    raw, notes = _at_most_ceiling(
        metric, pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
    )
    status = table["status"].astype(str).to_numpy()
    finite = np.isfinite(raw)
    rule = np.full(n, "", dtype=object)
    if population == OK_ONLY:
        keep = (status == OK) & finite
        return Scored(
            population, np.where(keep, raw, np.nan), np.zeros(n, bool), rule, tuple(notes)
        )

    if metric in METRICS and not METRICS[metric].imputed:
        # Defined for every trial (``failure``): a failed trial's value *is* its outcome.
        return Scored(
            population, np.where(finite, raw, np.nan), np.zeros(n, bool), rule, tuple(notes)
        )
    measured = np.isin(status, MEASURED_STATUSES)
    values = np.where(measured & finite, raw, np.nan)
    need = ~measured
    if not need.any():
        return Scored(population, values, np.zeros(n, bool), rule, tuple(notes))

    info = METRICS[metric]
    direction = direction or info.direction
    cols = [c for c in condition_columns if c in table.columns]
    cond = (
        table.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
        if cols
        else np.zeros(n, int)
    )
    has_value = pd.Series(measured & finite).groupby(cond).transform("any").to_numpy()
    has_measured = pd.Series(measured).groupby(cond).transform("any").to_numpy()
    # Measured trials exist but none has a value: the metric is undefined in this condition.
    defined = has_value | ~has_measured

    use_worst = need & defined
    if failed_score == "chance":
        use_worst = _score_at_chance(table, metric, cond, use_worst, values, rule, notes)
    if use_worst.any():
        worst = _worst_by_condition(values, measured & finite, cond, direction)
        values[use_worst] = worst[use_worst]
        rule[use_worst] = "worst"
    imputed = need & np.isfinite(values)
    rule[need & ~imputed] = NOT_IMPUTABLE
    lost = need & ~imputed & defined
    if lost.any():
        notes.append(
            f"{int(lost.sum())} trial(s) without metrics are in a condition with no measured "
            f"{metric}: no score can be imputed and their blocks drop out"
        )
    return Scored(population, values, imputed, rule, tuple(notes))


def _at_most_ceiling(metric: str, raw: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``raw`` with every value above the metric's ceiling (``MetricInfo.ceiling``) brought
    down to it, and a note saying how many were (an empty list where none was)."""
    info = METRICS.get(metric)
    if info is None or info.ceiling is None:
        return raw, []
    above = np.isfinite(raw) & (raw > info.ceiling)
    if not above.any():
        return raw, []
    note = (
        f"{int(above.sum())} trial(s) measured {metric} above {info.ceiling:.4g} {info.unit} "
        f"(up to {np.max(raw[above]):.3g}) and count at {info.ceiling:.4g}, the metric's "
        "ceiling"
    ).replace("  ", " ")
    return np.where(above, info.ceiling, raw), [note]


def _score_at_chance(
    table: pd.DataFrame,
    metric: str,
    cond: np.ndarray,
    want: np.ndarray,
    values: np.ndarray,
    rule: np.ndarray,
    notes: list[str],
) -> np.ndarray:
    """Give the rows ``want`` the metric's chance score where their number of classes is
    known (``values`` and ``rule`` filled in place); the rows still left for the worst score."""
    chance = METRICS[metric].chance
    if chance is None:
        notes.append(
            f"failed_score 'chance': {metric} has no chance level; trials without metrics "
            "take the worst value measured in their condition instead"
        )
        return want
    classes = num_classes(table, cond)
    known = want & (classes > 0)
    values[known] = [chance(int(c)) for c in classes[known]]
    rule[known] = "chance"
    left = want & ~known
    if left.any():
        notes.append(
            f"failed_score 'chance': the number of classes of {int(left.sum())} "
            f"trial(s) without metrics is unknown (no class_counts in the table); they "
            f"take the worst {metric} measured in their condition instead"
        )
    return left


def num_classes(table: pd.DataFrame, cond: np.ndarray) -> np.ndarray:
    """C per row: the row's class_counts length, else its condition's, else the table's most
    common one; 0 where unknown."""
    if "class_counts" not in table.columns:
        return np.zeros(len(table), int)
    own = np.array(
        [len(x) if isinstance(x, list | tuple | np.ndarray) else 0 for x in table["class_counts"]],
        dtype=int,
    )
    known = pd.Series(np.where(own > 0, own, np.nan))
    if not known.notna().any():
        return own
    by_condition = known.groupby(cond).transform(_mode).to_numpy()
    overall = _mode(known)
    out = np.where(own > 0, own, np.where(np.isfinite(by_condition), by_condition, overall))
    return out.astype(int)


def _mode(values: pd.Series) -> float:
    counts = values.dropna().value_counts()
    return float(counts.index[0]) if len(counts) else np.nan


def _worst_by_condition(
    values: np.ndarray, valid: np.ndarray, cond: np.ndarray, direction: str
) -> np.ndarray:
    """Per row, the worst valid value of its condition (NaN where the condition has none)."""
    series = pd.Series(np.where(valid, values, np.nan))
    grouped = series.groupby(cond)
    worst = grouped.transform("min" if direction == "higher" else "max")
    return worst.to_numpy(dtype=float)
