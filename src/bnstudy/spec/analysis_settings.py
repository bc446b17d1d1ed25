"""The ``analysis:`` section: how results are analysed (metrics, confidence, correction,
moderators, tuning). Metric settings are resolved against ``bnstudy.catalogue.METRICS``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from bnstudy.catalogue import METRICS, Direction
from bnstudy.spec.design import Transform, TuneDesign
from bnstudy.spec.errors import UnknownName
from bnstudy.spec.fields import STRICT, PositiveFloat, check_unique

#: The scale a moderator's slope is estimated on when the protocol does not say. Ratios,
#: batch sizes and learning rates act multiplicatively (10 -> 100 is like 1 -> 10), so their
#: slopes are per unit of ln(ratio), per doubling of the batch and per x10 of the rate.
DEFAULT_TRANSFORMS: dict[str, Transform] = {
    "imbalance_ratio": "log",
    "batch_size": "log2",
    "lr": "log10",
}

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class TuneSpec(BaseModel):
    """How one factor is tuned (the mapping form of ``analysis.tune``).

    ``bounds: [low, high]``: the lowest and highest levels anyone would use; an arm selected
    at a declared bound is not "at the edge of the grid" (checked against the factor's
    levels in ``spec.checks``). ``extend: true`` with ``factor: F`` (> 1) opts in to growing
    the grid past an edge where an arm is selected, each new level the edge times or divided
    by F: ``bnstudy run`` grows it (``bnstudy.spec.grow``, ``bnstudy.execution.grow``).
    """

    model_config = STRICT

    bounds: tuple[FiniteFloat, FiniteFloat] | None = None
    extend: bool = False
    factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] | None = None

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"expected [low, high] with low < high; got {list(bounds)}")
        return bounds

    @model_validator(mode="after")
    def _factor_with_extend(self) -> TuneSpec:
        if self.extend and self.factor is None:
            raise ValueError(
                "extend: true needs factor (> 1): each new level is the edge times or divided by it"
            )
        if not self.extend and self.factor is not None:
            raise ValueError("factor grows the grid only with extend: true")
        return self

    def design(self) -> TuneDesign:
        """The plain-data form ``stats`` reads."""
        return TuneDesign(self.bounds, self.extend, self.factor)


class MetricSpec(BaseModel):
    """A primary metric: which way is better, and the margin for 'equivalent'."""

    model_config = STRICT

    direction: Direction | None = None
    equivalence_margin: PositiveFloat | None = None


class Bootstrap(BaseModel):
    model_config = STRICT

    replicates: int = Field(default=2000, ge=100)
    seed: int = Field(default=0, ge=0)


class AnalysisSettings(BaseModel):
    """How results are analysed. Metric settings are resolved against :data:`METRICS`."""

    model_config = STRICT

    # validate_default: the default must resolve (direction, margin) exactly as if written.
    metrics: dict[str, MetricSpec] = Field(
        default={"balanced_acc": MetricSpec()}, min_length=1, validate_default=True
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    correction: Literal["holm", "fdr_bh", "none"] = "holm"
    #: Which estimates one multiplicity correction spans: the overall effects only, or every
    #: estimate (overall, per moderator level, per condition).
    family: Literal["overall", "all"] = "overall"
    bootstrap: Bootstrap = Bootstrap()
    #: The value a diverged or failed trial (no metrics) takes in the primary,
    #: intention-to-treat analysis: ``chance`` (a uniform random guesser's score, see
    #: ``catalogue.METRICS``; the worst observed value where a metric has none) or ``worst``
    #: (the worst value observed in the same condition, any arm). The analysis of measured
    #: trials only is reported beside it as a sensitivity check.
    failed_score: Literal["chance", "worst"] = "chance"
    #: Factors whose levels get their own effect estimate; default: every varying factor.
    moderators: list[str] | None = None
    #: The scale on which a moderator's slope is estimated, per factor: ``identity``,
    #: ``log``, ``log2`` (per doubling) or ``log10`` (per x10); defaults in
    #: :data:`DEFAULT_TRANSFORMS`, every other factor ``identity``.
    transforms: dict[str, Transform] = Field(default={})
    #: Factors each arm is tuned over: the tuned comparison sets each arm at its own best
    #: level, chosen per condition on ``select_by`` (never a test metric). Written as a list
    #: (``[lr]``) or a mapping to each factor's settings (:class:`TuneSpec`,
    #: ``{lr: {bounds: [1e-4, 1.0]}}``); held as the mapping, in the order written, so
    #: ``list(tune)`` is the factors.
    tune: dict[str, TuneSpec] = Field(default={})
    select_by: str = "val_balanced_acc"
    #: Whether ``tune`` was written as a list (error messages then name ``tune[i]``).
    _tune_listed: bool = PrivateAttr(default=False)

    @field_validator("tune", mode="before")
    @classmethod
    def _list_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError(
                    f"expected factor names, or a mapping factor -> settings; got {value!r}"
                )
            check_unique(value)
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _remember_list_form(cls, data: Any, handler: Any) -> AnalysisSettings:
        settings = handler(data)
        if isinstance(data, dict) and isinstance(data.get("tune"), list):
            settings._tune_listed = True
        return settings

    def tune_location(self, name: str) -> tuple[str | int, ...]:
        """Where tuning factor ``name`` is written: ``analysis.tune[i]`` or
        ``analysis.tune.NAME``."""
        if self._tune_listed:
            return ("analysis", "tune", list(self.tune).index(name))
        return ("analysis", "tune", name)

    @field_validator("select_by")
    @classmethod
    def _a_validation_metric(cls, name: str) -> str:
        if name not in METRICS:
            raise UnknownName(0, name, [m for m in METRICS if m.startswith("val_")])
        if not name.startswith("val_"):
            raise ValueError(
                f"{name!r} is not measured on the validation split; selection on test data "
                "would bias the comparison"
            )
        return name

    @field_validator("metrics", mode="before")
    @classmethod
    def _names_to_specs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError(
                    f"expected metric names, or a mapping name -> settings; got {value!r}"
                )
            check_unique(value)
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("metrics")
    @classmethod
    def _resolve_metrics(cls, specs: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
        resolved = {}
        for name, spec in specs.items():
            info = METRICS.get(name)
            if info is None:
                raise UnknownName(0, name, list(METRICS))
            resolved[name] = MetricSpec(
                direction=spec.direction or info.direction,
                equivalence_margin=spec.equivalence_margin or info.default_margin,
            )
        return resolved
