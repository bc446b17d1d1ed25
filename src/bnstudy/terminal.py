"""The tables the CLI prints (``analyze``, ``plan``, ``status``): aligned, at most
:data:`WIDTH` columns wide, a blank for a missing value.

One place for their look; ``analyze --format csv/json`` bypass it and stay complete.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # keep scipy and statsmodels out of ``plan`` and ``status``
    from bnstudy.stats import Analysis

#: Columns of the terminal every line fits in.
WIDTH = 100
#: Spaces between two columns.
_GAP = 2
#: A wrapped column keeps at least this many characters a line (and its longest word).
_MIN_WRAP = 8


def cell(value: object) -> str:
    """One cell's text: blank when missing, yes/no, integers whole, else 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return "" if math.isnan(value) else f"{value:.4g}"
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # a list or an array
        pass
    return str(value)


def table(
    frame: pd.DataFrame,
    *,
    wrap: Sequence[str] = (),
    right: Collection[str] = (),
    indent: int = 2,
    width: int = WIDTH,
) -> str:
    """``frame``'s columns as given (the caller picks and names them), as aligned text under
    a header and a rule.

    Numeric columns and those named in ``right`` are right-aligned. When the table is wider
    than ``width``, the ``wrap`` columns, in that order, are wrapped onto more lines until it
    fits: at spaces first, then, if that is not enough, inside words too.
    """
    headers = [str(c) for c in frame.columns]
    cells = [[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    excess = indent + sum(widths) + _GAP * (len(widths) - 1) - width
    for whole_words in (True, False):
        for name in wrap:
            if excess <= 0:
                break
            i = headers.index(name)
            floor = [_MIN_WRAP, len(headers[i])]
            if whole_words:
                floor += [len(word) for row in cells for word in row[i].split()]
            narrower = min(widths[i], max(widths[i] - excess, *floor))
            excess -= widths[i] - narrower
            widths[i] = narrower
    rightward = [c in right or pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]

    def line(texts: Sequence[str]) -> str:
        padded = [
            text.rjust(w) if r else text.ljust(w)
            for text, w, r in zip(texts, widths, rightward, strict=True)
        ]
        return (" " * indent + (" " * _GAP).join(padded)).rstrip()

    lines = [line(headers), line(["-" * w for w in widths])]
    for row in cells:
        parts = [
            textwrap.wrap(text, w, break_on_hyphens=False) or [""]
            for text, w in zip(row, widths, strict=True)
        ]
        for k in range(max(map(len, parts))):
            lines.append(line([p[k] if k < len(p) else "" for p in parts]))
    return "\n".join(lines)


def _p(value: float) -> str:
    """A p-value as the headline writes it (2 significant digits); blank when missing."""
    return "" if pd.isna(value) else f"{value:.2g}"


def _decimals(values: pd.Series) -> int:
    """Decimals that show the largest of ``values`` to 4 significant digits (at most 6)."""
    largest = values.astype(float).abs().replace(math.inf, math.nan).max()
    if not largest > 0:  # no finite value, or only zeros
        return 2
    return min(6, max(0, 3 - math.floor(math.log10(largest))))


def _scope(kind: str, moderator: str, level: str) -> str:
    """``architecture=mlp``, ``lr: 0.1 - 0.03`` (a contrast), ``lr slope``, ``overall``: an
    estimate row's ``kind`` of estimate of its ``moderator``, at ``level``."""
    from bnstudy.stats.analysis_result import CONTRAST, LEVEL, SLOPE

    if kind == CONTRAST:
        return f"{moderator}: {level}"
    if kind == SLOPE:
        return f"{moderator} slope"
    if kind == LEVEL:
        return f"{moderator}={level}"
    return kind


def estimates(analysis: Analysis) -> str:
    """The effect estimates, a block per population x estimand x metric x variant.

    The block's heading names the comparison, the metric and its unit and the population,
    so its rows keep only what differs: the scope, the estimate with its CI, p, p_adj and
    the verdict.
    """
    from bnstudy.stats.analysis import SENSITIVITY_VERDICT
    from bnstudy.stats.analysis_result import SLOPE
    from bnstudy.stats.imputation import ITT

    ci = f"estimate [{_percent(analysis.confidence)} CI]"
    blocks = []
    keys = ["population", "estimand", "metric", "variant"]
    for (population, estimand, metric, variant), rows in analysis.estimates.groupby(
        keys, sort=False
    ):
        unit = analysis.units.get(metric, "")
        heading = f"{variant} - {rows['control'].iloc[0]} on {metric}"
        heading += f" ({unit}), {population}" if unit else f", {population}"
        if estimand != analysis.primary_estimand:
            heading += f", {estimand} estimand"
        verdicts = rows["verdict"].astype(str)
        if population != ITT:
            # The heading says it once: a sensitivity analysis, unadjusted, never a verdict.
            heading += " (sensitivity: unadjusted, no verdict)"
            for words in (SENSITIVITY_VERDICT, " (sensitivity)"):
                verdicts = verdicts.str.replace(words, "", regex=False)
            verdicts = verdicts.str.removeprefix("unadjusted: ")
        # A slope is per unit of its moderator: its size says nothing of the effects' scale.
        sized = rows.loc[rows["kind"] != SLOPE, ["estimate", "ci_low", "ci_high"]]
        decimals = _decimals(sized.stack())
        shown = pd.DataFrame(
            {
                "scope": [
                    _scope(k, m, lv)
                    for k, m, lv in zip(rows["kind"], rows["moderator"], rows["level"], strict=True)
                ],
                ci: _estimates(rows, decimals),
                "p": rows["p"].map(_p),
                "p_adj": rows["p_adj"].map(_p),
                "verdict": verdicts,
            }
        )
        if not shown["p_adj"].any():  # outside the multiplicity family: no adjusted p at all
            shown = shown.drop(columns="p_adj")
        body = table(shown, wrap=["verdict", "scope"], right=[ci, "p", "p_adj"])
        block = f"{wrapped(heading, indent='    ')}\n{body}"
        if population == ITT and (regime := _regime_line(analysis, estimand, metric, variant)):
            block += "\n" + regime
        blocks.append(block)
    return "\n\n".join(blocks)


def _regime_line(analysis: Analysis, estimand: str, metric: str, variant: str) -> str:
    """ "by condition (Holm over 12): better in 0, worse in 2 (...), ..." for one block, from
    ``analysis.regimes``; "" when the analysis has none."""
    from bnstudy.stats.regimes import regime_phrase

    reg = getattr(analysis, "regimes", None)
    if reg is None or reg.empty:
        return ""
    rows = reg[(reg["metric"] == metric) & (reg["variant"] == variant)
               & (reg["estimand"] == estimand)]  # fmt: skip
    if rows.empty:
        return ""
    r = rows.iloc[0].to_dict()
    text = f"by condition (Holm over {r['n_conditions']}): {regime_phrase(r, max_labels=3)}"
    return wrapped(text, first="  ", indent="    ")


def _estimates(rows: pd.DataFrame, decimals: int, ci: str = "") -> list[str]:
    """``estimate [ci_low, ci_high]`` per row, ``decimals`` after the point, the interval
    labelled ``ci`` ("95%") when given; blank where there is no estimate."""
    label = f"{ci} CI " if ci else ""
    out = []
    for e, low, high in zip(rows["estimate"], rows["ci_low"], rows["ci_high"], strict=True):
        if pd.isna(e):
            out.append("")
        elif pd.isna(low) or pd.isna(high):
            out.append(f"{e:.{decimals}f}")
        else:
            out.append(f"{e:.{decimals}f} [{label}{low:.{decimals}f}, {high:.{decimals}f}]")
    return out


def _percent(confidence: float) -> str:
    return f"{round(confidence * 100, 6):g}%"


def hypotheses(analysis: Analysis) -> str:
    """The pre-registered claims, judged, three lines each (their ids are too long for a
    table's column): the id and verdict, the test it makes, the estimate and adjusted p."""
    lines = []
    for r in analysis.hypotheses.itertuples(index=False):
        on = f"on {r.metric}" + (f" ({r.unit})" if r.unit else "")
        if r.expect == "equivalent":
            test = f"{r.variant} equivalent to {r.control} within {r.margin:g} {on}"
        else:
            test = f"{r.variant} {r.expect} than {r.control} {on}"
        if r.subset != "all conditions":
            test += f"; {r.subset}"
        if getattr(r, "quantifier", "average") != "average":
            test += f"; in {r.quantifier}"
        verdict = f"{r.verdict} ({r.note})" if r.note else r.verdict
        lines.append(wrapped(f"{r.id}: {verdict}", first="  ", indent="      "))
        lines.append(wrapped(test, first="    ", indent="      "))
        if pd.notna(r.estimate):
            row = pd.DataFrame([r._asdict()])
            decimals = _decimals(row[["estimate", "ci_low", "ci_high"]].stack())
            estimate = _estimates(row, decimals, ci=_percent(analysis.confidence))[0]
            p_adj = f", p_adj {_p(r.p_adj)}" if pd.notna(r.p_adj) else ""
            lines.append(f"    {estimate}{p_adj}")
    return "\n".join(lines)


def seed_plan(plan: pd.DataFrame) -> str:
    """Seeds per cell from a pilot (:data:`bnstudy.stats.planning.PLAN_COLUMNS`): the target,
    the seeds it takes and the half-width they reach, in the metric's unit; the notes below."""
    targets = [
        "" if pd.isna(what) else _target(what, value)
        for what, value in zip(plan["target"], plan["target_value"], strict=True)
    ]
    shown = pd.DataFrame(
        {
            "metric": plan["metric"],
            "variant": plan["variant"],
            "unit": plan["unit"],
            "target": targets,
            "seeds": plan["seeds_per_condition"].map(lambda n: "" if pd.isna(n) else f"{n:.0f}"),
            "reaches": plan["achieved_halfwidth"],
            "floor": plan["halfwidth_floor"],
            "sigma": plan["sigma_within"],
            "tau": plan["tau"],
        }
    )
    lines = [table(shown, wrap=["target", "metric", "variant"], right=["seeds"])]
    for r in plan[plan["note"].fillna("") != ""].itertuples(index=False):
        lines.append(wrapped(f"{r.metric}, {r.variant}: {r.note}", first="  note: ", indent="    "))
    return "\n".join(lines)


def _target(what: str, value: float) -> str:
    """``half-width 0.5 (margin)``, ``half-width 2``, ``power 0.8 at effect 1``."""
    if what.startswith("halfwidth"):
        return f"half-width {value:g}" + (" (margin)" if "margin" in what else "")
    return f"{what} {value:g}"


def status(counts: pd.DataFrame) -> str:
    """Trials per arm by outcome (:func:`bnstudy.study.status`; the first column is named as
    its index is: the design's treatment)."""
    from bnstudy.spec.trial import ARM

    return table(counts.rename_axis(counts.index.name or ARM).reset_index())


def wrapped(text: str, first: str = "", indent: str = "", width: int = WIDTH) -> str:
    """``text`` wrapped to ``width`` at spaces: ``first`` before its first line, ``indent``
    before the others."""
    return textwrap.fill(
        text, width, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
    )
