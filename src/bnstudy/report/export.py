"""Exports beside the HTML page: every figure as files, and a LaTeX table of the estimates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bnstudy.report import content as content_module
from bnstudy.report import figures, views
from bnstudy.report.tables import latex_table
from bnstudy.spec.protocol import Protocol
from bnstudy.stats import Analysis

#: The formats ``write_figures`` writes by default (``--figures DIR``).
FIGURE_FORMATS = ("svg", "png", "pdf")


def write_figures(
    analysis: Analysis,
    table: pd.DataFrame,
    protocol: Protocol,
    directory: str | Path,
    metadata: Mapping[str, str] | None = None,
    *,
    formats: Sequence[str] = FIGURE_FORMATS,
    dpi: int = 200,
) -> list[Path]:
    """Write every report figure as ``directory/ID.FORMAT`` (creating the folder) and a
    ``captions.md`` listing each figure's id, title and caption; returns the paths written.

    The ids are those of the HTML report's ``<figure id=...>`` elements.
    """
    c = content_module.build(analysis, table, protocol, metadata)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for f in c.figures:
        paths += figures.save(f.draw(), folder / f.id, formats, dpi=dpi)
    captions = folder / "captions.md"
    captions.write_text(
        "".join(f"- `{f.id}` ({f.title}): {' '.join(f.caption.split())}\n" for f in c.figures),
        encoding="utf-8",
    )
    return [*paths, captions]


_LATEX_COLUMNS = ["metric", "variant", "scope", "level", "estimate", "CI", "PI", "p", "p_adj",
                  "verdict", "n_pairs"]  # fmt: skip


def estimates_latex(
    analysis: Analysis,
    population: str = "primary",
    caption: str | None = None,
    label: str = "tab:estimates",
) -> str:
    """The estimates as a LaTeX ``table`` (booktabs; ``\\usepackage{booktabs}``).

    ``population``: "primary" (intention to treat, the verdicts), "sensitivity" (ok only)
    or "all" (both, with a population column).
    """
    if population == "primary":
        est = analysis.primary()
    elif population == "sensitivity":
        est = analysis.sensitivity()
    elif population == "all":
        est = analysis.estimates
    else:
        raise ValueError(f"unknown population {population!r}; allowed: primary, sensitivity, all")
    view = views.estimates_view(est)
    columns = [c for c in _LATEX_COLUMNS if c in view.columns]
    if population == "all" and "population" in est.columns:
        view = view.assign(population=est["population"].to_numpy())
        columns.insert(2, "population")
    units = ", ".join(f"{m} in {u}" for m, u in analysis.units.items() if u)
    caption = caption or (
        f"Paired effects of each variant against {analysis.control} "
        f"({100 * analysis.confidence:g}% CIs; p_adj: {analysis.correction}-adjusted over the "
        f"family '{analysis.family}'" + (f"; {units}" if units else "") + ")."
    )
    if view.empty:
        view = pd.DataFrame({"metric": ["no estimates"]})
        columns = ["metric"]
    return latex_table(view[columns], caption=caption, label=label)
