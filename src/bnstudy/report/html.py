"""One self-contained HTML report: CSS inline, figures inline as SVG, no script, no address.

Everything user-supplied (protocol text, names, factor levels, error messages) goes through
Jinja2's autoescaping or :func:`~bnstudy.report.tables.html_table`'s escaping.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

import jinja2
import pandas as pd

from bnstudy.report import content as content_module
from bnstudy.report import figures
from bnstudy.report.tables import html_table
from bnstudy.spec.protocol import Protocol
from bnstudy.stats import Analysis

_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(
        lambda name: files("bnstudy.report").joinpath(name).read_text("utf-8")
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["table"] = html_table
# "equivalent (PI within margin)" -> "equivalent", "unadjusted: higher" -> "unadjusted": the
# CSS class colours verdicts only, never a description of an unadjusted row.
_ENV.filters["verdict_class"] = lambda verdict: str(verdict).split(" ")[0].rstrip(":")


def render(
    analysis: Analysis,
    table: pd.DataFrame,
    protocol: Protocol,
    metadata: Mapping[str, str] | None = None,
    *,
    generated_at: str | None = None,
) -> str:
    """The report as one HTML string.

    ``metadata``: the results file's metadata (versions, machine, the run's ``written_at``);
    ``generated_at``: the report's own time stamp shown in its header (default: now, UTC).
    """
    c = content_module.build(analysis, table, protocol, metadata, generated_at)
    svgs = {f.id: figures.to_svg(f.draw(), id_prefix=f"{f.id}-") for f in c.figures}
    return _ENV.get_template("report.html.j2").render(c=c, svgs=svgs)
