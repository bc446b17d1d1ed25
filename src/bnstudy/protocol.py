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
import re
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

#: The factor that defines the arms of a pairing block. Everything else is the condition.
TREATMENT = "head"


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
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v!r} in {values!r}")
        seen.append(v)
    return values


Name = Annotated[str, Field(min_length=1)]
Ratio = Annotated[float, Field(ge=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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
    epochs: list[PositiveInt] = Field(default=[10], min_length=1)
    batch_size: list[PositiveInt] = Field(default=[64], min_length=1)
    lr: list[PositiveFloat] = Field(default=[0.05], min_length=1)
    optimizer: list[Literal["sgd", "adamw"]] = Field(default=["sgd"], min_length=1)
    weight_decay: list[NonNegativeFloat] = Field(default=[5e-4], min_length=1)

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

    name: Name
    description: str = ""
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    factors: Factors
    control: Name
    analysis: AnalysisSettings = AnalysisSettings()
    #: The YAML text the protocol was read from (recorded in every output).
    source_text: str = Field(default="", exclude=True, repr=False)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a count or a list of seeds; got {value!r}")
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"a seed count must be at least 1, got {value}")
            return list(range(value))
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
        return self

    # ----------------------------------------------------------------------------------

    @property
    def slug(self) -> str:
        """File-system-safe version of the name, used for output paths."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-.")
        return slug or "study"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    @property
    def variants(self) -> list[str]:
        return [h for h in getattr(self.factors, TREATMENT) if h != self.control]

    @property
    def moderators(self) -> list[str]:
        if self.analysis.moderators is not None:
            return list(self.analysis.moderators)
        return [f for f in self.factors.varying() if f != TREATMENT]

    def expand(self) -> list[Trial]:
        """The full factorial design: one trial per seed x factor combination.

        Seeds vary slowest and the treatment fastest, so the arms of a pairing block are
        scheduled next to each other and a partial run holds complete blocks.
        """
        names = list(Factors.model_fields)
        names.remove(TREATMENT)
        names.append(TREATMENT)
        levels = [getattr(self.factors, n) for n in names]
        return [
            Trial(seed=seed, **dict(zip(names, combo, strict=True)))
            for seed in self.seeds
            for combo in itertools.product(*levels)
        ]


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

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def trial_id(self) -> str:
        return _digest(self.settings())

    @property
    def block_id(self) -> str:
        """Shared by trials that differ only in the treatment (the arms of one comparison)."""
        settings = self.settings()
        del settings[TREATMENT]
        return _digest(settings)

    @property
    def condition_id(self) -> str:
        """Shared by all blocks of one design cell (everything but treatment and seed)."""
        settings = self.settings()
        del settings[TREATMENT], settings["seed"]
        return _digest(settings)

    def stream_seed(self, stream: str) -> int:
        """An independent 63-bit seed for one random stream of this trial.

        Derived from the block's settings and the stream name only, so arms of one block
        draw identical subsets, data orders and initial weights for their shared layers.
        """
        settings = self.settings()
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
        data = yaml.safe_load(text)
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


def _one_line(exc: ValidationError, source: str) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
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
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {_path(loc) or '<top>'}: {message}{more}"


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    text = repr(value)
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
