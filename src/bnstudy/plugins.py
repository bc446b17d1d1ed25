"""A protocol's own networks: the modules its ``plugins:`` list names, imported where needed.

A user's architecture or head is registered by code (``@bnstudy.models.register_head``), and
that code must run in every process that validates or builds the network: the parent, to
know the name, and each worker, to build it (loky and Dask workers are fresh processes that
only know the built-in networks). So the protocol names the code::

    plugins:
      - my_heads.py          # a file, relative to the protocol's folder
      - mylab.networks       # or a module importable where the run starts

The parent imports them before it checks the protocol's names (:func:`bnstudy.study.load`),
and each worker before its first trial. A file's SHA-256 is recorded with the results
(``bnstudy.plugins``), beside the protocol text, since the plugin's code makes the numbers as
much as bnstudy's does. A file is imported under a name derived from its path, once per
process. Plugins run arbitrary code, as any Python file a user runs does: name only your own.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType


class PluginError(ValueError):
    """One line: which plugin could not be imported, and why."""


def load(entries: Iterable[str]) -> list[ModuleType]:
    """Import each plugin (a ``.py`` path or a module name), once; :class:`PluginError` names
    the first that fails."""
    return [_load_one(entry) for entry in entries]


def fingerprints(entries: Iterable[str]) -> dict[str, str]:
    """Each plugin's SHA-256 (of its file: a ``.py`` path, or the module's source file)."""
    prints = {}
    for entry, module in zip(entries, load(entries), strict=True):
        source = getattr(module, "__file__", None)
        prints[entry] = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else ""
    return prints


def _load_one(entry: str) -> ModuleType:
    if not entry.endswith(".py"):
        try:
            return importlib.import_module(entry)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is the user's
            raise PluginError(f"plugins: cannot import {entry!r}: {_gist(exc)}") from None
    path = Path(entry)
    name = "bnstudy_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise PluginError(f"plugins: {entry}: no such file")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is the user's
        del sys.modules[name]
        raise PluginError(f"plugins: {entry}: {_gist(exc)}") from None
    return module


def _gist(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
