"""Figures of the effects (variant − control): by moderator level, forest plots, equivalence.

Each ``draw_*`` returns a matplotlib Figure (the report turns it into inline SVG, the export
into SVG, PNG and PDF files); :func:`effect_by_level` and :func:`forest` return the SVG text
directly. Legends sit outside the axes or are replaced by direct labels, so they never
cover data. The per-arm figures (levels, curves, per-class detail) are in
:mod:`bnstudy.report.figures_arms`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

plt.rcParams.update(
    {
        "svg.hashsalt": "bnstudy",  # stable element ids: same data, same bytes
        "svg.fonttype": "none",  # text stays text: smaller, searchable
        "text.parse_math": False,  # names are plain text: a "$" must not start mathtext
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 9,
        "pdf.fonttype": 42,  # TrueType in PDFs: editable text
    }
)

_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
# The XML prolog, DOCTYPE and namespace declarations carry URLs; HTML5 inline SVG needs none.
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_ID = re.compile(r'(\sid=)"')
_REF = re.compile(r'((?:clip-path|fill|mask|filter)="url\(|href=")#')
#: Colours of the variants in order; the control is drawn in dark grey.
_PALETTE = ["#3b6fd8", "#d9622b", "#2e9e5b", "#a347b8", "#c4a000", "#1aa3a3", "#b4232a",
            "#6b7a8f", "#8c5a2b", "#e377c2"]  # fmt: skip
CONTROL_COLOUR = "#444444"


def to_svg(fig: Figure, id_prefix: str = "") -> str:
    """``fig`` as inline SVG text without prolog or namespaces; closes the figure.

    ``id_prefix`` goes before every element id and every reference to one: matplotlib numbers
    its ids per file ("axes_1", clip paths, markers), so two figures in one page would share
    ids (invalid HTML, and a clip path could resolve to another figure's).
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches=tight_box(fig), metadata=_NO_METADATA)
    plt.close(fig)
    svg = _NAMESPACES.sub("", _PROLOG.sub("", buffer.getvalue(), count=1))
    if id_prefix:
        svg = _ID.sub(rf'\1"{id_prefix}', svg)
        svg = _REF.sub(rf"\1#{id_prefix}", svg)
    return svg


def tight_box(fig: Figure, pad_inches: float = 0.1):
    """The box around everything drawn (legends outside the axes included), in inches.

    What ``bbox_inches="tight"`` computes, but measured with the Agg renderer's text
    extents: the SVG backend would draw the whole figure once more just to measure it, and
    that pass was 40% of the report's time.
    """
    return fig.get_tightbbox(fig.canvas.get_renderer()).padded(pad_inches)


def arm_colours(arms: Sequence[str], control: str | None = None) -> dict[str, str]:
    """A stable colour per arm: the control dark grey, the others from the palette in order."""
    out, i = {}, 0
    for arm in arms:
        if arm == control:
            out[arm] = CONTROL_COLOUR
        else:
            out[arm] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return out


def legend_outside(fig: Figure, handles: list, labels: list[str], title: str | None = None) -> None:
    """One legend to the right of every axes (``bbox_inches="tight"`` keeps it in the file)."""
    if handles:
        fig.legend(
            handles,
            labels,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=8,
            title=title,
            title_fontsize=8,
        )


def numeric_levels(levels: pd.Series) -> np.ndarray | None:
    """The levels as floats, or None when any is not a number."""
    try:
        return levels.astype(float).to_numpy()
    except (TypeError, ValueError):
        return None


def plain_log_axis(axis, decades: float | None = None) -> None:
    """A log axis labelled 1, 2, 5, 10 (or 2e-06): the default labels are mathtext, which
    this module turns off so that names with "$" stay text. ``decades``: the range shown,
    when known: over two decades, decades only (1-2-5 labels crowd into each other); under
    one, a few evenly spaced values (1-2-5 would label one tick or none)."""
    if decades is not None and decades < 1:
        axis.set_major_locator(MaxNLocator(4))
    else:
        subs = (1.0,) if decades is not None and decades > 2 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def log_axis(values: np.ndarray, log_x: bool) -> bool:
    """Whether levels ``values`` go on a log axis: asked for, and every level positive."""
    return bool(log_x and len(values) and np.all(values > 0))


def set_level_axis(ax, values: np.ndarray, log_x: bool) -> None:
    """Ticks at the numeric levels themselves, on a log axis for log-scale moderators."""
    levels = sorted(set(values.tolist()))
    if log_axis(values, log_x):
        ax.set_xscale("log")
    ax.set_xticks(levels, [f"{v:g}" for v in levels])
    ax.minorticks_off()


def dodge(x: np.ndarray, fraction: float, levels: np.ndarray, log: bool) -> np.ndarray:
    """``x`` moved sideways by ``fraction`` of the smallest gap between adjacent ``levels``,
    measured in the axis' own space (a factor on a log axis), so that series drawn side by
    side at one level stay nearer their own tick than any other: a fixed shift in data units
    put a point at lr 0.1 over the 0.03 tick."""
    distinct = np.unique(levels[np.isfinite(levels)])
    if log:
        gaps = np.diff(np.log10(distinct))
        return x * 10 ** (fraction * (gaps.min() if len(gaps) else 1.0))
    gaps = np.diff(distinct)
    # One level: no gap to measure, so a share of the level itself (or of 1 at 0).
    gap = gaps.min() if len(gaps) else (abs(distinct[0]) if len(distinct) and distinct[0] else 1.0)
    return x + fraction * gap


#: How far the series at one level spread, as a fraction of the smallest gap between levels
#: (categories are one apart): the outermost sit at ±this.
DODGE = 0.15


def _effect_axes(
    ax, rows: pd.DataFrame, log_x: bool, variants: Sequence[str], colours: Mapping[str, str]
) -> None:
    """One moderator's effects on ``ax``: per variant, estimates with CI bars at each level."""
    offsets = np.linspace(-DODGE, DODGE, len(variants)) if len(variants) > 1 else [0.0]
    numeric_all = numeric_levels(rows["level"])
    numeric = numeric_all is not None
    log = numeric and log_axis(numeric_all, log_x)
    categories = list(dict.fromkeys(rows["level"].astype(str)))
    for variant, offset in zip(variants, offsets, strict=True):
        part = rows[rows["variant"] == variant]
        if part.empty:
            continue
        if numeric:  # levels are strings: "10.0" sorts before "2.0"
            x = numeric_levels(part["level"])
            order = np.argsort(x, kind="stable")
            part, x = part.iloc[order], x[order]
            xpos = dodge(x, offset, numeric_all, log)
        else:
            xpos = np.array([categories.index(v) for v in part["level"].astype(str)]) + offset
        est = part["estimate"].to_numpy(float)
        err = np.vstack(
            [est - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - est]
        )
        # Lines join ordered (numeric) levels only; categories get markers alone.
        ax.errorbar(
            xpos,
            est,
            yerr=np.abs(err),
            fmt="-o" if numeric else "o",
            ms=4,
            capsize=3,
            label=variant,
            color=colours.get(variant),
        )
    if numeric:
        set_level_axis(ax, numeric_all, log_x)
    else:
        ax.set_xticks(np.arange(len(categories)), categories)
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")


def draw_effect_by_level(
    rows: pd.DataFrame,
    factor: str,
    unit: str,
    log_x: bool,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Effect (variant − control) with CI bars against a moderator's levels, one line per variant.

    ``rows``: estimates of one metric at scope ``factor`` (columns variant, level, estimate,
    ci_low, ci_high).
    """
    return draw_effect_panels([(factor, rows, log_x)], unit, colours)


def draw_effect_panels(
    panels: Sequence[tuple[str, pd.DataFrame, bool]],
    unit: str,
    colours: Mapping[str, str] | None = None,
    control: str = "control",
) -> Figure:
    """:func:`draw_effect_by_level` for several moderators of one metric, side by side on a
    shared effect axis; ``panels``: (factor, rows, log x); ``control``: the arm the effects
    are against, named on the axis ("effect vs sgd")."""
    k = len(panels)
    fig, axes = plt.subplots(1, k, figsize=(0.6 + 3.4 * k, 3.0), sharey=True, squeeze=False)
    variants = list(dict.fromkeys(v for _, rows, _ in panels for v in rows["variant"]))
    colours = colours or arm_colours(variants)
    for ax, (factor, rows, log_x) in zip(axes.flat, panels, strict=True):
        _effect_axes(ax, rows, log_x, variants, colours)
        ax.set_xlabel(factor.replace("_", " "))
    axes.flat[0].set_ylabel(f"effect vs {control} ({unit})" if unit else f"effect vs {control}")
    fig.subplots_adjust(wspace=0.12)
    handles = [
        Line2D([], [], color=colours.get(v, "C0"), marker="o", lw=1.5, label=v) for v in variants
    ]
    legend_outside(fig, handles, list(variants), title="variant")
    return fig


def effect_by_level(rows: pd.DataFrame, factor: str, unit: str, log_x: bool) -> str:
    """:func:`draw_effect_by_level` as inline SVG."""
    return to_svg(draw_effect_by_level(rows, factor, unit, log_x))


def draw_forest(
    rows: pd.DataFrame, labels: list[str], unit: str, overall: tuple[float, float, float]
) -> Figure:
    """Per-condition paired effects with CIs, and the overall estimate as a shaded band."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.2 * n))
    _forest_axes(ax, rows, overall, "C0")
    ax.set_yticks(np.arange(n)[::-1], labels, fontsize=7)
    ax.set_xlabel(f"paired effect ({unit})" if unit else "paired effect")
    return fig


def forest(
    rows: pd.DataFrame, labels: list[str], unit: str, overall: tuple[float, float, float]
) -> str:
    """:func:`draw_forest` as inline SVG."""
    return to_svg(draw_forest(rows, labels, unit, overall))


def _forest_axes(ax, rows: pd.DataFrame, overall, colour: str) -> None:
    y = np.arange(len(rows))[::-1]
    est = rows["estimate"].to_numpy(float)
    low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    err = np.abs(np.vstack([est - low, high - est]))
    ax.errorbar(est, y, xerr=err, fmt="s", ms=3, capsize=2, color=colour, lw=1)
    if overall is not None:
        estimate, o_low, o_high = overall
        ax.axvspan(o_low, o_high, color=colour, alpha=0.15, lw=0)
        ax.axvline(estimate, color=colour, lw=1)
    ax.axvline(0.0, color="0.4", lw=0.8, ls="--")


def draw_forest_panels(
    panels: Sequence[tuple[str, pd.DataFrame, tuple[float, float, float] | None]],
    labels: list[str],
    unit: str,
    margin: float | None = None,
    colours: Mapping[str, str] | None = None,
    ncols: int = 4,
) -> Figure:
    """One forest panel per variant on a shared effect axis and shared condition rows.

    ``panels``: (variant label, per-condition rows aligned with ``labels``, overall (estimate,
    low, high) or None); ``margin``: the equivalence margin, drawn as dotted lines.
    """
    k = len(panels)
    ncols = max(1, min(ncols, k))
    nrows = math.ceil(k / ncols)
    n = len(labels)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(1.6 + 2.1 * ncols, nrows * (0.8 + 0.17 * n)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    colours = colours or {}
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_visible(False)
            continue
        name, rows, overall = panels[i]
        _forest_axes(ax, rows, overall, colours.get(name, "C0"))
        if margin:
            for m in (-margin, margin):
                ax.axvline(m, color="#2e9e5b", lw=0.8, ls=":")
        # The variant's name on the plot itself, not in a legend.
        ax.set_title(name, loc="left", fontweight="bold", color=colours.get(name, "black"))
        if i % ncols == 0:
            ax.set_yticks(np.arange(n)[::-1], labels, fontsize=7)
        if i >= k - ncols:
            ax.set_xlabel(f"paired effect ({unit})" if unit else "paired effect", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
    # Fixed spacing rather than tight_layout: a second full draw per figure is most of the
    # report's time at 10,000 trials; bbox_inches="tight" crops the margins on saving.
    fig.subplots_adjust(wspace=0.08, hspace=0.45 / (0.3 + 0.17 * n))
    return fig


def draw_equivalence(
    panels: Sequence[tuple[str, str, pd.DataFrame]],
    tost_level: str,
    colours: Mapping[str, str] | None = None,
    control: str = "control",
) -> Figure:
    """Equivalence per metric (one panel each): every variant's TOST interval against ±margin.

    ``panels``: (metric, unit, rows) with rows of columns variant, estimate, tost_ci_low,
    tost_ci_high, margin and, when the analysis gives one, pi_low / pi_high (prediction
    interval for a new condition). ``tost_level``: e.g. "90%". ``control``: the arm the
    effects are against, named on the axis.
    """
    k = len(panels)
    height = max(1.6, 0.6 + 0.35 * max(len(rows) for _, _, rows in panels))
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k + 0.6, height), squeeze=False)
    colours = colours or {}
    has_pi = False
    for ax, (metric, unit, rows) in zip(axes.flat, panels, strict=True):
        y = np.arange(len(rows))[::-1]
        margin = rows["margin"].astype(float).dropna()
        if len(margin):
            m = float(margin.iloc[0])
            ax.axvspan(-m, m, color="#2e9e5b", alpha=0.12, lw=0)
        for yi, r in zip(y, rows.itertuples(), strict=True):
            colour = colours.get(r.variant, "C0")
            pi_low, pi_high = getattr(r, "pi_low", np.nan), getattr(r, "pi_high", np.nan)
            if np.isfinite(pi_low) and np.isfinite(pi_high):
                has_pi = True
                ax.plot([pi_low, pi_high], [yi, yi], color=colour, lw=1, alpha=0.6)
                ax.plot([pi_low, pi_high], [yi, yi], "|", color=colour, ms=8, alpha=0.6)
            ax.plot([r.tost_ci_low, r.tost_ci_high], [yi, yi], color=colour, lw=3.5)
            ax.plot([r.estimate], [yi], "o", color="white", ms=4, mec=colour, mew=1.2)
        ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(y, list(rows["variant"].astype(str)))
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(metric, loc="left", fontweight="bold")
        ax.set_xlabel(f"effect vs {control} ({unit})" if unit else f"effect vs {control}")
    handles = [
        Patch(color="#2e9e5b", alpha=0.25, label="± equivalence margin"),
        Line2D([], [], color="0.3", lw=3.5, label=f"{tost_level} CI (TOST)"),
    ]
    if has_pi:
        handles.append(Line2D([], [], color="0.3", lw=1, label="prediction interval"))
    fig.subplots_adjust(wspace=0.45)
    legend_outside(fig, handles, [h.get_label() for h in handles])
    return fig


_FILE_METADATA = {
    "svg": {"Creator": None, "Date": None, "Format": None, "Type": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "png": {"Software": None},
}


def save(
    fig: Figure, stem: str | Path, formats: Sequence[str] = ("svg",), dpi: int = 200
) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (standalone files, namespaces kept;
    no time stamps, so the same data gives the same bytes); closes the figure."""
    paths = []
    try:
        box = tight_box(fig)
        for fmt in formats:
            if fmt not in _FILE_METADATA:
                raise ValueError(f"unknown figure format {fmt!r}; allowed: svg, png, pdf")
            path = Path(f"{stem}.{fmt}")
            fig.savefig(path, format=fmt, bbox_inches=box, dpi=dpi, metadata=_FILE_METADATA[fmt])
            paths.append(path)
    finally:
        plt.close(fig)
    return paths
