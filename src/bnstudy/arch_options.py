"""Deprecated alias of bnstudy.spec.arch_options, kept for one release."""

from __future__ import annotations

from bnstudy.spec.arch_options import SPECS, ArchitectureOptionError, identity_options, resolve

__all__ = ["SPECS", "ArchitectureOptionError", "identity_options", "resolve"]
