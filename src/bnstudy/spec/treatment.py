"""The treatment: which factor's levels are the arms of a pairing block, and which is the control.

``treatment: {factor: optimizer, control: sgd}`` compares every other level of ``optimizer``
with ``sgd``, paired within blocks that share every other setting (the seed, the data
subset and order, the initial weights' random streams). The default, and what a protocol's
top-level ``control: plain`` is short for, is ``{factor: head, control: plain}``.

Any factor of :class:`~bnstudy.spec.factors.Factors` with two levels or more may be the
treatment, except those :func:`check` refuses, each for a reason it states: ``dataset``
(the arms would be scored on different test sets), a factor ``analysis.tune`` tunes (each
arm is set to its own best level of it), and a head option that some head of the protocol
does not take (its trials would have one arm). ``seed`` is no factor: it is the replication.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator

from bnstudy.spec.errors import FieldError, UnknownName, show
from bnstudy.spec.factors import Factors
from bnstudy.spec.fields import STRICT, Name
from bnstudy.spec.head_options import DEFAULTS as HEAD_OPTION_DEFAULTS
from bnstudy.spec.head_options import applies
from bnstudy.spec.head_options import options_of as head_options_of
from bnstudy.spec.trial import TREATMENT

if TYPE_CHECKING:
    from bnstudy.spec.protocol import Protocol


def _scalar(value: Any) -> Any:
    """A level is one name or one number (a list, a mapping or a boolean is none)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a level: a name or a number; got {show(value)}")
    return value


#: A level as a protocol writes it where a factor's level is named (a treatment's control, a
#: hypothesis' variant and control): a name or a number, matched by :func:`match_level`.
Level = Annotated[str | int | float, BeforeValidator(_scalar)]

#: Factors that cannot be the treatment, and why.
REFUSED = {
    "dataset": (
        "the arms would be scored on different test sets, so their difference is no effect "
        "of anything; keep dataset a condition and compare within each dataset"
    ),
}
#: Why ``seed`` is no treatment.
SEED = "seed is the replication, not a factor: the arms of a pairing block share it"


class Treatment(BaseModel):
    """``treatment: {factor: ..., control: ...}`` (see the module docstring)."""

    model_config = STRICT

    factor: Name
    control: Level


def match_level(value: Any, levels: Sequence[Any]) -> Any | None:
    """The level of ``levels`` that ``value`` names, or None: numbers compare as numbers
    (``0`` names the level ``0.0``, and so does ``"0"``), anything else exactly (or by its
    text: ``160`` names the ``lr_milestones`` level ``"160"``)."""
    for level in levels:
        if _number(level) is not None and _number(value) is not None:
            if _number(level) == _number(value):
                return level
        elif level == value or (isinstance(level, str) and level == str(value)):
            return level
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def eligible() -> list[str]:
    """The factors a treatment may name (before the protocol's own checks)."""
    return [f for f in Factors.model_fields if f not in REFUSED]


def check(p: Protocol) -> None:
    """The treatment names a factor that can be one, with the control among its levels and
    a variant beside it; raises :class:`FieldError` at the field to change."""
    factor = p.treatment_factor
    where = ("treatment", "factor")
    if factor == "seed":
        raise FieldError(where, SEED)
    if factor in REFUSED:
        raise FieldError(where, f"{factor} cannot be the treatment: {REFUSED[factor]}")
    if factor not in Factors.model_fields:
        raise FieldError(where, str(UnknownName(0, factor, eligible())))
    if factor in p.analysis.tune:
        raise FieldError(
            where,
            f"{factor} is tuned (analysis.tune): each arm is set to its own best {factor}, so "
            f"it cannot also be the treatment",
        )
    levels = getattr(p.factors, factor)
    if p.control_level is None:
        if p.treatment is None:  # the short form: its message of the first release
            raise FieldError(
                ("control",),
                f"{p.control!r} is not among the {TREATMENT}s; allowed: {', '.join(levels)}",
            )
        raise FieldError(
            ("treatment", "control"),
            f"{show(p.treatment.control)} is not a level of {factor}; levels: {show(levels)}",
        )
    if len(levels) < 2:
        raise FieldError(
            ("factors", factor),
            f"needs the control and at least one variant to compare; got {show(levels)}",
        )
    if factor in HEAD_OPTION_DEFAULTS:
        _check_head_option(p, factor)


def _check_head_option(p: Protocol, factor: str) -> None:
    """Every head of the protocol takes the treatment option, at every level of the option
    it depends on (``dropout_at`` needs ``dropout`` > 0): a trial where it does not apply is
    built at the default, so its block would hold one arm."""
    for head in p.factors.head:
        if factor not in head_options_of(head):
            takers = [h for h in p.factors.head if factor in head_options_of(h)]
            raise FieldError(
                ("treatment", "factor"),
                f"head {head!r} does not take {factor}, so its trials could not differ in it; "
                f"give heads that take it" + (f" (here: {', '.join(takers)})" if takers else ""),
            )
        for rate in p.factors.dropout:
            if not applies(factor, {"head": head, "dropout": rate}):
                raise FieldError(
                    ("factors", "dropout"),
                    f"{factor} applies only where dropout > 0; at dropout {rate:g} its arms "
                    "would be one trial; give dropout levels above 0",
                )


def dependent_options(p: Protocol) -> tuple[str, ...]:
    """The head options, set away from their defaults, that apply at some levels of a
    head-option treatment and not at others (``dropout_at`` under a ``dropout`` treatment):
    they belong to the arm, as options some heads do not take do under the head treatment
    (:meth:`Protocol.arm_options`)."""
    factor = p.treatment_factor
    levels = getattr(p.factors, factor)
    return tuple(
        name
        for name, default in HEAD_OPTION_DEFAULTS.items()
        if name != factor
        and getattr(p.factors, name) != [default]
        and any(
            len({applies(name, {"head": h, factor: level}) for level in levels}) > 1
            for h in p.factors.head
        )
    )
