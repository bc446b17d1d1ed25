"""The treatment: which factor's levels are the arms of a pairing block, and which is the control.

``treatment: {factor: optimizer, control: sgd}`` compares every other level of ``optimizer``
with ``sgd``, paired within blocks that share every other setting (the seed, the data
subset and order, the initial weights' random streams). The default, and what a protocol's
top-level ``control: plain`` is short for, is ``{factor: head, control: plain}``.

Any factor of :class:`~bnstudy.spec.factors.Factors` with two levels or more may be the
treatment, except those :func:`check` refuses, each for a reason it states: ``dataset``
(the arms would be scored on different test sets), a factor ``analysis.tune`` tunes (each
arm is set to its own best level of it), a head option that some head of the protocol
does not take (its trials would have one arm), and an imbalance shape (``imbalance_profile``,
``step_fraction``) whose variant trains on the control's counts per class in every trial.
``seed`` is no factor: it is the replication.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator

from bnstudy.data.imbalance import training_counts
from bnstudy.data.spec import SPECS as DATASET_SPECS
from bnstudy.spec.errors import FieldError, UnknownName, show
from bnstudy.spec.factors import Factors, not_a_level, spelled_levels
from bnstudy.spec.fields import DEFAULT_MAX_TRIALS, STRICT, Name
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
#: Factors that shape the imbalance profile only: as the treatment, their arms must train on
#: different counts per class somewhere (:func:`_check_counts_differ`).
IMBALANCE_SHAPE = ("imbalance_profile", "step_fraction")
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
            not_a_level(factor, p.treatment.control, levels),
        )
    if len(levels) < 2:
        raise FieldError(
            ("factors", factor),
            "needs the control and at least one variant to compare; got "
            f"{show(spelled_levels(factor, levels))}",
        )
    if factor in HEAD_OPTION_DEFAULTS:
        _check_head_option(p, factor)
    if factor in IMBALANCE_SHAPE:
        _check_counts_differ(p, factor)


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


def _check_counts_differ(p: Protocol, factor: str) -> None:
    """A variant of an imbalance-shape treatment gives some trial other counts per class than
    the control: where it gives every trial the control's (every profile at
    ``imbalance_ratio`` 1, ``step_fraction`` outside the ``step`` profile) its paired
    differences are 0 by construction and would read as "equivalent"."""
    if p.factors.count() > 10 * DEFAULT_MAX_TRIALS:
        return  # too many to enumerate here; the trial count's check says so
    control = p.control_level
    combos = p.combinations()
    for variant in p.variants:
        of_variant = [c for c in combos if c[factor] == variant]
        if not of_variant or not all(_same_counts(c, factor, control) for c in of_variant):
            continue
        where, why = _why_the_same(factor, of_variant)
        raise FieldError(
            where,
            f"{factor} {show(variant)} trains on the same images per class as the control "
            f"{show(control)} in every trial, so their difference is 0 by construction: {why}",
        )


def _why_the_same(factor: str, combos: list[dict[str, Any]]) -> tuple[tuple[str, ...], str]:
    """Where to fix an imbalance-shape arm equal to the control in ``combos``, and why."""
    if factor == "step_fraction" and all(c["imbalance_profile"] != "step" for c in combos):
        why = "step_fraction shapes imbalance_profile step only; add step to its levels"
        return ("factors", "imbalance_profile"), why
    if all(c["imbalance_ratio"] == 1 for c in combos):
        why = "at imbalance_ratio 1 every profile is balanced; give imbalance_ratio levels above 1"
        return ("factors", "imbalance_ratio"), why
    return ("factors", factor), "its class counts round to the control's"


def _same_counts(combo: dict[str, Any], factor: str, control: Any) -> bool:
    """Whether ``combo`` trains on the counts per class it would at the ``control`` level of
    ``factor``; False where the dataset's classes are in its file (``npz``: read at run time)
    or the combination is refused by another check (``train_per_class: all``, imbalanced)."""
    spec = DATASET_SPECS.get(combo["dataset"])
    if spec is None or spec.num_classes is None:
        return False
    # The pool's own counts matter only to train_per_class all, where every arm takes them
    # whole and alike: a stand-in of the right length gives the same answer.
    pool = [0] * spec.num_classes

    def counts(c: dict[str, Any]) -> list[int]:
        shape = (c["imbalance_ratio"], c["step_fraction"])
        return training_counts(c["imbalance_profile"], c["train_per_class"], pool, *shape)

    try:
        return counts(combo) == counts({**combo, factor: control})
    except ValueError:
        return False


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
