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
import difflib
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

from bnstudy.catalogue import METRICS, Direction
from bnstudy.data.spec import SPECS as DATASET_SPECS
from bnstudy.data.spec import DatasetError, identity_options, resolve_options
from bnstudy.design import Design, MetricDesign, Transform

#: The factor that defines the arms of a pairing block. Everything else is the condition.
TREATMENT = "head"
#: The scale a moderator's slope is estimated on when the protocol does not say: ratios
#: act multiplicatively (10 -> 100 is like 1 -> 10).
DEFAULT_TRANSFORMS: dict[str, Transform] = {"imbalance_ratio": "log"}


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
#: A study name is also its file name (results, report), so it must be a safe one.
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Factors(BaseModel):
    """Every factor is a non-empty list of values (a single value means a list of one).

    Adding a factor: add it here *and* to :class:`Trial`; ``train.run_trial`` reads it.
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
        close = difflib.get_close_matches(value, list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown name {value!r}{hint}; allowed: {', '.join(sorted(known))}")


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
    #: Combinations not to run: each entry maps factor names to a value or a list of
    #: values; a trial matching every key of an entry is left out.
    exclude: list[dict[str, Any]] = Field(default=[])
    analysis: AnalysisSettings = AnalysisSettings()
    #: Refuse protocols that expand to more trials than this (a guard against typos).
    max_trials: PositiveInt = DEFAULT_MAX_TRIALS
    #: The YAML text the protocol was read from (recorded in every output).
    source_text: str = Field(default="", exclude=True, repr=False)

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
        self._check_exclusions()
        self._check_size()
        return self

    def _check_datasets(self) -> None:
        levels = self.factors.dataset
        for name in self.datasets:
            if name not in levels:
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

    def dataset_options(self, name: str) -> dict[str, Any]:
        """Every option of dataset ``name`` (given ones checked, the rest at defaults)."""
        return resolve_options(name, self.datasets.get(name))

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

    @property
    def variants(self) -> list[str]:
        return [h for h in getattr(self.factors, TREATMENT) if h != self.control]

    def design(self) -> Design:
        """The plain-data design description ``stats`` and ``report`` read."""
        a = self.analysis
        return Design(
            treatment=TREATMENT,
            control=self.control,
            variants=tuple(self.variants),
            conditions=tuple(f for f in Factors.model_fields if f != TREATMENT),
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
        return [f for f in self.factors.varying() if f != TREATMENT]

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
        data = {name: self._data_identity(name) for name in self.factors.dataset}
        return [{**c, "data_options": data[c["dataset"]]} for c in kept]

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
    #: The dataset options that change the data, as canonical JSON ("" at their defaults).
    data_options: str = ""

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
            if f.default is dataclasses.MISSING or getattr(self, f.name) != f.default
        }

    @property
    def trial_id(self) -> str:
        return _digest(self.identity())

    @property
    def block_id(self) -> str:
        """Shared by trials that differ only in the treatment (the arms of one comparison)."""
        settings = self.identity()
        del settings[TREATMENT]
        return _digest(settings)

    @property
    def condition_id(self) -> str:
        """Shared by all blocks of one design cell (everything but treatment and seed)."""
        settings = self.identity()
        del settings[TREATMENT], settings["seed"]
        return _digest(settings)

    def stream_seed(self, stream: str) -> int:
        """An independent 63-bit seed for one random stream of this trial.

        Derived from the block's settings and the stream name only, so arms of one block
        draw identical subsets, data orders and initial weights for their shared layers.
        """
        settings = self.identity()
        del settings[TREATMENT]
        return int(_digest({"block": settings, "stream": stream}), 16) >> 1


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
    return parse_protocol(text, source=str(path), known=known)


def parse_protocol(
    text: str, source: str = "<protocol>", known: Mapping[str, Sequence[str]] | None = None
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
        return Protocol.model_validate({**data, "source_text": text}, context=dict(known or {}))
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
        message = f"unknown key {loc[-1]!r}; allowed: {', '.join(allowed)}"
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
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            break
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif part == "metrics":
            model = MetricSpec
    return [f for f in model.model_fields if f != "source_text"]
