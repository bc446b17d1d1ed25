"""A study's design in plain data: what the analysis and the report need, nothing more.

``stats`` and ``report`` read a :class:`Design` rather than the pydantic ``Protocol``, so
they learn the roles of the factors (treatment, conditions, moderators, tuning factors)
from here and never string-match a factor name. ``Protocol.design()`` builds one; a
notebook can build one by hand for a table from elsewhere.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from bnstudy.catalogue import Direction

Transform = Literal["identity", "log"]


@dataclasses.dataclass(frozen=True)
class MetricDesign:
    """A primary metric: which way is better and the equivalence margin (analysis units)."""

    direction: Direction
    equivalence_margin: float | None


@dataclasses.dataclass(frozen=True)
class HypothesisDesign:
    """A pre-registered hypothesis in plain data (see ``bnstudy.spec.claims``), defaults resolved.

    ``where`` maps factor -> the levels the claim is about (all conditions when empty);
    ``interaction`` is ``(factor, low, high)`` when the claim is about the effect at ``high``
    minus the effect at ``low``; ``sha256`` is the hash the results file registers.
    """

    id: str
    claim: str
    metric: str
    variant: str
    control: str
    where: dict[str, tuple]
    expect: Literal["higher", "lower", "equivalent"]
    margin: float | None
    estimand: Literal["tuned", "fixed"]
    sha256: str
    interaction: tuple[str, object, object] | None = None


@dataclasses.dataclass(frozen=True)
class Design:
    """Roles of the results table's columns and the analysis settings.

    ``treatment`` is the column holding the arm (e.g. ``head``); ``conditions`` the factor
    columns that define a design cell (every factor except the treatment); ``moderators``
    maps the factors whose levels get their own estimates to the scale their slope is
    estimated on (``log`` for ratios); ``tuning`` lists the factors over which each arm is
    tuned on ``select_by`` (a validation metric) for the tuned comparison.
    """

    treatment: str
    control: str
    variants: tuple[str, ...]
    conditions: tuple[str, ...]
    moderators: dict[str, Transform]
    metrics: dict[str, MetricDesign]
    confidence: float = 0.95
    correction: Literal["holm", "fdr_bh", "none"] = "holm"
    family: Literal["overall", "all"] = "overall"
    bootstrap_replicates: int = 2000
    bootstrap_seed: int = 0
    failed_score: Literal["chance", "worst"] = "chance"
    tuning: tuple[str, ...] = ()
    select_by: str | None = None
