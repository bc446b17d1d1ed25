"""What the report needs to know about the study's columns, read from its design description.

The report never string-matches a factor name: which column is the treatment, which are
conditions and moderators (and on which scale a moderator's levels lie) comes from
:class:`bnstudy.spec.design.Design`, the one the Analysis was made under (``Analysis.design``).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import LOG_BASES, Design
from bnstudy.stats import Analysis


@dataclasses.dataclass(frozen=True)
class Roles:
    """Columns and settings, resolved against one results table.

    ``treatment``: the column holding the arms; ``treatment_name``: what the arms are, for
    headers and legends (the treatment factor, ``optimizer``, or that column, ``head``);
    ``arms``: control first, then the variants; ``moderators``: name -> transform
    ("identity", "log", "log2" or "log10"); ``conditions``: the design's condition columns
    present in the table; ``varying``: those taking more than one value there.
    """

    treatment: str
    treatment_name: str
    control: str
    variants: tuple[str, ...]
    metrics: tuple[str, ...]
    margins: dict[str, float | None]
    directions: dict[str, str]
    moderators: dict[str, str]
    conditions: tuple[str, ...]
    varying: tuple[str, ...]
    confidence: float
    correction: str
    failed_score: str

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.control, *self.variants)

    def log_scale(self, factor: str) -> bool:
        """Whether ``factor``'s slope is on a logarithmic scale (log, log2 or log10), so
        its levels are drawn on a log axis."""
        return self.moderators.get(factor) in LOG_BASES


def roles_of(design: Design, table: pd.DataFrame, analysis: Analysis) -> Roles:
    """The roles of ``table``'s columns under ``design``; the metrics are those analysed."""
    conditions = tuple(c for c in design.conditions if c in table.columns)
    varying = tuple(c for c in conditions if len(table) and table[c].nunique(dropna=False) > 1)
    metrics = tuple(analysis.metrics) or tuple(design.metrics)
    margins = {}
    directions = {}
    for m in metrics:
        spec = design.metrics.get(m)
        margins[m] = spec.equivalence_margin if spec is not None else None
        info = METRICS.get(m)
        direction = spec.direction if spec is not None and spec.direction else None
        directions[m] = direction or (info.direction if info else "higher")
    return Roles(
        treatment=design.treatment,
        treatment_name=design.treatment_name,
        control=design.control,
        variants=tuple(design.variants),
        metrics=metrics,
        margins=margins,
        directions=directions,
        moderators=dict(design.moderators),
        conditions=conditions,
        varying=varying,
        confidence=analysis.confidence,
        correction=analysis.correction,
        failed_score=analysis.failed_score,
    )


def primary_rows(df: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """The rows of ``df`` of the analysis' primary estimand (``tuned`` when the design tunes
    each arm, else ``fixed``); all rows when either side does not say."""
    estimand = getattr(analysis, "primary_estimand", None)
    if df is None or estimand is None or "estimand" not in df.columns:
        return df
    return df[df["estimand"] == estimand]
