"""Training and mechanisms: training curves, per-class values against the class's count, and
the recorded mechanism columns (dead units, the train/eval gap, ...) per arm.

These columns are recorded beside the metrics but are no part of the analysis, so their
levels are summarised here (:mod:`bnstudy.stats.levels`, measured values), in the factors'
groupings the levels section uses (:func:`bnstudy.report.levels.level_panels`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.report import detail, figures_arms, views
from bnstudy.report.items import FigureList
from bnstudy.report.levels import level_factors, level_panels
from bnstudy.report.roles import Roles
from bnstudy.stats.levels import summarize_levels, trial_values

#: Recorded columns shown as mechanisms: (what it is, display scale, unit, log axis).
MECHANISMS: dict[str, tuple[str, float, str, bool]] = {
    "head_dead_frac": ("dead units at the FC input (the head's hidden ReLU layer)", 100, "%",
                       False),
    "head_inactive_frac": ("inactive units per input at the FC input (head's hidden layer)", 100,
                           "%", False),
    "feature_dead_frac": ("dead units among the body's features (the FC input of heads without "
                          "a hidden layer)", 100, "%", False),
    "feature_inactive_frac": ("inactive body features per input", 100, "%", False),
    "train_eval_gap": ("train/eval gap: accuracy with batch statistics minus eval mode", 100,
                       "pp", False),
    "balanced_acc_precise": ("balanced accuracy with PreciseBN statistics", 1, "%", False),
    "fc_weight_norm_rank_corr": ("rank correlation of the per-class FC weight norm with the "
                                 "training class counts", 1, "", False),
    "fold_max_abs_diff": ("largest logit change from folding the BN into the final FC", 1, "",
                          True),
}  # fmt: skip
#: Per-class list columns drawn against the class's training count:
#: (short name, axis label, display scale, divide by the trial's mean).
PER_CLASS: dict[str, tuple[str, str, float, bool]] = {
    "class_recall": ("recall", "test recall of the class (%)", 100.0, False),
    "class_fc_weight_norm": (
        "FC weight norm",
        "FC weight norm ÷ the trial's mean norm",
        1.0,
        True,
    ),
}
#: Mechanism metrics drawn together: figure id -> (title, metrics, one row each).
MECHANISM_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "units": (
        "Dead and inactive units at the FC input",
        ("head_dead_frac", "head_inactive_frac", "feature_dead_frac", "feature_inactive_frac"),
    ),
    "batch-statistics": (
        "Batch statistics and the classifier",
        ("train_eval_gap", "balanced_acc_precise", "fold_max_abs_diff", "fc_weight_norm_rank_corr"),
    ),
}
CURVE_PREFIX = "curve_"


def mechanisms_section(b: FigureList, table: pd.DataFrame, roles: Roles, missing) -> pd.DataFrame:
    """Training curves, per-class figures and mechanism metrics; returns the summary table."""
    notes = missing.setdefault("mechanisms", [])
    if table.empty:
        notes.append("No trials in the table.")
        return pd.DataFrame()
    _curves(b, table, roles, notes)
    _per_class(b, table, roles, notes)
    return _mechanism_levels(b, table, roles, notes)


def _curves(b: FigureList, table: pd.DataFrame, roles: Roles, notes: list[str]) -> None:
    """A figure per ``curve_*`` column: each arm's median curve, a panel per condition."""
    drawn = False
    for column in [c for c in table.columns if c.startswith(CURVE_PREFIX)]:
        if not detail.has_lists(table, column):
            continue
        panels, pooled = detail.curve_panels(
            table, column, roles.treatment, roles.arms, list(roles.varying)
        )
        if not panels:
            continue
        drawn = True
        what = column[len(CURVE_PREFIX) :].replace("_", " ")
        pooled_words = f" Pooled over {', '.join(pooled)}." if pooled else ""
        caption = (
            f"{what.capitalize()} during training: median (line) and interquartile range (band) "
            f"over each arm's trials, one panel per condition.{pooled_words} Points are logged "
            "once per epoch (every fixed number of steps when the training length is in steps)."
            + _clipped(figures_arms.curve_range(panels))
        )
        b.add(
            "mechanisms",
            column,
            f"{what} curves",
            caption,
            lambda panels=panels, what=what: figures_arms.draw_curves(
                panels, roles.arms, b.colours, ylabel=what, title=roles.treatment_name
            ),
            wide=len(panels) > 1,
        )
    if not drawn:
        notes.append(
            "No training curves: the table has no non-empty curve_train_loss (or other curve_*) "
            "column."
        )


def _clipped(span) -> str:
    """One diverged trial must not set the axis for every median line: say what is cut."""
    clipped = ""
    if span.highest > span.top:
        clipped += (
            f" The y axis stops at {span.top:.3g} so that the median lines stay readable: "
            f"some interquartile bands reach {span.highest:.3g} (trials that diverged); "
            "each panel they leave says how far."
        )
    if span.lowest < span.bottom:
        clipped += f" Some bands go down to {span.lowest:.3g}, below the axis."
    return clipped


def _per_class(b: FigureList, table: pd.DataFrame, roles: Roles, notes: list[str]) -> None:
    """A figure per :data:`PER_CLASS` column: the per-class value against the class's count."""
    balanced: list[str] = []
    count = 0.0
    for column, (short, what, scale, relative) in PER_CLASS.items():
        rows = detail.per_class_rows(table, column, roles.treatment, relative=relative, scale=scale)
        if rows.empty:
            why = (
                "the table has no class_counts column"
                if "class_counts" not in table.columns
                else f"no trial has a non-empty {column} list as long as its class_counts"
            )
            notes.append(f"No figure of {short} per class against the class's count: {why}.")
            continue
        if rows["count"].nunique() == 1:  # balanced data: one point per arm, nothing to read
            balanced.append(short)
            count = float(rows["count"].iloc[0])
            continue
        caption = (
            f"{what[0].upper() + what[1:]} against the number of training images of that class, "
            "pooled over every measured trial of each arm: mean (line) and interquartile range "
            "(band) over the classes in each count bin."
            + (
                " Each trial's norms are divided by their mean, so networks of different scale "
                "pool."
                if relative
                else ""
            )
        )
        b.add(
            "mechanisms",
            f"per-class-{column}",
            f"{short} per class against class count",
            caption,
            lambda rows=rows, what=what: figures_arms.draw_per_class(
                rows, what, roles.arms, b.colours, roles.treatment_name
            ),
        )
    if balanced:
        notes.append(
            f"No figure of {' or '.join(balanced)} per class against the class's count: every "
            f"class of every measured trial had {count:g} training images (balanced data), so "
            "there is no count to draw it against."
        )


def _mechanism_levels(
    b: FigureList, table: pd.DataFrame, roles: Roles, notes: list[str]
) -> pd.DataFrame:
    """The :data:`MECHANISMS` columns recorded: each arm's mean over every trial (the
    returned table) and a figure per :data:`MECHANISM_GROUPS` group against the factors."""
    present = [m for m in MECHANISMS if m in table.columns and _any_finite(table[m])]
    absent = [m for m in MECHANISMS if m not in present]
    if absent:
        notes.append("Not recorded (or undefined for every trial): " + ", ".join(absent) + ".")
    if not present:
        return pd.DataFrame()
    values = _display(_values(table, roles, present))

    def summarize(by: tuple[str, ...]) -> pd.DataFrame:
        return summarize_levels(values, by, arms=roles.arms, confidence=roles.confidence)

    summary = views.levels_wide(summarize(()), ["metric"], roles.arms)
    summary.insert(1, "unit", [MECHANISMS[m][2] for m in summary["metric"]])
    summary["what"] = [MECHANISMS[m][0] for m in summary["metric"]]
    by_metric = level_panels(summarize, roles)
    for key, (title, members) in MECHANISM_GROUPS.items():
        grid = []
        for metric in [m for m in members if m in present]:
            _, _, unit, log_y = MECHANISMS[metric]
            panels = by_metric.get(metric, [])
            if panels:
                grid.append((metric, f"{metric} ({unit})" if unit else metric, panels, log_y))
        if grid:
            _group_figure(b, key, title, grid, roles)
    return summary


def _group_figure(b: FigureList, key: str, title: str, grid: list, roles: Roles) -> None:
    """One figure of a mechanism group: a row per metric, a panel per factor."""
    factors = level_factors(roles)
    against = (
        f" against {', '.join(factors)} (each panel averages over the other factors)"
        if factors
        else ""
    )
    rows = "; ".join(
        f"{metric}: {MECHANISMS[metric][0]}"
        + (" (intention-to-treat values)" if _imputed(metric) else " (measured values)")
        for metric, *_ in grid
    )
    caption = (
        f"{title}: each arm's mean with its {100 * roles.confidence:g}% CI over trials"
        f"{against}. Rows: {rows}."
    )
    b.add(
        "mechanisms",
        key,
        title,
        caption,
        lambda grid=grid: figures_arms.draw_level_grid(
            [(ylabel, panels, log_y) for _, ylabel, panels, log_y in grid],
            roles.arms,
            b.colours,
            roles.treatment_name,
        ),
        wide=True,
    )


def _values(table: pd.DataFrame, roles: Roles, metrics) -> pd.DataFrame:
    """Every trial's value of ``metrics`` once; the levels are summaries of it."""
    return trial_values(
        table,
        metrics,
        treatment=roles.treatment,
        conditions=roles.conditions,
        keep=roles.varying,
        failed_score=roles.failed_score,
        directions=roles.directions,
    )


def _imputed(metric: str) -> bool:
    """Whether failed trials get a declared score for ``metric`` (a catalogue metric whose
    ``imputed`` is set); otherwise its levels are of measured values only."""
    return metric in METRICS and METRICS[metric].imputed


def _any_finite(values: pd.Series) -> bool:
    return bool(np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(float)).any())


def _display(values: pd.DataFrame) -> pd.DataFrame:
    """Mechanism trial values in display units (fractions as %), with their display unit."""
    if values.empty:
        return values
    scale = values["metric"].map(lambda m: MECHANISMS[m][1] if m not in METRICS else 1.0)
    return values.assign(
        value=values["value"] * scale, unit=values["metric"].map(lambda m: MECHANISMS[m][2])
    )
