"""Deprecated alias of bnstudy.spec.plugins, kept for one release."""

from __future__ import annotations

from bnstudy.spec.plugins import PluginError, fingerprints, load

__all__ = ["PluginError", "fingerprints", "load"]
