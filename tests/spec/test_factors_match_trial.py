"""``Factors`` (a protocol's levels, pydantic) and ``Trial`` (one trial's settings, a
dataclass) declare the same settings, at the same defaults and of the same types: a factor
added to one and not the other, or at another default, would expand into trials that train
something else than the protocol says, or change every trial id."""

from __future__ import annotations

import dataclasses
import typing

from bnstudy.spec.factors import Factors
from bnstudy.spec.trial import Trial

#: Trial fields that are no factor: the seed, and the settings expansion derives from the
#: other sections (``architectures:``, ``datasets:``, ``pretraining:``, ``treatment:``,
#: ``trial:``, the arms).
NOT_FACTORS = {
    "seed",
    "arm_options",
    "arch_options",
    "data_options",
    "pretrain_stage",
    "treatment",
    "trial_function",
}
#: Factors of the first release with a protocol default but none in ``Trial``: every trial id
#: holds them, so a ``Trial`` default now would drop them from ids and change every id.
FIRST_RELEASE = {
    "imbalance_ratio",
    "train_per_class",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
}

TRIAL_FIELDS = {f.name: f for f in dataclasses.fields(Trial)}


def _element_type(name: str) -> str:
    """The Python type of one level of factor ``name`` (``list[Annotated[float, ...]]``:
    ``float``; a ``Literal`` of strings: ``str``)."""
    (element,) = typing.get_args(Factors.model_fields[name].annotation)
    if typing.get_origin(element) is typing.Annotated:
        element = typing.get_args(element)[0]
    if typing.get_origin(element) is typing.Literal:
        return type(typing.get_args(element)[0]).__name__
    return element.__name__


def test_every_factor_is_a_trial_setting_and_back():
    assert set(Factors.model_fields) == set(TRIAL_FIELDS) - NOT_FACTORS
    assert set(TRIAL_FIELDS) >= NOT_FACTORS


def test_factors_and_trial_settings_have_the_same_defaults():
    for name, factor in Factors.model_fields.items():
        default = TRIAL_FIELDS[name].default
        if factor.is_required():
            assert default is dataclasses.MISSING, name
        elif name in FIRST_RELEASE:
            assert default is dataclasses.MISSING, f"{name}: a default would change every id"
        else:
            (level,) = factor.default
            assert default == level and type(default) is type(level), (name, default, level)
    assert set(Factors.model_fields) >= FIRST_RELEASE


def test_factors_and_trial_settings_have_the_same_types():
    for name in Factors.model_fields:
        assert TRIAL_FIELDS[name].type == _element_type(name), name
