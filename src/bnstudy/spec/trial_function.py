"""A protocol's own trial function: ``trial: mylab.train:run`` or ``trial: my_trial.py:run``.

The part before the last ``:`` names the code as a ``plugins:`` entry does (a ``.py`` file,
relative to the protocol's folder, or an importable module; see :mod:`bnstudy.spec.plugins`),
the part after it a function of that code. The module is one of the protocol's plugins
(:func:`with_module_as_plugin` adds it to ``plugins``): the parent imports it before it
validates the protocol, so the metrics and networks it registers are known names, every
worker imports it before its first trial, and its SHA-256 is recorded with the results.

What the function receives and returns is :mod:`bnstudy.training.context`'s contract. The
text as written is the trials' ``trial_function`` setting: part of their ids, so results of
another function are never taken for this one's. Standard library only: a worker resolves
the function with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bnstudy.spec import plugins

#: The protocol field that names the trial function.
FIELD = "trial"
#: ``CODE:FUNCTION``: a plugin entry (a ``.py`` file or a dotted module name), then a name.
TRIAL_FUNCTION = r"^(?:[^\n]+\.py|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$"


def split(text: str) -> tuple[str, str]:
    """``"mylab.train:run"`` -> ``("mylab.train", "run")``: the plugin entry, the function."""
    entry, _, function = text.rpartition(":")
    return entry, function


def with_module_as_plugin(data: Any) -> Any:
    """A protocol's raw data with its ``trial:`` module appended to ``plugins`` (where not
    already listed): it is imported, checked and recorded like the other plugins. Anything
    not of the expected shape is left to the protocol's validation to name."""
    if not isinstance(data, dict):
        return data
    text, listed = data.get("trial"), data.get("plugins", [])
    if not isinstance(text, str) or not re.fullmatch(TRIAL_FUNCTION, text):
        return data
    if not isinstance(listed, list):
        return data
    entry = split(text)[0]
    return data if entry in listed else {**data, "plugins": [*listed, entry]}


def resolve(text: str, base: str | Path) -> str:
    """``text`` with its file, if it names one, made absolute against ``base`` (the
    protocol's folder): what a worker, started anywhere, loads."""
    entry, function = split(text)
    (resolved,) = plugins.resolve_entries([entry], Path(base or "."))
    return f"{resolved}:{function}"


def load(resolved: str) -> Callable[..., Any]:
    """The function a resolved ``CODE:FUNCTION`` names, its code imported once per process
    (:func:`bnstudy.spec.plugins.load`); :class:`~bnstudy.spec.plugins.PluginError`, one line,
    when the code cannot be imported or has no such function."""
    entry, name = split(resolved)
    try:
        (module,) = plugins.load([entry])
    except plugins.PluginError as exc:
        raise exc.named(FIELD) from None
    function = getattr(module, name, None)
    if function is None:
        raise plugins.PluginError(f"{entry} has no function {name!r}", entry, FIELD)
    if not callable(function):
        raise plugins.PluginError(
            f"{entry}:{name} is a {type(function).__name__}, not a function", entry, FIELD
        )
    return function


def named(exc: plugins.PluginError, entry: str | None) -> plugins.PluginError:
    """``exc`` said of ``trial:`` when it concerns ``entry``, the trial function's code as
    :func:`resolve` makes it (its plugin entry is one the user wrote as ``trial:``)."""
    return exc.named(FIELD) if entry is not None and exc.entry == entry else exc
