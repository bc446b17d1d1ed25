"""The ``factors:`` section: every factor a protocol can vary, with its levels and default.

Their full factorial product (less the exclusions) times the seeds is the set of trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from bnstudy.spec.errors import FieldError, UnknownName, show
from bnstudy.spec.fields import (
    STRICT,
    Fraction,
    Momentum,
    Name,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Ratio,
    as_list,
    check_unique,
)
from bnstudy.spec.trial import ALL_TRAIN, NO_PRETRAIN

_MILESTONES = ("factors", "lr_milestones")
#: How a protocol writes the ``train_per_class`` level :data:`~bnstudy.spec.trial.ALL_TRAIN`.
ALL_LEVEL = "all"
_TRAIN_PER_CLASS = ("factors", "train_per_class")


def train_per_class_level(value: Any) -> Any:
    """A ``train_per_class`` level as trials hold it: ``all`` becomes :data:`ALL_TRAIN` (0);
    a count stays as it is (:class:`Factors` refuses one below 1, or another string)."""
    return ALL_TRAIN if value == ALL_LEVEL else value


def spelled_level(factor: str, value: Any) -> Any:
    """A level as a protocol writes it: ``train_per_class`` :data:`ALL_TRAIN` is ``all``."""
    return ALL_LEVEL if factor == _TRAIN_PER_CLASS[1] and value == ALL_TRAIN else value


def spelled_levels(factor: str, levels: Iterable[Any]) -> list[Any]:
    """Levels as a protocol writes them (:func:`spelled_level`)."""
    return [spelled_level(factor, v) for v in levels]


def not_a_level(factor: str, value: Any, levels: Iterable[Any], of: str = "") -> str:
    """The message for ``value`` named where a level of ``factor`` (``of`` when given: "the
    treatment dropout") belongs, levels spelled as a protocol writes them."""
    named = show(spelled_level(factor, value))
    return (
        f"{named} is not a level of {of or factor}; levels: {show(spelled_levels(factor, levels))}"
    )


def with_all_train(data: Any) -> Any:
    """A protocol's raw data with ``train_per_class: all`` written as trials hold it wherever
    a level is named besides ``factors``: ``exclude`` entries, hypotheses' ``where`` and
    ``interaction`` and, when ``train_per_class`` is the treatment, its ``control`` and the
    hypotheses' ``variant`` and ``control``; so ``exclude: [{train_per_class: all,
    imbalance_ratio: 10}]`` matches and ``treatment: {factor: train_per_class, control: all}``
    names the level."""
    if not isinstance(data, dict):
        return data
    name = _TRAIN_PER_CLASS[1]
    out = dict(data)
    if isinstance(out.get("exclude"), list):
        out["exclude"] = [
            {**e, name: _levels(e[name])} if isinstance(e, dict) and name in e else e
            for e in out["exclude"]
        ]
    treatment = out.get("treatment")
    is_treatment = isinstance(treatment, dict) and treatment.get("factor") == name
    if is_treatment and "control" in treatment:
        out["treatment"] = {**treatment, "control": train_per_class_level(treatment["control"])}
    if isinstance(out.get("hypotheses"), list):
        out["hypotheses"] = [_hypothesis_with_all_train(h, is_treatment) for h in out["hypotheses"]]
    return out


def _levels(value: Any) -> Any:
    """One level or a list of them, as :func:`train_per_class_level` writes each."""
    if isinstance(value, list):
        return [train_per_class_level(v) for v in value]
    return train_per_class_level(value)


def _hypothesis_with_all_train(h: Any, arms: bool) -> Any:
    """``h`` with ``all`` held as trials hold it; in ``variant`` and ``control`` too when
    ``arms`` (``train_per_class`` is the treatment, so they name its levels)."""
    name = _TRAIN_PER_CLASS[1]
    if not isinstance(h, dict):
        return h
    h = dict(h)
    if arms:
        h.update({k: train_per_class_level(h[k]) for k in ("variant", "control") if k in h})
    if isinstance(h.get("where"), dict) and name in h["where"]:
        h["where"] = {**h["where"], name: _levels(h["where"][name])}
    x = h.get("interaction")
    if isinstance(x, dict) and x.get("factor") == name:
        h["interaction"] = {k: _levels(v) if k in ("low", "high") else v for k, v in x.items()}
    return h


def milestone_levels(value: Any) -> list[str]:
    """The levels of ``lr_milestones`` as canonical strings, ``"160,180"``.

    A list of integers (``[160, 180]``), one integer or a string (``"160,180"``, as a results
    table holds it) is one level; a list of lists or strings, several. Every milestone is a
    positive integer, strictly increasing within its level.
    """
    if isinstance(value, list) and any(isinstance(v, list | str) for v in value):
        return [_milestone_level(v) for v in value]
    return [_milestone_level(value)]


def _milestone_level(value: Any) -> str:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise FieldError(_MILESTONES, f"milestones must be whole epochs; got {value!r}")
        value = [int(p) for p in parts]
    epochs = value if isinstance(value, list) else [value]
    for m in epochs:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise FieldError(
                _MILESTONES, f"milestones must be positive whole epochs; got {m!r} in {value!r}"
            )
    if epochs != sorted(set(epochs)):
        raise FieldError(_MILESTONES, f"milestones must be strictly increasing; got {epochs}")
    return ",".join(str(m) for m in epochs)


class Factors(BaseModel):
    """Every factor is a non-empty list of values (a single value means a list of one).

    Adding a factor: add it here *and* to :class:`~bnstudy.spec.trial.Trial`, at the same
    default (tests/spec/test_factors_match_trial.py checks both); ``train.run_trial`` reads it.

    Head options (``hidden_width``, ``dropout``, ``dropout_at``, ``bn_momentum``) apply only
    to the heads that take them (``bnstudy.spec.head_options``): elsewhere they are set to
    their defaults on expansion and duplicates dropped. One that every head of the protocol
    takes is a condition; one that some heads do not take belongs to the arm
    (:meth:`Protocol.arm_options`).
    """

    model_config = STRICT

    architecture: list[Name] = Field(min_length=1)
    head: list[Name] = Field(min_length=1)
    dataset: list[Name] = Field(min_length=1)
    imbalance_ratio: list[Ratio] = Field(default=[1.0], min_length=1)
    #: Images of the largest class (``n_max`` of the imbalance profile), or ``all``: the
    #: dataset's whole training pool (after the validation split), not subsampled and not
    #: balanced, so only at ``imbalance_ratio`` 1. Held as ``ALL_TRAIN`` (0), see Trial.
    train_per_class: list[NonNegativeInt] = Field(default=[500], min_length=1)
    #: Training length in passes over the training set; 0 when ``steps`` sets it instead.
    epochs: list[NonNegativeInt] = Field(default=[10], min_length=1)
    batch_size: list[PositiveInt] = Field(default=[64], min_length=1)
    lr: list[PositiveFloat] = Field(default=[0.05], min_length=1)
    #: ``sgd``, ``adamw`` or an optimiser a plugin registered (``bnstudy.training.optimizers``).
    optimizer: list[Name] = Field(default=["sgd"], min_length=1)
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
    #: Epochs at which a ``step`` schedule multiplies the learning rate by ``lr_decay`` (with
    #: ``epochs``). One level is a list of increasing epochs, ``[160, 180]``; several levels a
    #: list of such lists. Stored as ``"160,180"``; ``""`` (the default): the first release's
    #: milestones, 50% and 75% of the steps after warm-up.
    lr_milestones: list[str] = Field(default=[""], min_length=1)
    #: The factor by which a ``step`` schedule multiplies the learning rate at each milestone.
    lr_decay: list[OpenFraction] = Field(default=[0.1], min_length=1)
    label_smoothing: list[Fraction] = Field(default=[0.0], min_length=1)
    #: Maximum gradient norm (0: no clipping).
    grad_clip: list[NonNegativeFloat] = Field(default=[0.0], min_length=1)
    #: How each pass's batches are drawn (``training.loop``): ``instance`` (a permutation),
    #: ``class_balanced`` (a class uniformly, then an image of it) or ``class_sorted`` (each
    #: batch from one class, two where a class boundary falls inside it).
    sampler: list[Literal["instance", "class_balanced", "class_sorted"]] = Field(
        default=["instance"], min_length=1
    )
    # Head options (bnstudy.spec.head_options): a head that does not take one gets its
    # default, so listing levels never duplicates trials of such heads.
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
    #: ``fp32`` (the default, left out of trial ids) or ``bf16``: forward passes under
    #: ``torch.autocast`` in bfloat16, losses and metrics in float32. Meant for CUDA; the CPU
    #: runs it too, slowly. ``bnstudy run --precision`` replaces these levels.
    precision: list[Literal["fp32", "bf16"]] = Field(default=["fp32"], min_length=1)
    #: The training loss (``training.losses``): ``ce`` (the default, left out of trial ids),
    #: ``cb_reweight`` (Cui et al. 2019), ``drw`` (Cao et al. 2019) or ``logit_adjusted``
    #: (Menon et al. 2021).
    loss: list[Literal["ce", "cb_reweight", "drw", "logit_adjusted"]] = Field(
        default=["ce"], min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _steps_or_epochs(cls, data: Any) -> Any:
        """``steps:`` replaces ``epochs:``; giving both is ambiguous."""
        if not isinstance(data, dict) or "steps" not in data:
            return data
        steps = as_list(data["steps"])
        if any(s != 0 for s in steps):
            if "epochs" in data:
                raise FieldError(
                    ("factors", "steps"),
                    "give the training length as epochs or as steps, not both",
                )
            if 0 in steps:
                raise FieldError(("factors", "steps"), "steps must be at least 1")
            return {**data, "epochs": [0]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _milestone_levels(cls, data: Any) -> Any:
        """``lr_milestones: [160, 180]`` is one level; a list of lists, several."""
        if not isinstance(data, dict) or "lr_milestones" not in data:
            return data
        return {**data, "lr_milestones": milestone_levels(data["lr_milestones"])}

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return as_list(value)

    @field_validator("train_per_class", mode="before")
    @classmethod
    def _count_or_all(cls, value: Any) -> Any:
        """A positive count, or ``all`` (held as ``ALL_TRAIN``); 0 is not a way to write it."""
        levels = as_list(value)
        for v in levels:
            is_count = isinstance(v, int | float) and not isinstance(v, bool) and v >= 1
            if v != ALL_LEVEL and not is_count:
                raise FieldError(
                    _TRAIN_PER_CLASS,
                    f"expected a whole number of images per class (at least 1) or "
                    f"{ALL_LEVEL!r} (the whole training pool); got {v!r}",
                )
        return [train_per_class_level(v) for v in levels]

    @field_validator("*")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        return check_unique(values)

    @field_validator("architecture", "head", "dataset", "optimizer")
    @classmethod
    def _registered(cls, values: list[str], info: ValidationInfo) -> list[str]:
        known = (info.context or {}).get(info.field_name)
        if known is None:  # parsing without registries (e.g. from a results file)
            return values
        for i, v in enumerate(values):
            if v not in known:
                raise UnknownName(i, v, known)
        return values

    @model_validator(mode="after")
    def _a_training_length(self) -> Factors:
        if self.steps == [0] and 0 in self.epochs:
            raise FieldError(("factors", "epochs"), "epochs must be at least 1")
        self._check_step_schedule()
        return self

    def _check_step_schedule(self) -> None:
        """Milestones and a decay apply to a ``step`` schedule only, milestones (epochs) to
        a training length in epochs, every milestone before the end of training."""
        where = ("factors", "lr_milestones")
        milestones = [m for m in self.lr_milestones if m]
        if (milestones or self.lr_decay != [0.1]) and self.lr_schedule != ["step"]:
            name = "lr_milestones" if milestones else "lr_decay"
            raise FieldError(
                ("factors", name),
                f"{name} applies to lr_schedule: step only; got lr_schedule {self.lr_schedule}",
            )
        if not milestones:
            return
        if self.steps != [0]:
            raise FieldError(
                where, "lr_milestones are epochs: give the training length as epochs, not steps"
            )
        shortest = min(self.epochs)
        for level in milestones:
            last = int(level.split(",")[-1])
            if last >= shortest:
                raise FieldError(
                    where,
                    f"milestone {last} is not within the training length of {shortest} epochs "
                    f"(each must be less than the epochs)",
                )

    def count(self) -> int:
        """The number of factor combinations (without expanding them)."""
        return math.prod(len(getattr(self, name)) for name in type(self).model_fields)

    def varying(self) -> list[str]:
        """Names of the factors that take more than one value."""
        return [name for name in type(self).model_fields if len(getattr(self, name)) > 1]
