"""Package attributes whose modules import torch, loaded on first access (PEP 562).

``bnstudy.data`` and ``bnstudy.models`` answer questions without torch (names, shapes,
options) and build things with it; their torch-side names come from here, so importing the
package costs no torch until one is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attributes(package: str, modules: Mapping[str, str], namespace: dict) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``modules`` maps each lazy name to the module
    defining it; the value is cached in ``namespace`` (the package's globals) on first use."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
