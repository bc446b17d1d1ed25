"""Figures of each arm on its own: metric levels, training curves, per-class detail.

Where the effect figures (:mod:`bnstudy.report.figures`) show differences, these show what
the differences are differences of. Every function takes already-aggregated numbers and
returns a matplotlib Figure; one legend per figure sits outside the axes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bnstudy.report.figures import (
    DODGE,
    dodge,
    legend_outside,
    log_axis,
    numeric_levels,
    plain_log_axis,
    plt,
    set_level_axis,
)


@dataclass(frozen=True)
class LevelPanel:
    """One panel of :func:`draw_levels`: a metric's level per arm against ``factor``'s levels.

    ``rows``: columns arm, ``factor`` (the x values), mean, ci_low, ci_high. ``factor`` None:
    the arms themselves along x (nothing varies).
    """

    factor: str | None
    rows: pd.DataFrame
    log_x: bool = False


def _legend(fig: Figure, arms: Sequence[str], colours: Mapping[str, str], title: str) -> None:
    handles = [Line2D([], [], color=colours.get(a, "C0"), marker="o", lw=1.5) for a in arms]
    legend_outside(fig, handles, list(arms), title=title)


def draw_levels(
    panels: Sequence[LevelPanel],
    ylabel: str,
    arms: Sequence[str],
    colours: Mapping[str, str],
    log_y: bool = False,
    title: str = "arm",
) -> Figure:
    """Each arm's mean with its CI against each panel's factor levels, panels side by side
    on a shared y axis; ``title``: what the arms are (the legend's title: ``optimizer``)."""
    return draw_level_grid([(ylabel, panels, log_y)], arms, colours, title)


def draw_level_grid(
    rows: Sequence[tuple[str, Sequence[LevelPanel], bool]],
    arms: Sequence[str],
    colours: Mapping[str, str],
    title: str = "arm",
) -> Figure:
    """Small multiples of :func:`draw_levels`: one row per quantity (y label, its panels, log
    y), the same factors in the same columns; rows share their y axis, columns their x.
    ``title``: what the arms are (the legend's title)."""
    nrows, ncols = len(rows), max(len(panels) for _, panels, _ in rows)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(0.6 + 3.3 * ncols, 0.5 + 2.3 * nrows),
        sharey="row",
        sharex="col",
        squeeze=False,
    )
    shown = [
        a for a in arms if any((p.rows["arm"] == a).any() for _, panels, _ in rows for p in panels)
    ]
    offsets = dict(zip(shown, np.linspace(-DODGE, DODGE, len(shown)) if len(shown) > 1 else [0.0],
                       strict=True))  # fmt: skip
    # Columns share their x axis, so ticks and categories come from every row of a column
    # (a row without values at one level must not drop that level's tick for the others).
    columns = [[panels[c] for _, panels, _ in rows if c < len(panels)] for c in range(ncols)]
    for r, (ylabel, panels, log_y) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.set_visible(False)
                continue
            _level_axes(ax, panels[c], shown, offsets, colours, columns[c])
            if log_y:
                ax.set_yscale("log")
            if r == nrows - 1:
                factor = panels[c].factor
                ax.set_xlabel(factor.replace("_", " ") if factor else title)
        if log_y:  # the row's range is known once every panel is drawn
            low, high = axes[r, 0].get_ylim()
            for ax in axes[r]:
                plain_log_axis(ax.yaxis, decades=float(np.log10(high / low)))
        axes[r, 0].set_ylabel(textwrap.fill(ylabel, 28))
    fig.subplots_adjust(wspace=0.12, hspace=0.25)
    # One label column at the left edge: each row's label placed by its own tick labels sat
    # at a different distance, the widest ("0.0005") pushing its label to the figure's edge.
    fig.align_ylabels(axes[:, 0])
    _legend(fig, shown, colours, title)
    return fig


def _level_axes(ax, panel: LevelPanel, shown, offsets, colours, column) -> None:
    """One panel; ``column``: every panel sharing its x axis (for the ticks)."""
    rows = panel.rows
    if panel.factor is None:  # nothing varies: the arms themselves along x
        for i, arm in enumerate(shown):
            part = rows[rows["arm"] == arm]
            _points(ax, np.full(len(part), float(i)), part, colours.get(arm), "o")
        ax.set_xticks(np.arange(len(shown)), shown)
        ax.set_xlim(-0.6, len(shown) - 0.4)
        return
    every = pd.concat([p.rows[panel.factor] for p in column], ignore_index=True)
    x_all = numeric_levels(every)
    log = x_all is not None and log_axis(x_all, panel.log_x)
    cats = list(dict.fromkeys(every.astype(str)))
    for arm in shown:
        part = rows[rows["arm"] == arm]
        x = numeric_levels(part[panel.factor])
        if x_all is not None and x is not None:
            order = np.argsort(x, kind="stable")
            part, x = part.iloc[order], x[order]
            _points(ax, dodge(x, offsets[arm], x_all, log), part, colours.get(arm), "-o")
        else:
            xs = np.array([cats.index(v) for v in part[panel.factor].astype(str)], float)
            _points(ax, xs + offsets[arm], part, colours.get(arm), "o")
    if x_all is not None:
        set_level_axis(ax, x_all, panel.log_x)
    else:
        ax.set_xticks(np.arange(len(cats)), cats)


def _points(ax, x: np.ndarray, rows: pd.DataFrame, colour: str | None, fmt: str) -> None:
    mean = rows["mean"].to_numpy(float)
    low = rows["ci_low"].to_numpy(float)
    high = rows["ci_high"].to_numpy(float)
    err = np.abs(np.vstack([mean - np.where(np.isfinite(low), low, mean),
                            np.where(np.isfinite(high), high, mean) - mean]))  # fmt: skip
    ax.errorbar(x, mean, yerr=err, fmt=fmt, ms=4, capsize=2.5, color=colour, lw=1.2)


@dataclass(frozen=True)
class CurvePanel:
    """Training curves of one condition (or group of conditions): per arm, the median and
    the quartiles over its trials at each logged point."""

    title: str
    median: Mapping[str, np.ndarray]
    q25: Mapping[str, np.ndarray]
    q75: Mapping[str, np.ndarray]
    n: Mapping[str, int]


class CurveRange(NamedTuple):
    """The y range of :func:`draw_curves` (bottom, top) and the lowest and highest value of
    any median or quartile; values beyond the range are clipped."""

    bottom: float
    top: float
    lowest: float
    highest: float

    @property
    def clipped(self) -> bool:
        return self.highest > self.top or self.lowest < self.bottom


def _finite(arrays) -> np.ndarray:
    values = np.concatenate([np.asarray(a, float).ravel() for a in arrays] or [np.zeros(0)])
    return values[np.isfinite(values)]


def curve_range(panels: Sequence[CurvePanel]) -> CurveRange:
    """Every median line, and the quartile bands as far as they stay within one
    median-range beyond the medians: a diverged trial's loss (hundreds, where the medians
    stay below 3) would otherwise set the axis and flatten every median line. From 0 when
    nothing is negative (losses)."""
    medians = _finite([m for p in panels for m in p.median.values()])
    bands = _finite([q[arm] for p in panels for q in (p.q25, p.q75) for arm in p.median])
    if not len(medians):
        return CurveRange(0.0, 1.0, 0.0, 0.0)
    lo, hi = float(medians.min()), float(medians.max())
    reach = max(hi - lo, abs(hi), abs(lo)) or 1.0
    inside = bands[(bands >= lo - reach) & (bands <= hi + reach)]
    low, high = min(lo, inside.min(initial=lo)), max(hi, inside.max(initial=hi))
    pad = 0.05 * ((high - low) or reach)
    bottom = 0.0 if low >= 0 else low - pad
    lowest, highest = float(bands.min(initial=lo)), float(bands.max(initial=hi))
    return CurveRange(bottom, high + pad, lowest, highest)


def draw_curves(
    panels: Sequence[CurvePanel],
    arms: Sequence[str],
    colours: Mapping[str, str],
    ylabel: str = "training loss",
    ncols: int = 4,
    title: str = "arm",
) -> Figure:
    """Median line and interquartile band per arm, one panel per condition, shared axes; a
    panel whose band leaves the shared range (:func:`curve_range`) says how far it goes.
    ``title``: what the arms are (the legend's title)."""
    k = len(panels)
    ncols = max(1, min(ncols, k))
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(0.6 + 2.6 * ncols, 0.4 + 2.0 * nrows), sharey=True, squeeze=False
    )
    span = curve_range(panels)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_visible(False)
            continue
        panel = panels[i]
        for arm in arms:
            if arm not in panel.median:
                continue
            med = panel.median[arm]
            x = np.arange(1, len(med) + 1)
            colour = colours.get(arm)
            ax.fill_between(x, panel.q25[arm], panel.q75[arm], color=colour, alpha=0.2, lw=0)
            ax.plot(x, med, color=colour, lw=1.3)
        own = curve_range([panel])
        if own.highest > span.top or own.lowest < span.bottom:
            beyond = own.highest if own.highest > span.top else own.lowest
            ax.text(0.98, 0.96, f"clipped: band reaches {beyond:.3g}", transform=ax.transAxes,
                    ha="right", va="top", fontsize=6.5, color="0.3")  # fmt: skip
        ax.set_title(textwrap.fill(panel.title, 34), fontsize=7, loc="left")
        if i % ncols == 0:
            ax.set_ylabel(ylabel + (" (axis clipped)" if span.clipped else ""))
        if i >= k - ncols:
            ax.set_xlabel("logged point", fontsize=8)
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # points are counted
    axes.flat[0].set_ylim(span.bottom, span.top)
    fig.subplots_adjust(wspace=0.1, hspace=0.6)
    _legend(fig, [a for a in arms if any(a in p.median for p in panels)], colours, title)
    return fig


def draw_per_class(
    rows: pd.DataFrame,
    ylabel: str,
    arms: Sequence[str],
    colours: Mapping[str, str],
    title: str = "arm",
) -> Figure:
    """A per-class quantity against the class's training count, one line per arm.

    ``rows``: columns arm, count (the x: training images of the class, bin centre), mean,
    q25, q75 (over the classes of all trials in the bin). ``title``: what the arms are.
    """
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    shown = [a for a in arms if (rows["arm"] == a).any()]
    for arm in shown:
        part = rows[rows["arm"] == arm].sort_values("count")
        colour = colours.get(arm)
        x = part["count"].to_numpy(float)
        ax.fill_between(x, part["q25"].to_numpy(float), part["q75"].to_numpy(float),
                        color=colour, alpha=0.15, lw=0)  # fmt: skip
        ax.plot(x, part["mean"].to_numpy(float), "-o", ms=3, color=colour, lw=1.3)
    counts = rows["count"].to_numpy(float)
    if len(counts) and counts.min() > 0 and counts.max() / counts.min() > 4:
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
    ax.set_xlabel("training images of the class")
    ax.set_ylabel(ylabel)
    _legend(fig, shown, colours, title)
    return fig
