"""The report of an Analysis: one self-contained HTML page, Markdown, figure files, LaTeX.

- :func:`render` (``html.py``): the HTML page, figures inline as SVG, nothing fetched.
- :func:`render_markdown` (``markdown.py``): Markdown plus a folder of SVG figures.
- :func:`write_figures`, :func:`estimates_latex` (``export.py``): every figure as SVG, PNG
  and PDF; the estimates as a LaTeX table.

What the report says is built once per call in ``content.py`` from the table views
(``views.py``, ``hypotheses.py``), sentences (``text.py``) and the sections' figures
(``effects.py``: effects by moderator, equivalence, forest plots; ``levels.py``: each arm's
levels; ``mechanisms.py``: curves, per-class values, mechanism columns), drawn by
``figures.py`` and ``figures_arms.py``. It reads the design, the moderators and the arms'
levels from the Analysis, and never recomputes what the Analysis has.
"""

from bnstudy.report import figures
from bnstudy.report.export import estimates_latex, write_figures
from bnstudy.report.html import render
from bnstudy.report.markdown import render_markdown

__all__ = ["estimates_latex", "figures", "render", "render_markdown", "write_figures"]
