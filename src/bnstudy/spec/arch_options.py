"""Options of the architectures, given in a protocol's ``architectures:`` section.

``architectures: {mlp: {width: 512, depth: 3}}`` mirrors ``datasets:``. Every option changes
the network, so the options that differ from their defaults are part of a trial's identity
(:func:`identity_options`) and an option written at its default is the same trial as one left
out. Torch-free, like ``data/spec.py``: a protocol is validated and expanded without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnstudy.suggest import did_you_mean

#: Integer options per architecture: name -> (default, minimum, maximum, what it is).
SPECS: dict[str, dict[str, tuple[int, int, int, str]]] = {
    "mlp": {
        "width": (256, 1, 65536, "units per hidden layer (also the feature width)"),
        "depth": (2, 1, 32, "number of hidden ReLU layers"),
    },
}


class ArchitectureOptionError(ValueError):
    """One line: ``architectures.NAME[.OPTION]: what is wrong``."""


def resolve(name: str, options: Mapping[str, Any] | None) -> dict[str, int]:
    """Every option of architecture ``name``: given values checked, the rest at defaults."""
    specs = SPECS.get(name, {})
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
            raise ArchitectureOptionError(
                f"architectures.{name}.{key}: expected an integer from {low} to {high} ({doc}); "
                f"got {value!r}"
            )
        else:
            resolved[key] = value
    return resolved


def identity_options(name: str, options: Mapping[str, Any] | None) -> dict[str, int]:
    """The options of ``name`` that differ from their defaults (what a trial id records)."""
    resolved = resolve(name, options)
    return {k: v for k, v in resolved.items() if v != SPECS[name][k][0]}
