"""A DataFrame as an HTML, Markdown or LaTeX table: no index, one header row, every cell escaped.

pandas' own writers add the index name as a second header row and format each column its
own way; these write exactly the columns given, with one number format.
"""

from __future__ import annotations

import html
import math
import numbers

import pandas as pd
from markupsafe import Markup, escape

#: Shown for a missing number.
MISSING = "–"


def cell(value: object) -> str:
    """One cell's text: 4 significant digits, "–" for missing, yes/no for booleans."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return MISSING
        return f"{x:.4g}"
    try:
        if pd.isna(value):
            return MISSING
    except (TypeError, ValueError):  # lists and arrays
        pass
    return str(value)


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def html_table(df: pd.DataFrame | None, empty: str = "") -> Markup:
    """``df`` as a ``<table>`` (numeric columns right-aligned); ``empty`` as a paragraph when
    there are no rows (nothing when ``empty`` is "")."""
    if df is None or df.empty:
        return Markup(f'<p class="empty">{escape(empty)}</p>') if empty else Markup("")
    numeric = [_numeric(df[c]) for c in df.columns]
    head = "".join(
        f"<th{' class=num' if num else ''}>{escape(str(c))}</th>"
        for c, num in zip(df.columns, numeric, strict=True)
    )
    rows = []
    for values in df.itertuples(index=False, name=None):
        cells = "".join(
            f"<td class=num>{escape(cell(v))}</td>" if num else f"<td>{escape(cell(v))}</td>"
            for v, num in zip(values, numeric, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return Markup(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def md_text(text: str) -> str:
    """``text`` safe in Markdown prose: HTML special characters as entities (a renderer
    would otherwise take "<img ...>" in a factor level for HTML), on one line."""
    return html.escape(str(text), quote=False).replace("\n", " ")


def _md_escape(text: str) -> str:
    return md_text(text).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(df: pd.DataFrame | None, empty: str = "") -> str:
    """``df`` as a GitHub-flavoured Markdown pipe table; ``empty`` (italic) when no rows."""
    if df is None or df.empty:
        return f"_{_md_escape(empty)}_" if empty else ""
    header = "| " + " | ".join(_md_escape(str(c)) for c in df.columns) + " |"
    align = "|" + "|".join("---:" if _numeric(df[c]) else "---" for c in df.columns) + "|"
    body = [
        "| " + " | ".join(_md_escape(cell(v)) for v in values) + " |"
        for values in df.itertuples(index=False, name=None)
    ]
    return "\n".join([header, align, *body])


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "−": "$-$",
    "–": "--",
    "²": "$^2$",
    "τ": r"$\tau$",
}


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX table cell."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """``df`` as a booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    spec = "".join("r" if _numeric(df[c]) else "l" for c in df.columns)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{latex_escape(label)}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(latex_escape(str(c)) for c in df.columns) + r" \\")
    lines.append(r"\midrule")
    for values in df.itertuples(index=False, name=None):
        lines.append(" & ".join(latex_escape(cell(v)) for v in values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
