"""Report figures: matplotlib drawings returned as inline SVG text (no external references)."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update(
    {
        "svg.hashsalt": "bnstudy",  # stable element ids: same data, same bytes
        "svg.fonttype": "none",  # text stays text: smaller, searchable
        "text.parse_math": False,  # names are plain text: a "$" must not start mathtext
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)

_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
# The XML prolog, DOCTYPE and namespace declarations carry URLs; HTML5 inline SVG needs none.
_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def to_svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=_NO_METADATA)
    plt.close(fig)
    return _NAMESPACES.sub("", _PROLOG.sub("", buffer.getvalue(), count=1))


def effect_by_level(rows: pd.DataFrame, factor: str, unit: str, log_x: bool) -> str:
    """Effect (variant - control) with CI bars against a moderator's levels, one line per variant.

    ``rows``: estimates of one metric at scope ``factor`` (columns variant, level, estimate,
    ci_low, ci_high).
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    variants = list(dict.fromkeys(rows["variant"]))
    offsets = np.linspace(-0.06, 0.06, len(variants)) if len(variants) > 1 else [0.0]
    for variant, offset in zip(variants, offsets, strict=True):
        part = rows[rows["variant"] == variant]
        if _numeric_levels(part["level"]) is not None:  # levels are strings: "10.0" < "2.0"
            part = part.iloc[np.argsort(_numeric_levels(part["level"]), kind="stable")]
        x = _numeric_levels(part["level"])
        numeric = x is not None
        if not numeric:
            x = np.arange(len(part), dtype=float)
        xpos = x * (10**offset) if (numeric and log_x) else x + offset
        est = part["estimate"].to_numpy(float)
        err = np.vstack(
            [est - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - est]
        )
        # Lines join ordered (numeric) levels only; categories get markers alone.
        style = "-o" if numeric else "o"
        ax.errorbar(xpos, est, yerr=err, fmt=style, capsize=3, label=variant)
        if not numeric:
            ax.set_xticks(x, part["level"].astype(str))
    if log_x and _numeric_levels(rows["level"]) is not None:
        ax.set_xscale("log")
        levels = sorted(set(_numeric_levels(rows["level"])))
        ax.set_xticks(levels, [f"{v:g}" for v in levels])
        ax.minorticks_off()
    ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel(factor.replace("_", " "))
    ax.set_ylabel(f"effect vs control ({unit})" if unit else "effect vs control")
    ax.legend(frameon=False, fontsize=8)
    return to_svg(fig)


def forest(
    rows: pd.DataFrame, labels: list[str], unit: str, overall: tuple[float, float, float]
) -> str:
    """Per-condition paired effects with CIs, and the overall estimate as a shaded band."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.2 * n))
    y = np.arange(n)[::-1]
    est = rows["estimate"].to_numpy(float)
    err = np.vstack([est - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - est])
    ax.errorbar(est, y, xerr=err, fmt="s", ms=3, capsize=2, color="C0")
    estimate, low, high = overall
    ax.axvspan(low, high, color="C1", alpha=0.2, lw=0)
    ax.axvline(estimate, color="C1", lw=1)
    ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(f"paired effect ({unit})" if unit else "paired effect")
    return to_svg(fig)


def _numeric_levels(levels: pd.Series) -> np.ndarray | None:
    try:
        return levels.astype(float).to_numpy()
    except (TypeError, ValueError):
        return None
