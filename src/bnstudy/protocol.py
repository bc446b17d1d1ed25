"""Study protocols: the YAML schema, its validation, and expansion into trials.

A protocol declares factors (lists of values); their full factorial product times the seeds
is the set of trials. A trial's id is a hash of its resolved settings, so resume,
deduplication and the pairing of arms are derived, never stored by hand.

This module imports nothing else from bnstudy: the names of registered architectures, heads
and datasets are handed in through ``known`` (see ``bnstudy.study.known_names``), so a
protocol read back from a results file can be parsed on a machine without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bnstudy import arch_options
from bnstudy.catalogue import METRICS, Direction
from bnstudy.data.spec import SPECS as DATASET_SPECS
from bnstudy.data.spec import DatasetError, identity_options, resolve_options
from bnstudy.design import Design, MetricDesign, Transform
from bnstudy.head_options import DEFAULTS as HEAD_OPTION_DEFAULTS
from bnstudy.head_options import options_of as head_options_of
from bnstudy.head_options import resolve as resolve_head_options
from bnstudy.hypotheses import Hypothesis, Interaction
from bnstudy.suggest import did_you_mean

#: The factor that defines the arms of a pairing block. Everything else is the condition.
TREATMENT = "head"
#: The derived column naming the arm when head options belong to the arms (see
#: ``Protocol.arm_options``): the head plus those options, e.g. ``bn[bn_momentum=0.01]``.
ARM = "arm"
#: The scale a moderator's slope is estimated on when the protocol does not say: ratios
#: act multiplicatively (10 -> 100 is like 1 -> 10).
DEFAULT_TRANSFORMS: dict[str, Transform] = {"imbalance_ratio": "log"}
#: The ``pretrain`` level of a body trained from its random initialisation only.
NO_PRETRAIN = "none"


class ProtocolError(ValueError):
    """A protocol that cannot be used; the message is one line naming file, field and value."""


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    """Factors accept a single value or a list of values."""
    return value if isinstance(value, list) else [value]


def _check_unique(values: list[Any]) -> list[Any]:
    """Refuse repeated values (linear time: factor levels and seeds are hashable scalars)."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v!r} in {_show(values)}")
        seen.add(v)
    return values


#: The results table stores integers as int64.
INT64_MAX = 2**63 - 1
#: A protocol expanding to more trials than this is refused unless ``max_trials`` is raised.
DEFAULT_MAX_TRIALS = 100_000
#: Past this many trials ``validate`` and ``run`` warn (a typo in a seed count, say).
WARN_TRIALS = 10_000

Name = Annotated[str, Field(min_length=1, max_length=200)]
Ratio = Annotated[float, Field(ge=1, le=1e9, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
Seed = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
OpenFraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
#: A BatchNorm momentum: the weight of the newest batch in the running statistics.
Momentum = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
#: A study name is also its file name (results, report), so it must be a safe one.
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: A plugin: a ``.py`` file or a dotted module name.
PLUGIN = r"^(?:[^\n]+\.py|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$"


class Factors(BaseModel):
    """Every factor is a non-empty list of values (a single value means a list of one).

    Adding a factor: add it here *and* to :class:`Trial`; ``train.run_trial`` reads it.

    Head options (``hidden_width``, ``dropout``, ``dropout_at``, ``bn_momentum``) apply only
    to the heads that take them (``bnstudy.head_options``): elsewhere they are set to their
    defaults on expansion and duplicates dropped. One that every head of the protocol takes
    is a condition; one that some heads do not take belongs to the arm
    (:meth:`Protocol.arm_options`).
    """

    model_config = _STRICT

    architecture: list[Name] = Field(min_length=1)
    head: list[Name] = Field(min_length=1)
    dataset: list[Name] = Field(min_length=1)
    imbalance_ratio: list[Ratio] = Field(default=[1.0], min_length=1)
    train_per_class: list[PositiveInt] = Field(default=[500], min_length=1)
    #: Training length in passes over the training set; 0 when ``steps`` sets it instead.
    epochs: list[NonNegativeInt] = Field(default=[10], min_length=1)
    batch_size: list[PositiveInt] = Field(default=[64], min_length=1)
    lr: list[PositiveFloat] = Field(default=[0.05], min_length=1)
    optimizer: list[Literal["sgd", "adamw"]] = Field(default=["sgd"], min_length=1)
    weight_decay: list[NonNegativeFloat] = Field(default=[5e-4], min_length=1)
    # Added after the first release: at these defaults they are left out of trial ids, so
    # tables written before them resume with nothing to re-run (see Trial.settings).
    #: Shape of the long tail: ``exp`` (Cui et al.), ``step`` (Buda et al.: a fraction
    #: ``step_fraction`` of the classes are minority), one or two majority classes.
    imbalance_profile: list[Literal["exp", "step", "single_majority", "two_majority"]] = Field(
        default=["exp"], min_length=1
    )
    step_fraction: list[OpenFraction] = Field(default=[0.5], min_length=1)
    #: Training length in optimiser steps, the same for every imbalance ratio (0: use epochs).
    steps: list[NonNegativeInt] = Field(default=[0], min_length=1)
    lr_schedule: list[Literal["cosine", "step", "constant"]] = Field(
        default=["cosine"], min_length=1
    )
    #: Fraction of the training steps spent warming the learning rate up linearly from 0.
    warmup_frac: list[Fraction] = Field(default=[0.0], min_length=1)
    label_smoothing: list[Fraction] = Field(default=[0.0], min_length=1)
    #: Maximum gradient norm (0: no clipping).
    grad_clip: list[NonNegativeFloat] = Field(default=[0.0], min_length=1)
    sampler: list[Literal["instance", "class_balanced"]] = Field(default=["instance"], min_length=1)
    # Head options (bnstudy.head_options): a head that does not take one gets its default,
    # so listing levels never duplicates trials of such heads.
    #: Width of the hidden layer of ``hidden``, ``hidden_bn_relu``, ``hidden_relu_bn``
    #: (0: the feature width).
    hidden_width: list[NonNegativeInt] = Field(default=[0], min_length=1)
    #: Dropout rate on the input of the final FC (every head).
    dropout: list[Fraction] = Field(default=[0.0], min_length=1)
    #: Where the dropout goes in heads with a norm right before the FC.
    dropout_at: list[Literal["before_norm", "after_norm"]] = Field(
        default=["before_norm"], min_length=1
    )
    #: Momentum of the head's BatchNorm running statistics (PyTorch's default 0.1).
    bn_momentum: list[Momentum] = Field(default=[0.1], min_length=1)
    #: ``none`` or the name of a stage of the protocol's ``pretraining:`` section: the body
    #: starts from that stage's weights (see :class:`PretrainStage`).
    pretrain: list[Name] = Field(default=[NO_PRETRAIN], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _steps_or_epochs(cls, data: Any) -> Any:
        """``steps:`` replaces ``epochs:``; giving both is ambiguous."""
        if not isinstance(data, dict) or "steps" not in data:
            return data
        steps = _as_list(data["steps"])
        if any(s != 0 for s in steps):
            if "epochs" in data:
                raise _FieldError(
                    ("factors", "steps"),
                    "give the training length as epochs or as steps, not both",
                )
            if 0 in steps:
                raise _FieldError(("factors", "steps"), "steps must be at least 1")
            return {**data, "epochs": [0]}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("*")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        return _check_unique(values)

    @field_validator("architecture", "head", "dataset")
    @classmethod
    def _registered(cls, values: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get(info.field_name)
        if known is None:  # parsing without registries (e.g. from a results file)
            return values
        for i, v in enumerate(values):
            if v not in known:
                raise _UnknownName(i, v, known)
        return values

    @model_validator(mode="after")
    def _a_training_length(self) -> Factors:
        if self.steps == [0] and 0 in self.epochs:
            raise _FieldError(("factors", "epochs"), "epochs must be at least 1")
        return self

    def count(self) -> int:
        """The number of factor combinations (without expanding them)."""
        return math.prod(len(getattr(self, name)) for name in type(self).model_fields)

    def varying(self) -> list[str]:
        """Names of the factors that take more than one value."""
        return [name for name in type(self).model_fields if len(getattr(self, name)) > 1]


class _UnknownName(ValueError):
    def __init__(self, index: int, value: str, known: Sequence[str]):
        self.index = index
        hint = did_you_mean(value, known)
        super().__init__(f"unknown name {value!r}{hint}; allowed: {', '.join(sorted(known))}")


class PretrainStage(BaseModel):
    """One pre-training stage: the body is trained on ``dataset`` first, then fine-tuned.

    The stage trains with a ``plain`` head (GAP -> FC), the one head that favours no arm
    (it adds nothing before the FC), with a cosine schedule, the ``instance`` sampler and
    balanced data, for exactly ``steps`` optimiser steps; the head is thrown away.
    ``options`` are the stage dataset's options; without them, those of the protocol's
    ``datasets:`` section for that dataset. A field added here later must be left out of
    :meth:`Protocol.stage_identity` at its default, or cached bodies and trial ids change.
    """

    model_config = _STRICT

    dataset: Name
    options: dict[str, Any] | None = None
    steps: PositiveInt
    lr: PositiveFloat = 0.05
    batch_size: PositiveInt = 64
    train_per_class: PositiveInt = 500
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: NonNegativeFloat = 5e-4

    @field_validator("dataset")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("dataset")
        if known is not None and value not in known:
            raise _UnknownName(0, value, known)
        return value


class MetricSpec(BaseModel):
    """A primary metric: which way is better, and the margin for 'equivalent'."""

    model_config = _STRICT

    direction: Direction | None = None
    equivalence_margin: PositiveFloat | None = None


class Bootstrap(BaseModel):
    model_config = _STRICT

    replicates: int = Field(default=2000, ge=100)
    seed: int = Field(default=0, ge=0)


class AnalysisSettings(BaseModel):
    """How results are analysed. Metric settings are resolved against :data:`METRICS`."""

    model_config = _STRICT

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
            raise _UnknownName(0, name, [m for m in METRICS if m.startswith("val_")])
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
            _check_unique(value)
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
                raise _UnknownName(0, name, list(METRICS))
            resolved[name] = MetricSpec(
                direction=spec.direction or info.direction,
                equivalence_margin=spec.equivalence_margin or info.default_margin,
            )
        return resolved


class Protocol(BaseModel):
    """A validated study protocol. Build it with :func:`load_protocol` or :func:`parse_protocol`."""

    model_config = _STRICT

    name: Annotated[str, Field(pattern=STUDY_NAME, max_length=100)]
    description: str = ""
    seeds: list[Seed] = Field(min_length=1)
    factors: Factors
    control: Name
    #: Options per dataset, e.g. ``{cifar10: {path: ~/data/cifar-10-batches-py}}``. Options
    #: that change the data are part of trial identity; ``path`` only locates it.
    datasets: dict[str, dict[str, Any] | None] = Field(default={})
    #: Options per architecture, e.g. ``{mlp: {width: 512, depth: 3}}`` (see
    #: ``bnstudy.arch_options``); those not at their defaults are part of trial identity.
    architectures: dict[str, dict[str, Any] | None] = Field(default={})
    #: Named pre-training stages, the levels of the ``pretrain`` factor besides ``none``.
    pretraining: dict[Name, PretrainStage] = Field(default={})
    #: Combinations not to run: each entry maps factor names to a value or a list of
    #: values; a trial matching every key of an entry is left out.
    exclude: list[dict[str, Any]] = Field(default=[])
    analysis: AnalysisSettings = AnalysisSettings()
    #: Pre-registered claims (see ``bnstudy.hypotheses``); their hashes are recorded with
    #: the first results, and one added later is exploratory.
    hypotheses: list[Hypothesis] = Field(default=[])
    #: Refuse protocols that expand to more trials than this (a guard against typos).
    max_trials: PositiveInt = DEFAULT_MAX_TRIALS
    #: Code that registers the protocol's own networks (see ``bnstudy.plugins``): ``.py``
    #: files, relative to the protocol's folder, or importable module names.
    plugins: list[Annotated[str, Field(pattern=PLUGIN)]] = Field(default=[])
    #: The YAML text the protocol was read from (recorded in every output).
    source_text: str = Field(default="", exclude=True, repr=False)
    #: The folder of the protocol file (plugin files are relative to it); "" if not a file.
    source_dir: str = Field(default="", exclude=True, repr=False)

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(STUDY_NAME, value):
            raise ValueError(
                f"{_show(value)} cannot be a file name (results, report); use letters, digits, "
                "'_', '.' and '-', starting with a letter or digit; free text goes in "
                "'description'"
            )
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a count or a list of seeds; got {value!r}")
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"a seed count must be at least 1, got {value}")
            if value > DEFAULT_MAX_TRIALS * 10:  # never materialise a billion seeds
                raise ValueError(
                    f"a seed count of {value} is beyond any study this tool can run "
                    f"(at most {DEFAULT_MAX_TRIALS * 10})"
                )
            return range(value)
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, values: list[int]) -> list[int]:
        return _check_unique(values)

    @model_validator(mode="after")
    def _control_and_moderators(self) -> Protocol:
        heads = getattr(self.factors, TREATMENT)
        if self.control not in heads:
            raise _FieldError(
                ("control",),
                f"{self.control!r} is not among the {TREATMENT}s; allowed: {', '.join(heads)}",
            )
        if len(heads) < 2:
            raise _FieldError(
                ("factors", TREATMENT),
                f"needs the control and at least one variant to compare; got {heads}",
            )
        allowed = [f for f in Factors.model_fields if f != TREATMENT]
        for i, m in enumerate(self.analysis.moderators or []):
            if m not in allowed:
                raise _FieldError(
                    ("analysis", "moderators", i),
                    f"{m!r} is not a factor; allowed: {', '.join(allowed)}",
                )
        for name, transform in self.analysis.transforms.items():
            if name not in allowed:
                raise _FieldError(
                    ("analysis", "transforms", name),
                    f"{name!r} is not a factor; allowed: {', '.join(allowed)}",
                )
            levels = getattr(self.factors, name)
            if transform == "log" and not all(isinstance(v, int | float) and v > 0 for v in levels):
                raise _FieldError(
                    ("analysis", "transforms", name),
                    f"log needs positive numeric levels; {name} has {_show(levels)}",
                )
        for i, name in enumerate(self.analysis.tune):
            if name not in allowed or name == "seed":
                raise _FieldError(
                    ("analysis", "tune", i),
                    f"{name!r} is not a factor; allowed: {', '.join(allowed)}",
                )
        self._check_datasets()
        self._check_head_options()
        self._check_architectures()
        self._check_pretraining()
        self._check_exclusions()
        self._check_hypotheses()
        self._check_size()
        return self

    def _check_datasets(self) -> None:
        levels = self.factors.dataset
        staged = [s.dataset for s in self.pretraining.values() if s.options is None]
        for name in self.datasets:
            if name not in levels and name not in staged:
                raise _FieldError(
                    ("datasets", name),
                    f"{name!r} is not a dataset of this protocol; its datasets: "
                    f"{', '.join(levels)}",
                )
        for name in levels:
            if name not in DATASET_SPECS:  # read back without registries: a future dataset
                continue
            try:
                resolve_options(name, self.datasets.get(name))
            except DatasetError as exc:
                where, _, message = str(exc).partition(": ")
                raise _FieldError(tuple(where.split(".")), message) from None

    def _check_architectures(self) -> None:
        levels = self.factors.architecture
        for name, options in self.architectures.items():
            if name not in levels:
                raise _FieldError(
                    ("architectures", name),
                    f"{name!r} is not an architecture of this protocol; its architectures: "
                    f"{', '.join(levels)}",
                )
            try:
                arch_options.resolve(name, options)
            except arch_options.ArchitectureOptionError as exc:
                where, _, message = str(exc).partition(": ")
                raise _FieldError(tuple(where.split(".")), message) from None

    def architecture_options(self, name: str) -> dict[str, int]:
        """Every option of architecture ``name`` (given ones checked, the rest at defaults)."""
        return arch_options.resolve(name, self.architectures.get(name))

    def dataset_options(self, name: str) -> dict[str, Any]:
        """Every option of dataset ``name`` (given ones checked, the rest at defaults)."""
        return resolve_options(name, self.datasets.get(name))

    def _check_pretraining(self) -> None:
        if NO_PRETRAIN in self.pretraining:
            raise _FieldError(
                ("pretraining", NO_PRETRAIN), f"{NO_PRETRAIN!r} means no pre-training; rename it"
            )
        for i, level in enumerate(self.factors.pretrain):
            if level != NO_PRETRAIN and level not in self.pretraining:
                allowed = ", ".join([NO_PRETRAIN, *self.pretraining])
                raise _FieldError(
                    ("factors", "pretrain", i),
                    f"{level!r} is not a stage of the pretraining section; allowed: {allowed}",
                )
        for name, stage in self.pretraining.items():
            if stage.dataset not in DATASET_SPECS:  # read back without registries
                continue
            try:
                self.stage_options(name)
            except DatasetError as exc:
                message = str(exc).partition(": ")[2]
                raise _FieldError(("pretraining", name, "options"), message) from None
        seen: dict[str, str] = {}
        for level in self.factors.pretrain:
            first = seen.setdefault(self.stage_identity(level), level)
            if first != level:
                raise _FieldError(
                    ("pretraining", level),
                    f"the same settings as stage {first!r}: their trials would be the same",
                )

    def stage_options(self, name: str) -> dict[str, Any]:
        """Every option of pre-training stage ``name``'s dataset (its own, or ``datasets:``)."""
        stage = self.pretraining[name]
        given = stage.options if stage.options is not None else self.datasets.get(stage.dataset)
        return resolve_options(stage.dataset, given)

    def stage_identity(self, name: str) -> str:
        """Canonical JSON of what pre-training stage ``name`` does ("" for ``none``).

        Its settings, not its name: renaming a stage keeps its trials, changing it does not.
        """
        if name == NO_PRETRAIN:
            return ""
        stage = self.pretraining[name]
        given = stage.options if stage.options is not None else self.datasets.get(stage.dataset)
        data = identity_options(stage.dataset, given) if stage.dataset in DATASET_SPECS else {}
        settings = stage.model_dump(exclude={"options"})
        settings["data_options"] = (
            json.dumps(data, sort_keys=True, separators=(",", ":")) if data else ""
        )
        return json.dumps(settings, sort_keys=True, separators=(",", ":"))

    def _check_exclusions(self) -> None:
        factors = list(Factors.model_fields)
        for i, entry in enumerate(self.exclude):
            if not entry:
                raise _FieldError(("exclude", i), "an empty entry would exclude every trial")
            for key, value in entry.items():
                if key not in factors:
                    raise _FieldError(("exclude", i, key), str(_UnknownName(0, key, factors)))
                levels = getattr(self.factors, key)
                for v in _as_list(value):
                    if v not in levels:
                        raise _FieldError(
                            ("exclude", i, key),
                            f"{_show(v)} is not a level of {key}; levels: {_show(levels)}",
                        )

    def _check_hypotheses(self) -> None:
        """Ids unique; arms among the heads (or the arms head options make); ``where`` and
        ``interaction`` name factors and their levels (as ``exclude`` does): a claim about a
        condition never run is a typo."""
        arms = list(getattr(self.factors, TREATMENT))
        if self.arm_options:  # e.g. bn[bn_momentum=0.01]: an arm a hypothesis may name
            arms += [a for a in (self.control_arm, *self.variant_arms) if a not in arms]
        factors = [f for f in Factors.model_fields if f != TREATMENT]
        seen: set[str] = set()
        for i, h in enumerate(self.hypotheses):
            if h.id in seen:
                raise _FieldError(("hypotheses", i, "id"), f"duplicate hypothesis id {h.id!r}")
            seen.add(h.id)
            for role in ("variant", "control"):
                if getattr(h, role) not in arms:
                    raise _FieldError(
                        ("hypotheses", i, role),
                        f"{getattr(h, role)!r} is not among the {TREATMENT}s; allowed: "
                        f"{', '.join(arms)}",
                    )
            if h.estimand == "tuned" and not self.analysis.tune:
                raise _FieldError(
                    ("hypotheses", i, "estimand"),
                    "tuned needs tuning factors (analysis.tune); this protocol tunes none",
                )
            levels_of = [(("where", k), k, v) for k, v in h.where.items()]
            if (x := h.interaction) is not None:
                if x.factor not in factors:
                    raise _FieldError(
                        ("hypotheses", i, "interaction", "factor"),
                        str(_UnknownName(0, x.factor, factors)),
                    )
                ends = ("low", "high")
                levels_of += [(("interaction", e), x.factor, [getattr(x, e)]) for e in ends]
            for loc, key, values in levels_of:
                if key not in factors:
                    raise _FieldError(("hypotheses", i, *loc), str(_UnknownName(0, key, factors)))
                levels = getattr(self.factors, key)
                for v in values:
                    if v not in levels:
                        raise _FieldError(
                            ("hypotheses", i, *loc),
                            f"{_show(v)} is not a level of {key}; levels: {_show(levels)}",
                        )
            # Levels checked above, so they are hashable scalars here.
            inside = x is None or x.factor not in h.where
            if not inside and not {x.low, x.high} <= set(h.where[x.factor]):
                raise _FieldError(
                    ("hypotheses", i, "where", x.factor),
                    f"leaves out level {x.low!r} or {x.high!r} of the interaction",
                )

    def _check_size(self) -> None:
        """Refuse more than ``max_trials`` trials, counted without expanding the seeds."""
        gross = len(self.seeds) * self.factors.count()
        if gross <= self.max_trials:
            return
        enumerable = self.exclude and self.factors.count() <= 10 * DEFAULT_MAX_TRIALS
        if enumerable and len(self.seeds) * len(self.combinations()) <= self.max_trials:
            return
        raise _FieldError(
            ("max_trials",),
            f"the protocol expands to {self.n_trials_bound()} trials, more than max_trials = "
            f"{self.max_trials}; raise max_trials in the protocol if that is intended",
        )

    def n_trials_bound(self) -> str:
        gross = len(self.seeds) * self.factors.count()
        return f"{gross:,}" if not self.exclude else f"up to {gross:,}"

    # ----------------------------------------------------------------------------------

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    def plugin_entries(self) -> tuple[str, ...]:
        """``plugins`` with each file made absolute (workers may start in another folder)."""
        return _resolve_plugins(self.plugins, Path(self.source_dir or "."))

    @property
    def variants(self) -> list[str]:
        return [h for h in getattr(self.factors, TREATMENT) if h != self.control]

    def design(self) -> Design:
        """The plain-data design description ``stats`` and ``report`` read.

        When head options belong to the arms (see :meth:`arm_options`), the treatment is the
        derived ``arm`` column (see :func:`arm_of`) instead of ``head``; otherwise the design
        is exactly what it was before head options existed.
        """
        a = self.analysis
        arms = self.arm_options
        return Design(
            treatment=ARM if arms else TREATMENT,
            control=self.control_arm if arms else self.control,
            variants=tuple(self.variant_arms if arms else self.variants),
            conditions=tuple(f for f in Factors.model_fields if f != TREATMENT and f not in arms),
            moderators={
                m: a.transforms.get(m, DEFAULT_TRANSFORMS.get(m, "identity"))
                for m in self.moderators
            },
            metrics={
                name: MetricDesign(spec.direction, spec.equivalence_margin)
                for name, spec in a.metrics.items()
            },
            confidence=a.confidence,
            correction=a.correction,
            family=a.family,
            bootstrap_replicates=a.bootstrap.replicates,
            bootstrap_seed=a.bootstrap.seed,
            failed_score=a.failed_score,
            tuning=tuple(a.tune),
            select_by=a.select_by if a.tune else None,
        )

    @property
    def moderators(self) -> list[str]:
        if self.analysis.moderators is not None:
            return list(self.analysis.moderators)
        arms = self.arm_options
        return [f for f in self.factors.varying() if f != TREATMENT and f not in arms]

    @property
    def arm_options(self) -> tuple[str, ...]:
        """Head options that belong to the arms: set (away from the default) in this protocol
        while some of its heads do not take them.

        Such an option cannot be a condition: the heads that do not take it have one trial
        per seed, shared as the control of every level (``plain`` against ``bn`` at two
        momenta is three arms: ``plain``, ``bn``, ``bn[bn_momentum=0.01]``). An option every
        head takes stays a condition, like any other factor.
        """
        heads = getattr(self.factors, TREATMENT)
        return tuple(
            name
            for name, default in HEAD_OPTION_DEFAULTS.items()
            if getattr(self.factors, name) != [default]
            and not all(name in head_options_of(h) for h in heads)
        )

    @property
    def control_arm(self) -> str:
        """The control's arm label (its head, plus any arm option it takes at a non-default)."""
        return self.variant_arms_and_control()[0]

    @property
    def variant_arms(self) -> list[str]:
        """The arm labels other than the control, in expansion order."""
        return self.variant_arms_and_control()[1]

    def variant_arms_and_control(self) -> tuple[str, list[str]]:
        labels = dict.fromkeys(arm_of(c) for c in self.combinations())
        control = next(a for a in labels if a.split("[")[0] == self.control)
        return control, [a for a in labels if a != control]

    def _check_head_options(self) -> None:
        """An arm option may not vary on the control (the control would split into several
        arms), nor be a moderator, transform or tuning factor (it is no condition)."""
        for name in self.arm_options:
            levels = getattr(self.factors, name)
            if name in head_options_of(self.control) and len(levels) > 1:
                others = [
                    h for h in getattr(self.factors, TREATMENT) if name not in head_options_of(h)
                ]
                raise _FieldError(
                    ("factors", name),
                    f"varies on the control {self.control!r} but head(s) {', '.join(others)} "
                    f"do not take it, so their trials could not pair with each level; give "
                    f"{name} one value, or choose a control that does not take it",
                )
            roles = {
                "moderators": self.analysis.moderators or [],
                "transforms": list(self.analysis.transforms),
                "tune": self.analysis.tune,
            }
            for role, names in roles.items():
                if name in names:
                    raise _FieldError(
                        ("analysis", role),
                        f"{name!r} is part of the arms (some heads do not take it), not a "
                        "condition; its levels are compared as arms against the control",
                    )

    @property
    def n_trials(self) -> int:
        """How many trials :meth:`expand` returns, without building them."""
        return len(self.seeds) * len(self.combinations())

    def combinations(self) -> list[dict[str, Any]]:
        """Factor settings per trial of one seed, exclusions applied, treatment fastest."""
        names = list(Factors.model_fields)
        names.remove(TREATMENT)
        names.append(TREATMENT)
        levels = [getattr(self.factors, n) for n in names]
        combos = (dict(zip(names, combo, strict=True)) for combo in itertools.product(*levels))
        kept = [c for c in combos if not any(_matches(c, e) for e in self.exclude)]
        kept = self._resolve_head_options(kept)
        arch = {name: self._architecture_identity(name) for name in self.factors.architecture}
        kept = [{**c, "arch_options": arch[c["architecture"]]} for c in kept]
        data = {name: self._data_identity(name) for name in self.factors.dataset}
        stages = {name: self.stage_identity(name) for name in self.factors.pretrain}
        return [
            {**c, "data_options": data[c["dataset"]], "pretrain_stage": stages[c["pretrain"]]}
            for c in kept
        ]

    def _architecture_identity(self, name: str) -> str:
        """Canonical JSON of architecture ``name``'s options not at defaults ("" if none)."""
        options = arch_options.identity_options(name, self.architectures.get(name))
        return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""

    def _resolve_head_options(self, combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Options a head does not take at their defaults, duplicates dropped (first kept),
        and each combination's ``arm_options`` (its non-default arm options)."""
        arms = self.arm_options
        unique: dict[tuple, dict[str, Any]] = {}
        for combo in combos:
            resolved = resolve_head_options(combo)
            unique.setdefault(tuple(resolved.items()), resolved)
        return [
            {
                **c,
                "arm_options": ",".join(n for n in arms if c[n] != HEAD_OPTION_DEFAULTS[n]),
            }
            for c in unique.values()
        ]

    def _data_identity(self, name: str) -> str:
        """Canonical JSON of the options that change dataset ``name`` ("" at the defaults)."""
        if name not in DATASET_SPECS:
            return ""
        options = identity_options(name, self.datasets.get(name))
        return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""

    def expand(self) -> list[Trial]:
        """The full factorial design less exclusions: one trial per seed x combination.

        Seeds vary slowest and the treatment fastest, so the arms of a pairing block are
        scheduled next to each other and a partial run holds complete blocks.
        """
        combos = self.combinations()
        return [Trial(seed=seed, **combo) for seed in self.seeds for combo in combos]


def _matches(settings: Mapping[str, Any], exclusion: Mapping[str, Any]) -> bool:
    return all(settings[k] in _as_list(v) for k, v in exclusion.items())


class _FieldError(ValueError):
    def __init__(self, loc: tuple[Any, ...], message: str):
        self.loc = loc
        super().__init__(message)


# --------------------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Trial:
    """Everything that determines one training run's outcome."""

    seed: int
    architecture: str
    head: str
    dataset: str
    imbalance_ratio: float
    train_per_class: int
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    # Settings added after the first release have defaults: a trial at a default is the
    # trial an older protocol meant, and its id must not change (see ``identity``).
    imbalance_profile: str = "exp"
    step_fraction: float = 0.5
    steps: int = 0
    lr_schedule: str = "cosine"
    warmup_frac: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    sampler: str = "instance"
    # Head options (bnstudy.head_options); a head that does not take one holds its default.
    hidden_width: int = 0
    dropout: float = 0.0
    dropout_at: str = "before_norm"
    bn_momentum: float = 0.1
    #: The head options of this trial that belong to its arm rather than its block, comma
    #: separated ("" for none): set on a head the protocol's other heads do not take (``bn``
    #: at ``bn_momentum`` 0.01 against ``plain``), they are left out of the block, so the
    #: one control trial of a seed pairs with every such arm. See :meth:`Protocol.arm_options`.
    arm_options: str = ""
    #: The architecture's options not at their defaults, as canonical JSON ("" for none).
    arch_options: str = ""
    #: The dataset options that change the data, as canonical JSON ("" at their defaults).
    data_options: str = ""
    #: The ``pretrain`` stage's name: a label only, left out of the id (``pretrain_stage``
    #: names the stage by its settings, so renaming a stage keeps its results).
    pretrain: str = NO_PRETRAIN
    #: The pre-training stage's settings as canonical JSON ("" without pre-training).
    pretrain_stage: str = ""

    def settings(self) -> dict[str, Any]:
        """Every setting (the factor columns of the results table)."""
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that name the trial: every setting except those at their defaults.

        Adding a setting with a default therefore leaves every existing trial id, block and
        random stream unchanged, and a results table resumes with nothing to re-run.
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _LABELS
            and (f.default is dataclasses.MISSING or getattr(self, f.name) != f.default)
        }

    @property
    def trial_id(self) -> str:
        return _digest(self.identity())

    @property
    def architecture_options(self) -> dict[str, Any]:
        """The architecture options not at their defaults (``arch_options`` read back)."""
        return json.loads(self.arch_options) if self.arch_options else {}

    @property
    def arm(self) -> str:
        """The arm: the head, with the options in ``arm_options``, e.g. ``bn[bn_momentum=0.01]``."""
        return arm_of(self.settings())

    def _block_settings(self) -> dict[str, Any]:
        """The identity less the treatment: the head and the options that belong to its arm."""
        settings = self.identity()
        del settings[TREATMENT]
        for name in _split(self.arm_options):
            settings.pop(name, None)
        settings.pop("arm_options", None)
        return settings

    @property
    def block_id(self) -> str:
        """Shared by trials that differ only in the treatment (the arms of one comparison)."""
        return _digest(self._block_settings())

    @property
    def condition_id(self) -> str:
        """Shared by all blocks of one design cell (everything but treatment and seed)."""
        settings = self._block_settings()
        del settings["seed"]
        return _digest(settings)

    def stream_seed(self, stream: str) -> int:
        """An independent 63-bit seed for one random stream of this trial.

        Derived from the block's settings and the stream name only, so arms of one block
        draw identical subsets, data orders and initial weights for their shared layers.
        """
        settings = self._block_settings()
        return int(_digest({"block": settings, "stream": stream}), 16) >> 1


def _split(names: str) -> list[str]:
    return [n for n in names.split(",") if n]


def _show_level(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def arm_of(settings: Mapping[str, Any]) -> str:
    """The arm of a trial from its settings (a results row will do): its ``head``, followed
    by the options named in its ``arm_options`` with their values, e.g.
    ``bn[bn_momentum=0.01]``. Rows without ``arm_options`` (older tables) are their head."""
    names = _split(settings.get("arm_options") or "")
    if not names:
        return str(settings[TREATMENT])
    shown = ",".join(f"{n}={_show_level(settings[n])}" for n in names)
    return f"{settings[TREATMENT]}[{shown}]"


#: Trial fields that only label another field's content, and so are no part of its id.
_LABELS = frozenset({"pretrain"})


def _digest(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_protocol(path: str | Path, known: Mapping[str, Sequence[str]] | None = None) -> Protocol:
    """Read and validate a protocol file; raises :class:`ProtocolError` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{path}: protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol file: {exc}") from None
    return parse_protocol(
        text, source=str(path), known=known, source_dir=str(path.resolve().parent)
    )


def plugins_of(path: str | Path) -> tuple[str, ...]:
    """The ``plugins`` of protocol file ``path``, read before the rest is validated: the
    names and head options the rest refers to may come from them. () when the file has none,
    or cannot be read as a protocol (its validation then says why)."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return ()
    entries = data.get("plugins") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return ()
    if not all(isinstance(e, str) and re.fullmatch(PLUGIN, e) for e in entries):
        return ()
    return _resolve_plugins(entries, Path(path).resolve().parent)


def protocol_fields(path: str | Path) -> dict[Any, Any] | None:
    """The top-level mapping of ``path`` when its content reads as a protocol (YAML whose
    mapping has ``factors``), valid or not; else None. For telling a user who gave a protocol
    where a results file belongs which command takes it."""
    try:
        with open(path, "rb") as handle:  # a protocol is a few KiB: no need to read a big file
            head = handle.read(_PROTOCOL_MAX_BYTES + 1)
        if len(head) > _PROTOCOL_MAX_BYTES:
            return None
        data = yaml.load(head.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) and "factors" in data else None


_PROTOCOL_MAX_BYTES = 1 << 20


def _resolve_plugins(entries: Sequence[str], base: Path) -> tuple[str, ...]:
    return tuple(str((base / e).resolve()) if e.endswith(".py") else e for e in entries)


def parse_protocol(
    text: str,
    source: str = "<protocol>",
    known: Mapping[str, Sequence[str]] | None = None,
    source_dir: str = "",
) -> Protocol:
    """Validate protocol YAML text.

    ``known`` maps ``architecture``, ``head`` and ``dataset`` to their registered names;
    without it names are not checked (used when reading a protocol back from a results file).
    """
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProtocolError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        raise ProtocolError(f"{source}: the protocol is empty (no fields, only comments or blanks)")
    if not isinstance(data, dict):
        raise ProtocolError(
            f"{source}: expected a mapping of protocol fields at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        return Protocol.model_validate(
            {**data, "source_text": text, "source_dir": source_dir}, context=dict(known or {})
        )
    except ValidationError as exc:
        raise ProtocolError(_one_line(exc, source)) from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping.

    Plain YAML loading keeps the last of ``seeds: 2`` ... ``seeds: 7`` silently; in a
    pre-registered protocol that is a mistake to point at, not to guess about.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {_show(key)} (first given on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def _one_line(exc: ValidationError, source: str) -> str:
    """Every validation error, one self-contained line each: file, field path, message."""
    return "\n".join(_describe(error, source) for error in exc.errors(include_url=False))


def _describe(first: Any, source: str) -> str:
    loc = tuple(first["loc"])
    raw = first.get("ctx", {}).get("error")
    if isinstance(raw, _FieldError):
        loc = raw.loc
        message = str(raw)
    elif isinstance(raw, _UnknownName):
        loc = (*loc, raw.index) if loc[:1] == ("factors",) else loc
        message = str(raw)
    elif first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = did_you_mean(loc[-1], allowed)
        message = f"unknown key {loc[-1]!r}{hint}; allowed: {', '.join(allowed)}"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "value_error":  # raised by our validators, already explicit
        message = first["msg"].removeprefix("Value error, ")
    elif first["type"] == "too_short":
        message = "must not be empty"
    else:
        message = f"{first['msg'][:1].lower()}{first['msg'][1:]}; got {_show(first.get('input'))}"
    return f"{source}: {_path(loc) or '<top>'}: {message}"


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


#: Renders a value for a message without walking all of it: an alias bomb in the YAML
#: expands to a structure far too large to repr whole.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 6, 6, 60, 60


def _show(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` inside a Protocol."""
    model: Any = Protocol
    for part in loc:
        if isinstance(part, int) and model is Hypothesis:  # an element of hypotheses
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            break
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif part == "metrics":
            model = MetricSpec
        elif part == "pretraining":
            model = PretrainStage
        elif part == "hypotheses":
            model = Hypothesis
        elif part == "interaction":
            model = Interaction
    return [f for f in model.model_fields if f not in ("source_text", "source_dir")]
