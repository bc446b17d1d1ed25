"""Head options (issue #7): which settings of a head exist, and which heads take which.

Torch-free on purpose: ``bnstudy.spec.protocol`` expands trials from this table, and a results
file must expand to the same trial ids on a laptop without torch (the analysis re-expands the
recorded protocol). ``models.registry.register_head`` declares a head's options here, and
the built-in heads are declared below so that the table is complete without importing
``bnstudy.models``.

An option a head does not take is set to its default when trials are expanded, so it never
creates a duplicate trial (``plain`` is one trial per seed, however many BN momenta a
protocol lists).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Every head option and its default (the value that reproduces the heads of the first
#: release; a trial at a default leaves the option out of its id).
#: ``hidden_width``: width of the hidden layer (0: the feature width).
#: ``dropout``: dropout rate on the input of the final FC. ``dropout_at``: ``before_norm``
#: (dropout, then the norm, then FC) or ``after_norm`` (norm, dropout, FC); only heads with a
#: norm right before the FC take it, and only when ``dropout > 0``.
#: ``bn_momentum``: the momentum of the head's BatchNorm running statistics (PyTorch's 0.1).
DEFAULTS: dict[str, Any] = {
    "hidden_width": 0,
    "dropout": 0.0,
    "dropout_at": "before_norm",
    "bn_momentum": 0.1,
}
DROPOUT_PLACES = ("before_norm", "after_norm")

_NORM_BEFORE_FC = ("dropout", "dropout_at")
#: The built-in heads (:mod:`bnstudy.models.heads`) and the options each takes.
BUILTIN: dict[str, tuple[str, ...]] = {
    "plain": ("dropout",),
    "bn": (*_NORM_BEFORE_FC, "bn_momentum"),
    "bn_noaffine": (*_NORM_BEFORE_FC, "bn_momentum"),
    "bnneck": (*_NORM_BEFORE_FC, "bn_momentum"),
    "hidden": ("hidden_width", "dropout"),
    "hidden_bn_relu": ("hidden_width", "dropout", "bn_momentum"),
    "hidden_relu_bn": ("hidden_width", *_NORM_BEFORE_FC, "bn_momentum"),
    "logit_bn": ("dropout", "bn_momentum"),
    "ln": _NORM_BEFORE_FC,
}
_TAKES: dict[str, tuple[str, ...]] = dict(BUILTIN)


#: Options a results file recorded for heads not registered in this process (their plugin
#: absent): they let that file's protocol expand to its trials, and nothing else.
_RECALLED: dict[str, tuple[str, ...]] = {}


def declare(head: str, options: Iterable[str]) -> tuple[str, ...]:
    """Record that ``head`` takes ``options``; a second, different declaration is refused."""
    options = _known(head, options)
    if head in _TAKES and set(_TAKES[head]) != set(options):
        raise ValueError(
            f"head {head!r} takes {_TAKES[head]}, not {options} (see bnstudy.spec.head_options)"
        )
    _TAKES[head] = options
    return options


def recall(head: str, options: Iterable[str]) -> None:
    """Take a results file's record that ``head`` takes ``options``, for a head this process
    has not registered: the file's protocol then expands to the trials of its rows, while the
    name stays unknown to new protocols (:func:`heads`), which would need its builder."""
    if head not in _TAKES:
        _RECALLED[head] = _known(head, options)


def _known(head: str, options: Iterable[str]) -> tuple[str, ...]:
    options = tuple(options)
    unknown = [o for o in options if o not in DEFAULTS]
    if unknown:
        raise ValueError(
            f"head {head!r}: unknown option {unknown[0]!r}; allowed: {', '.join(DEFAULTS)}"
        )
    return options


def heads() -> list[str]:
    """Every head declared: the built-in ones and those registered since, sorted."""
    return sorted(_TAKES)


def options_of(head: str) -> tuple[str, ...]:
    """The options ``head`` takes (a recalled head's as recorded; none for an unknown head)."""
    return _TAKES.get(head, _RECALLED.get(head, ()))


def of_head(head: str) -> dict[str, Any]:
    """The options ``head`` takes, with their defaults (the keyword arguments of its builder)."""
    return {option: DEFAULTS[option] for option in options_of(head)}


def applies(option: str, settings: Mapping[str, Any]) -> bool:
    """Whether ``option`` changes the trial with these settings (its ``head`` and the rest).

    ``dropout_at`` places a dropout that does not exist at rate 0, so it does not apply then.
    """
    if option not in options_of(settings["head"]):
        return False
    return option != "dropout_at" or settings.get("dropout", DEFAULTS["dropout"]) > 0


def resolve(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every option that does not apply set to its default."""
    out = dict(settings)
    for option, default in DEFAULTS.items():
        if option in out and not applies(option, out):
            out[option] = default
    return out
