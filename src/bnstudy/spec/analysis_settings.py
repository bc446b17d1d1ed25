"""The ``analysis:`` section: how results are analysed (metrics, confidence, correction,
moderators, tuning). Metric settings are resolved against ``bnstudy.catalogue.METRICS``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from bnstudy.catalogue import METRICS, Direction
from bnstudy.spec.design import Transform
from bnstudy.spec.errors import UnknownName
from bnstudy.spec.fields import STRICT, PositiveFloat, check_unique

#: The scale a moderator's slope is estimated on when the protocol does not say: ratios
#: act multiplicatively (10 -> 100 is like 1 -> 10).
DEFAULT_TRANSFORMS: dict[str, Transform] = {"imbalance_ratio": "log"}


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
    #: The scale on which a moderator's slope is estimated, per factor; ratios default to
    #: ``log`` (see :data:`DEFAULT_TRANSFORMS`), every other factor to ``identity``.
    transforms: dict[str, Literal["identity", "log"]] = Field(default={})
    #: Factors each arm is tuned over (e.g. ``[lr]``): the tuned comparison sets each arm at
    #: its own best level, chosen per condition on ``select_by`` (never a test metric).
    tune: list[str] = Field(default=[])
    select_by: str = "val_balanced_acc"

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
