"""A study's design in plain data: what the analysis and the report need, nothing more.

``stats`` and ``report`` read a :class:`Design` rather than the pydantic ``Protocol``, so
they learn the roles of the factors (treatment, conditions, moderators, tuning factors)
from here and never string-match a factor name. ``Protocol.design()`` builds one; a
notebook can build one by hand for a table from elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

from bnstudy.catalogue import Direction

#: The scale a numeric moderator's slope is estimated on: the levels themselves, or their
#: natural, base-2 (a slope per doubling) or base-10 (a slope per x10) logarithm.
Transform = Literal["identity", "log", "log2", "log10"]
#: The logarithmic transforms and their bases; each needs positive numeric levels.
LOG_BASES: dict[str, float] = {"log": math.e, "log2": 2.0, "log10": 10.0}
#: How many conditions a hypothesis is about: the mean effect over them (``average``), at
#: least one of them (``any``) or every one (``all``); see ``bnstudy.stats.regimes``.
Quantifier = Literal["average", "any", "all"]


def slope_unit(transform: str, factor: str) -> str:
    """What one unit of a slope on ``transform``'s scale is, in words: "per unit of lr",
    "per unit of ln(imbalance_ratio)", "per doubling of batch_size", "per x10 of lr"."""
    return {
        "log": f"per unit of ln({factor})",
        "log2": f"per doubling of {factor}",
        "log10": f"per x10 of {factor}",
    }.get(transform, f"per unit of {factor}")


@dataclasses.dataclass(frozen=True)
class TuneDesign:
    """How one tuning factor is tuned (``analysis.tune`` in its mapping form), plain data.

    ``bounds``: the lowest and highest levels anyone would use, as the protocol declares them
    (None: not declared); an arm selected at a declared bound is not "at the edge of the
    grid". ``extend``: whether the grid may be grown past an edge where an arm is selected,
    each new level the edge times or divided by ``factor`` (> 1); a run grows it
    (``bnstudy.spec.grow``).
    """

    bounds: tuple[float, float] | None = None
    extend: bool = False
    factor: float | None = None

    def open_edge(self, level: float, levels: Sequence[float]) -> bool:
        """Whether ``level`` (selected among ``levels``) is the lowest or the highest level of
        the grid without being the declared bound on that side: a better level might lie
        beyond it. A grid of one level has no open edge to tell from."""
        values = sorted({float(v) for v in levels})
        if len(values) < 2:
            return False
        low, high = self.bounds if self.bounds is not None else (math.nan, math.nan)
        at_low = math.isclose(level, values[0]) and not math.isclose(level, low)
        at_high = math.isclose(level, values[-1]) and not math.isclose(level, high)
        return at_low or at_high


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
    minus the effect at ``low``; ``quantifier`` whether it is about the mean effect over the
    conditions (``average``), some condition (``any``) or every one (``all``); ``sha256`` is
    the hash the results file registers.
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
    #: ``average`` (the mean effect over the conditions), ``any`` or ``all`` of them.
    quantifier: Quantifier = "average"


@dataclasses.dataclass(frozen=True)
class Design:
    """Roles of the results table's columns and the analysis settings.

    ``treatment`` is the column holding the arm (e.g. ``head``, or the derived ``arm``);
    ``treatment_factor`` the factor whose levels the arms are when that is not the column's
    own name (``optimizer`` for arms ``adamw`` and ``sgd`` in column ``arm``; "" otherwise:
    see :attr:`treatment_name`); ``conditions`` the factor columns that define a design cell
    (every factor except the treatment); ``moderators``
    maps the factors whose levels get their own estimates to the scale their slope is
    estimated on (``log`` for ratios, ``log2`` for batch sizes, ``log10`` for learning
    rates); ``tuning`` lists the factors over which each arm is tuned on ``select_by`` (a
    validation metric) for the tuned comparison, and ``tune_settings`` how (declared bounds,
    extension of the grid), one entry per tuning factor.
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
    tune_settings: dict[str, TuneDesign] = dataclasses.field(default_factory=dict)
    treatment_factor: str = ""

    @property
    def treatment_name(self) -> str:
        """What the arms are, for people: the treatment factor (``optimizer``), or the
        treatment column (``head``, ``arm``)."""
        return self.treatment_factor or self.treatment

    def tune_setting(self, factor: str) -> TuneDesign:
        """How ``factor`` is tuned (no bounds, no extension when the design does not say)."""
        return self.tune_settings.get(factor, TuneDesign())
