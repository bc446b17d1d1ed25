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
much as bnstudy's does: the hash of the very bytes the process imported. A file is imported
under a name derived from its path, once per process (a plugin that failed fails again with
its first error). Plugins run arbitrary code, as any Python file a user runs does, and
``bnstudy validate`` runs them too (it needs the names they register): name only code you
trust.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bnstudy import catalogue
from bnstudy.results_format import ARCHITECTURE_OPTIONS, METRIC_DECLARATIONS
from bnstudy.spec import arch_options


class PluginError(ValueError):
    """One line: which plugin could not be imported, and why, after the protocol field that
    named it (``plugins``, or ``trial`` for a trial function's code: :meth:`named`)."""

    def __init__(self, detail: str, entry: str = "", field: str = "plugins"):
        super().__init__(f"{field}: {detail}")
        #: What went wrong, without the field; the plugin entry it concerns ("" for none).
        self.detail, self.entry = detail, entry

    def named(self, field: str) -> PluginError:
        """The same error, said of protocol field ``field``."""
        return PluginError(self.detail, self.entry, field)


#: Each plugin's SHA-256, taken from the bytes this process imported.
_DIGESTS: dict[str, str] = {}
#: Plugins that failed in this process: a second try would meet what the first registered
#: ("already registered") instead of the real cause, so the first error is raised again.
_FAILED: dict[str, PluginError] = {}


def resolve_entries(entries: Sequence[str], base: Path) -> tuple[str, ...]:
    """``entries`` with each ``.py`` file made absolute against ``base`` (the protocol's
    folder); module names as they are."""
    return tuple(str((base / e).resolve()) if e.endswith(".py") else e for e in entries)


def load(entries: Iterable[str]) -> list[ModuleType]:
    """Import each plugin (a ``.py`` path or a module name), once; :class:`PluginError` names
    the first that fails."""
    return [_load_one(entry) for entry in entries]


def fingerprints(entries: Iterable[str]) -> dict[str, str]:
    """Each plugin's SHA-256: of the bytes this process imported (a ``.py`` path), or of the
    module's source file when it was imported ("" for a module without one)."""
    entries = list(entries)
    load(entries)
    return {entry: _DIGESTS[entry] for entry in entries}


def declared(architectures: Iterable[str]) -> dict[str, Any]:
    """What this process's plugins declared besides their heads' options, as a results
    file's metadata records it (:class:`~bnstudy.results_format.Provenance` fields, None where
    nothing was declared): the options of the plugin architectures among ``architectures``,
    and the metrics registered (:func:`bnstudy.catalogue.register_metric`)."""
    return {
        ARCHITECTURE_OPTIONS: arch_options.declared(architectures) or None,
        METRIC_DECLARATIONS: catalogue.declared_metrics() or None,
    }


def recall(metadata: Mapping[str, str]) -> None:
    """Take a results file's record of what its plugins declared (:func:`declared`), so its
    protocol parses, expands and is analysed where the plugins are not installed; a name this
    process knows keeps its own declaration. ``ValueError`` for a record that is none."""
    try:
        architectures = json.loads(metadata.get(ARCHITECTURE_OPTIONS) or "{}")
        metrics = json.loads(metadata.get(METRIC_DECLARATIONS) or "{}")
        for name, options in architectures.items():
            arch_options.recall(name, options)
        catalogue.recall_metrics(metrics)
    except (TypeError, AttributeError) as exc:  # valid JSON of another shape
        raise ValueError(str(exc)) from None


def _load_one(entry: str) -> ModuleType:
    if entry in _FAILED:
        raise _FAILED[entry]
    try:
        module = _import_module(entry) if not entry.endswith(".py") else _import_file(entry)
    except PluginError as exc:
        _FAILED[entry] = exc
        raise
    return module


def _import_module(entry: str) -> ModuleType:
    try:
        module = importlib.import_module(entry)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is the user's
        raise PluginError(f"cannot import {entry!r}: {gist(exc)}", entry) from None
    if entry not in _DIGESTS:
        source = getattr(module, "__file__", None)
        _DIGESTS[entry] = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else ""
    return module


def _import_file(entry: str) -> ModuleType:
    path = Path(entry)
    name = "bnstudy_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    try:
        source = path.read_bytes()
    except OSError as exc:
        why = "no such file" if isinstance(exc, FileNotFoundError) else gist(exc)
        raise PluginError(f"{entry}: {why}", entry) from None
    # The bytes read are the bytes that run and the bytes hashed: an edit made while the run
    # goes on cannot make the recorded SHA-256 describe other code.
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's plugin
    except Exception as exc:  # noqa: BLE001 - any failure of user code is the user's
        del sys.modules[name]
        raise PluginError(f"{entry}: {gist(exc)}", entry) from None
    _DIGESTS[entry] = hashlib.sha256(source).hexdigest()
    return module


def gist(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
