"""Options of the architectures, given in a protocol's ``architectures:`` section.

``architectures: {mlp: {width: 512, depth: 3}}`` mirrors ``datasets:``. Every option changes
the network, so the options that differ from their defaults are part of a trial's identity
(:func:`identity_options`) and an option written at its default is the same trial as one left
out. Torch-free, like ``data/spec.py``: a protocol is validated and expanded without torch.

The built-in options are :data:`SPECS`; a plugin's architecture declares its own with
``register_architecture(..., options={"width": (32, 1, 1024, "channels")})`` (:func:`declare`),
and its builder receives every option, at its default where the protocol sets none. A results
file records what a plugin declared, so its protocol expands to the same trials where the
plugin is not installed (:func:`recall`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from bnstudy.suggest import did_you_mean


class IntOption(NamedTuple):
    """An integer option: its default, the smallest and largest value allowed, what it is."""

    default: int
    minimum: int
    maximum: int
    doc: str = ""


#: Integer options of the built-in architectures.
SPECS: dict[str, dict[str, IntOption]] = {
    "mlp": {
        "width": IntOption(256, 1, 65536, "units per hidden layer (also the feature width)"),
        "depth": IntOption(2, 1, 32, "number of hidden ReLU layers"),
    },
}
#: Options declared by plugins' architectures in this process.
_DECLARED: dict[str, dict[str, IntOption]] = {}
#: Options a results file recorded for architectures not registered in this process.
_RECALLED: dict[str, dict[str, IntOption]] = {}


class ArchitectureOptionError(ValueError):
    """One line: ``architectures.NAME[.OPTION]: what is wrong``."""


def declare(name: str, options: Mapping[str, Any]) -> dict[str, IntOption]:
    """Record the options architecture ``name`` takes (each ``(default, minimum, maximum,
    doc)``, doc optional); ``ValueError`` for a malformed declaration or a name declared
    before."""
    checked = checked_options(name, options)
    if name in SPECS or name in _DECLARED:
        raise ValueError(f"architecture {name!r}: its options are already declared")
    _DECLARED[name] = checked
    return checked


def checked_options(name: str, options: Mapping[str, Any]) -> dict[str, IntOption]:
    """``options`` as :class:`IntOption`, each checked (integers, minimum <= default <=
    maximum, a keyword-argument name); ``ValueError`` naming the first that is not."""
    if not isinstance(options, Mapping):
        raise ValueError(f"architecture {name!r}: options must map names to (default, min, max)")
    checked = {}
    for key, spec in options.items():
        where = f"architecture {name!r} option {key!r}"
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{where}: the name must be a Python identifier")
        try:
            option = IntOption(*spec)
        except TypeError:
            raise ValueError(f"{where}: expected (default, minimum, maximum[, doc])") from None
        numbers = option[:3]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
            raise ValueError(f"{where}: default, minimum and maximum must be integers")
        if not option.minimum <= option.default <= option.maximum:
            raise ValueError(f"{where}: expected minimum <= default <= maximum; got {numbers}")
        checked[key] = option._replace(doc=str(option.doc))
    return checked


def recall(name: str, options: Mapping[str, Any]) -> None:
    """Take a results file's record of the options of architecture ``name``, when this
    process has not registered it: the file's protocol then expands to its rows' trials."""
    if name not in SPECS and name not in _DECLARED:
        _RECALLED[name] = checked_options(name, options)


def options_of(name: str) -> dict[str, IntOption]:
    """The options architecture ``name`` takes (none for an unknown name)."""
    return SPECS.get(name) or _DECLARED.get(name) or _RECALLED.get(name, {})


def declared(names: Iterable[str]) -> dict[str, dict[str, list[Any]]]:
    """The options plugins declared for the architectures ``names`` (as JSON lists), for a
    results file's record; built-in architectures and those without options are left out."""
    return {
        name: {key: list(option) for key, option in _DECLARED[name].items()}
        for name in names
        if _DECLARED.get(name)
    }


def resolve(name: str, options: Mapping[str, Any] | None) -> dict[str, int]:
    """Every option of architecture ``name``: given values checked, the rest at defaults."""
    specs = options_of(name)
    options = dict(options or {})
    for key in options:
        if key not in specs:
            hint = did_you_mean(key, specs)
            allowed = ", ".join(specs) or "none"
            raise ArchitectureOptionError(
                f"architectures.{name}: unknown option {key!r}{hint}; allowed: {allowed}"
            )
    resolved = {}
    for key, (default, low, high, doc) in specs.items():
        value = options.get(key)
        if value is None:
            resolved[key] = default
        elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            what = f" ({doc})" if doc else ""
            raise ArchitectureOptionError(
                f"architectures.{name}.{key}: expected an integer from {low} to {high}{what}; "
                f"got {value!r}"
            )
        else:
            resolved[key] = value
    return resolved


def identity_options(name: str, options: Mapping[str, Any] | None) -> dict[str, int]:
    """The options of ``name`` that differ from their defaults (what a trial id records)."""
    resolved = resolve(name, options)
    specs = options_of(name)
    return {k: v for k, v in resolved.items() if v != specs[k].default}
