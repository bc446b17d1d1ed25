"""How each arm did: the arms' own levels of every primary metric (sentences, a table per
metric by condition, a figure per metric against the factors that vary), read from the
Analysis' ``arm_levels`` (:meth:`bnstudy.stats.Analysis.levels_by`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd

from bnstudy.report import figures, figures_arms, text, views
from bnstudy.report.items import FigureList, TableItem
from bnstudy.report.roles import Roles
from bnstudy.stats import Analysis
from bnstudy.stats.levels import level_unit

#: At most this many factors get a panel in the level figures.
MAX_LEVEL_PANELS = 4


@dataclasses.dataclass(frozen=True)
class LevelsSection:
    """The levels section's sentences (one per metric), which values the levels are of, and
    a table per metric of each arm's level per condition."""

    sentences: list[str] = dataclasses.field(default_factory=list)
    values: str = ""
    tables: list[TableItem] = dataclasses.field(default_factory=list)


def level_factors(roles: Roles) -> list[str]:
    """The factors the arms' levels are drawn against: the varying moderators, then any
    other varying condition (a width or a batch size the analysis does not moderate by)."""
    ordered = [f for f in roles.moderators if f in roles.varying]
    ordered += [f for f in roles.varying if f not in ordered]
    return ordered[:MAX_LEVEL_PANELS]


def _log_axis(roles: Roles, rows: pd.DataFrame, factor: str) -> bool:
    """The declared scale for a moderator; for another factor, log when its levels are
    positive numbers spanning 16x or more (batch sizes 16 to 256, widths 64 to 1024)."""
    if factor in roles.moderators:
        return roles.log_scale(factor)
    levels = figures.numeric_levels(pd.Series(pd.unique(rows[factor])))
    return bool(levels is not None and levels.min() > 0 and levels.max() / levels.min() >= 16)


def level_panels(
    summarize: Callable[[tuple[str, ...]], pd.DataFrame], roles: Roles
) -> dict[str, list[figures_arms.LevelPanel]]:
    """Per metric, one panel per :func:`level_factors` factor (the others averaged over), or
    one of the arms alone when nothing varies. ``summarize(by)``: the levels grouped by
    ``by`` (:func:`~bnstudy.stats.levels.summarize_levels`' columns), every metric at once."""
    out: dict[str, list[figures_arms.LevelPanel]] = {}
    for factor in level_factors(roles) or [None]:
        rows = summarize((factor,) if factor else ())
        if rows.empty:
            continue
        log_x = _log_axis(roles, rows, factor) if factor else False
        for metric, part in rows.groupby("metric", sort=False):
            out.setdefault(metric, []).append(
                figures_arms.LevelPanel(factor, part.reset_index(drop=True), log_x)
            )
    return out


def levels_section(
    b: FigureList, analysis: Analysis, table: pd.DataFrame, roles: Roles, missing
) -> LevelsSection:
    """Each arm's level per condition (tables), per factor level (figures) and overall."""
    if table.empty:
        missing.setdefault("levels", []).append("No trials in the table, so no levels.")
        return LevelsSection()
    overall = analysis.levels_by(())
    if overall.empty:
        missing.setdefault("levels", []).append(
            "No arm has a value of any primary metric, so no levels."
        )
        return LevelsSection()
    per_condition = analysis.levels_by(roles.varying)
    section = LevelsSection(values=", ".join(pd.unique(overall["values"])))
    for metric in roles.metrics:
        sentence = text.levels_sentence(overall, metric, roles.arms)
        if sentence:
            section.sentences.append(sentence)
        rows = per_condition[per_condition["metric"] == metric]
        if rows.empty:
            continue
        unit = level_unit(metric)
        title = f"{metric}" + (f" ({unit})" if unit else "")
        section.tables.append(TableItem(title, views.levels_wide(rows, roles.varying, roles.arms)))
    _level_figures(b, level_panels(analysis.levels_by, roles), roles, section.values)
    return section


def _level_figures(b: FigureList, by_metric: dict, roles: Roles, values: str) -> None:
    pooled = " Each panel averages over the other factors." if len(roles.varying) > 1 else ""
    for metric in roles.metrics:
        panels = by_metric.get(metric, [])
        if not panels:
            continue
        unit = level_unit(metric)
        caption = (
            f"{metric}: each arm's mean with its {100 * roles.confidence:g}% CI over trials "
            f"({values} values)." + (pooled if panels[0].factor else "")
        )
        b.add(
            "levels",
            f"levels-{metric}",
            f"{metric} by arm",
            caption,
            lambda panels=panels, ylabel=f"{metric} ({unit})" if unit else metric: (
                figures_arms.draw_levels(
                    panels, ylabel, roles.arms, b.colours, title=roles.treatment_name
                )
            ),
            wide=len(panels) > 1,
        )
