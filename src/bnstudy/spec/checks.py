"""The cross-checks of a protocol's sections against each other, run once it is parsed.

Each raises :class:`~bnstudy.spec.errors.FieldError` at the field a user has to change:
the treatment and its control, moderators and tuning factors among the factors, dataset and
architecture options, head options that belong to the arms, pre-training stages, exclusions,
hypotheses, and the number of trials.

:func:`warnings` lists what is allowed but probably not meant (one line each, for
``validate`` and ``run`` to print): a very large protocol, a learning rate averaged over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bnstudy.data.spec import SPECS as DATASET_SPECS
from bnstudy.data.spec import DatasetError, resolve_options
from bnstudy.spec import arch_options
from bnstudy.spec.analysis_settings import DEFAULT_TRANSFORMS
from bnstudy.spec.design import LOG_BASES
from bnstudy.spec.errors import FieldError, UnknownName, show
from bnstudy.spec.factors import Factors, not_a_level
from bnstudy.spec.fields import DEFAULT_MAX_TRIALS, WARN_TRIALS, as_list
from bnstudy.spec.head_options import applies
from bnstudy.spec.head_options import options_of as head_options_of
from bnstudy.spec.treatment import check as check_treatment
from bnstudy.spec.trial import ALL_TRAIN, LEARNING_RATE, NO_PRETRAIN, TREATMENT

if TYPE_CHECKING:
    from bnstudy.spec.protocol import Protocol


def check_all(p: Protocol) -> None:
    """Every cross-check, in the order a user would fix them."""
    _check_roles(p)
    _check_datasets(p)
    _check_head_options(p)
    _check_architectures(p)
    _check_pretraining(p)
    _check_exclusions(p)
    _check_all_train(p)
    _check_hypotheses(p)
    _check_size(p)


def _check_roles(p: Protocol) -> None:
    """The treatment (:func:`bnstudy.spec.treatment.check`: a factor that can be one, the
    control among its levels, a variant beside it); moderators, transforms and tuning
    factors among the other factors (a log transform on positive numeric levels only; a
    tuning factor's declared bounds around its numeric levels)."""
    check_treatment(p)
    allowed = [f for f in Factors.model_fields if f != p.treatment_factor]
    arms = "its levels are the arms, each compared with the control"
    for i, m in enumerate(p.analysis.moderators or []):
        if m not in allowed:
            raise FieldError(
                ("analysis", "moderators", i),
                _not_a_condition(p, m, allowed, f"{arms}, not a moderator of the effect"),
            )
    for name, transform in p.analysis.transforms.items():
        if name not in allowed:
            raise FieldError(
                ("analysis", "transforms", name),
                _not_a_condition(p, name, allowed, f"{arms}; transforms scale conditions"),
            )
        levels = getattr(p.factors, name)
        if transform in LOG_BASES and not _positive_numbers(levels):
            raise FieldError(
                ("analysis", "transforms", name),
                f"{transform} needs positive numeric levels; {name} has {show(levels)}",
            )
    for name in p.analysis.tune:
        if name not in allowed or name == "seed":
            raise FieldError(
                p.analysis.tune_location(name),
                f"{name!r} is not a factor; allowed: {', '.join(allowed)}",
            )
        _check_tune_settings(p, name)


def _positive_numbers(levels: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in levels)


def _check_tune_settings(p: Protocol, name: str) -> None:
    """Declared bounds enclose the factor's numeric levels, and are positive where the grid is
    log-spaced (a log transform, or a grid extended by multiplying); extension needs positive
    numeric levels."""
    spec = p.analysis.tune[name]
    levels = getattr(p.factors, name)
    where = (*p.analysis.tune_location(name)[:2], name)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels)
    transform = p.analysis.transforms.get(name, DEFAULT_TRANSFORMS.get(name, "identity"))
    if spec.extend and not _positive_numbers(levels):
        raise FieldError(
            (*where, "extend"),
            f"growing the grid by a factor needs positive numeric levels; {name} has "
            f"{show(levels)}",
        )
    if spec.bounds is None:
        return
    low, high = spec.bounds
    if not numeric:
        raise FieldError(
            (*where, "bounds"), f"bounds need numeric levels; {name} has {show(levels)}"
        )
    if (spec.extend or transform in LOG_BASES) and low <= 0:
        raise FieldError(
            (*where, "bounds"),
            f"{name}'s grid is log-spaced ({'extend' if spec.extend else transform}): bounds "
            f"must be positive; got {show([low, high])}",
        )
    outside = [v for v in levels if not low <= v <= high]
    if outside:
        raise FieldError(
            (*where, "bounds"),
            f"level(s) {show(outside)} of {name} lie outside the declared bounds "
            f"{show([low, high])}",
        )


def _check_datasets(p: Protocol) -> None:
    levels = p.factors.dataset
    staged = [s.dataset for s in p.pretraining.values() if s.options is None]
    for name in p.datasets:
        if name not in levels and name not in staged:
            raise FieldError(
                ("datasets", name),
                f"{name!r} is not a dataset of this protocol; its datasets: {', '.join(levels)}",
            )
    for name in levels:
        if name not in DATASET_SPECS:  # read back without registries: a future dataset
            continue
        try:
            resolve_options(name, p.datasets.get(name))
        except DatasetError as exc:
            where, _, message = str(exc).partition(": ")
            raise FieldError(tuple(where.split(".")), message) from None


def _check_head_options(p: Protocol) -> None:
    """An arm option may not vary on the control (the control would split into several
    arms), nor be a moderator, transform or tuning factor (it is no condition)."""
    factor, control = p.treatment_factor, p.control_level
    for name in p.arm_options:
        levels = getattr(p.factors, name)
        if len(levels) < 2:
            continue
        if factor == TREATMENT and name in head_options_of(control):
            others = [h for h in p.factors.head if name not in head_options_of(h)]
            raise FieldError(
                ("factors", name),
                f"varies on the control {control!r} but head(s) {', '.join(others)} "
                f"do not take it, so their trials could not pair with each level; give "
                f"{name} one value, or choose a control that does not take it",
            )
        if factor != TREATMENT and any(
            applies(name, {"head": h, factor: control}) for h in p.factors.head
        ):
            raise FieldError(
                ("factors", name),
                f"varies on the control {p.control_arm!r} but not at every level of {factor}, "
                f"so the control would split into several arms; give {name} one value, or "
                f"choose a control where it does not apply",
            )
        roles = {
            "moderators": p.analysis.moderators or [],
            "transforms": list(p.analysis.transforms),
            "tune": list(p.analysis.tune),
        }
        for role, names in roles.items():
            if name in names:
                raise FieldError(
                    ("analysis", role),
                    f"{name!r} is part of the arms (some heads do not take it), not a "
                    "condition; its levels are compared as arms against the control",
                )


def _check_architectures(p: Protocol) -> None:
    levels = p.factors.architecture
    for name, options in p.architectures.items():
        if name not in levels:
            raise FieldError(
                ("architectures", name),
                f"{name!r} is not an architecture of this protocol; its architectures: "
                f"{', '.join(levels)}",
            )
        try:
            arch_options.resolve(name, options)
        except arch_options.ArchitectureOptionError as exc:
            where, _, message = str(exc).partition(": ")
            raise FieldError(tuple(where.split(".")), message) from None


def _check_pretraining(p: Protocol) -> None:
    if NO_PRETRAIN in p.pretraining:
        raise FieldError(
            ("pretraining", NO_PRETRAIN), f"{NO_PRETRAIN!r} means no pre-training; rename it"
        )
    for i, level in enumerate(p.factors.pretrain):
        if level != NO_PRETRAIN and level not in p.pretraining:
            allowed = ", ".join([NO_PRETRAIN, *p.pretraining])
            raise FieldError(
                ("factors", "pretrain", i),
                f"{level!r} is not a stage of the pretraining section; allowed: {allowed}",
            )
    for name, stage in p.pretraining.items():
        if stage.dataset not in DATASET_SPECS:  # read back without registries
            continue
        try:
            p.stage_options(name)
        except DatasetError as exc:
            message = str(exc).partition(": ")[2]
            raise FieldError(("pretraining", name, "options"), message) from None
    seen: dict[str, str] = {}
    for level in p.factors.pretrain:
        first = seen.setdefault(p.stage_identity(level), level)
        if first != level:
            raise FieldError(
                ("pretraining", level),
                f"the same settings as stage {first!r}: their trials would be the same",
            )


def _check_exclusions(p: Protocol) -> None:
    factors = list(Factors.model_fields)
    for i, entry in enumerate(p.exclude):
        if not entry:
            raise FieldError(("exclude", i), "an empty entry would exclude every trial")
        for key, value in entry.items():
            if key not in factors:
                raise FieldError(("exclude", i, key), str(UnknownName(0, key, factors)))
            levels = getattr(p.factors, key)
            for v in as_list(value):
                if v not in levels:
                    raise FieldError(("exclude", i, key), not_a_level(key, v, levels))


def _check_all_train(p: Protocol) -> None:
    """``train_per_class: all`` (the whole, unbalanced pool) only at ``imbalance_ratio`` 1:
    an imbalance profile needs a balanced base count per class to shrink."""
    f = p.factors
    if ALL_TRAIN not in f.train_per_class or all(r == 1 for r in f.imbalance_ratio):
        return
    for c in p.combinations():
        if c["train_per_class"] == ALL_TRAIN and c["imbalance_ratio"] != 1:
            ratio = c["imbalance_ratio"]
            raise FieldError(
                ("factors", "train_per_class"),
                f"all (the whole training pool, unbalanced) cannot be made imbalanced: "
                f"imbalance_ratio {ratio:g} needs a count per class; give one, or leave the "
                f"pair out with exclude: [{{train_per_class: all, imbalance_ratio: {ratio:g}}}]",
            )


def _check_hypotheses(p: Protocol) -> None:
    """Ids unique; arms among the treatment's levels (or the arms head options make);
    ``where`` and ``interaction`` name factors and their levels (as ``exclude`` does): a
    claim about a condition never run is a typo."""
    arms = list(p.factors.head)
    if p.arm_options:  # e.g. bn[bn_momentum=0.01]: an arm a hypothesis may name
        arms += [a for a in (p.control_arm, *p.variant_arms) if a not in arms]
    factors = [f for f in Factors.model_fields if f != p.treatment_factor]
    seen: set[str] = set()
    for i, h in enumerate(p.hypotheses):
        if h.id in seen:
            raise FieldError(("hypotheses", i, "id"), f"duplicate hypothesis id {h.id!r}")
        seen.add(h.id)
        for role in ("variant", "control"):
            _check_arm(p, getattr(h, role), ("hypotheses", i, role), arms)
        if h.estimand == "tuned" and not p.analysis.tune:
            raise FieldError(
                ("hypotheses", i, "estimand"),
                "tuned needs tuning factors (analysis.tune); this protocol tunes none",
            )
        levels_of = [(("where", k), k, v) for k, v in h.where.items()]
        if (x := h.interaction) is not None:
            if x.factor not in factors:
                raise FieldError(
                    ("hypotheses", i, "interaction", "factor"),
                    _not_a_condition(p, x.factor, factors),
                )
            ends = ("low", "high")
            levels_of += [(("interaction", e), x.factor, [getattr(x, e)]) for e in ends]
        for loc, key, values in levels_of:
            if key not in factors:
                raise FieldError(("hypotheses", i, *loc), _not_a_condition(p, key, factors))
            levels = getattr(p.factors, key)
            for v in values:
                if v not in levels:
                    raise FieldError(("hypotheses", i, *loc), not_a_level(key, v, levels))
        # Levels checked above, so they are hashable scalars here.
        inside = x is None or x.factor not in h.where
        if not inside and not {x.low, x.high} <= set(h.where[x.factor]):
            raise FieldError(
                ("hypotheses", i, "where", x.factor),
                f"leaves out level {x.low!r} or {x.high!r} of the interaction",
            )


def _not_a_condition(
    p: Protocol,
    name: str,
    factors: list[str],
    why: str = "a hypothesis compares its levels with variant and control",
) -> str:
    """Why ``name`` cannot be a condition (a hypothesis' ``where``, a moderator, a
    transform): the treatment (``why`` says what its levels are instead), or no factor at
    all."""
    if name == p.treatment_factor:
        return f"{name!r} is the treatment, not a condition: {why}"
    return str(UnknownName(0, name, factors))


def _check_arm(p: Protocol, value: object, where: tuple, heads_and_arms: list[str]) -> None:
    """A hypothesis' variant or control names an arm: under the head treatment a head or an
    arm (as before other treatments existed), under another a level of the treatment factor
    (compared as its type: ``0`` names dropout ``0.0``) or an arm's label."""
    if p.treatment_factor == TREATMENT:
        if value not in heads_and_arms:
            allowed = ", ".join(heads_and_arms)
            raise FieldError(where, f"{value!r} is not among the {TREATMENT}s; allowed: {allowed}")
        return
    if p.arm_named(value) is None:
        factor = p.treatment_factor
        extra = f"; or an arm: {', '.join(p.variant_arms)}" if p.arm_options else ""
        levels = getattr(p.factors, factor)
        raise FieldError(
            where, not_a_level(factor, value, levels, f"the treatment {factor}") + extra
        )


def _check_size(p: Protocol) -> None:
    """Refuse more than ``max_trials`` trials, counted without expanding the seeds."""
    gross = len(p.seeds) * p.factors.count()
    if gross <= p.max_trials:
        return
    enumerable = p.exclude and p.factors.count() <= 10 * DEFAULT_MAX_TRIALS
    if enumerable and len(p.seeds) * len(p.combinations()) <= p.max_trials:
        return
    raise FieldError(
        ("max_trials",),
        f"the protocol expands to {p.n_trials_bound()} trials, more than max_trials = "
        f"{p.max_trials}; raise max_trials in the protocol if that is intended",
    )


def warnings(p: Protocol) -> list[str]:
    """What the protocol allows but probably does not mean, one line each (no file name or
    prefix: ``validate`` and ``run`` add them): more than :data:`WARN_TRIALS` trials; a
    learning rate with several levels that is not tuned; ``train_per_class`` moderating with
    ``all`` among counts (its slope would read ``all`` as 0)."""
    out = []
    if p.n_trials > WARN_TRIALS:
        out.append(
            f"{p.n_trials:,} trials (more than {WARN_TRIALS:,}); check the seed count and "
            "factor levels"
        )
    rates = getattr(p.factors, LEARNING_RATE)
    factor = p.treatment_factor
    if len(rates) > 1 and LEARNING_RATE not in p.analysis.tune and factor != LEARNING_RATE:
        out.append(
            f"factors.{LEARNING_RATE} has {len(rates)} levels but analysis.tune does not tune "
            f"it: averaging over learning rates mixes the {factor}'s effect with its tolerance "
            f"of a bad learning rate; add analysis.tune: [{LEARNING_RATE}] to compare each "
            f"{factor} at its own best learning rate"
        )
    counts = p.factors.train_per_class
    if ALL_TRAIN in counts and len(counts) > 1 and "train_per_class" in p.moderators:
        out.append(
            "factors.train_per_class mixes all with counts per class: trials hold all as 0, so "
            "the slope the analysis fits over train_per_class means nothing; read its "
            "per-level estimates"
        )
    return out
