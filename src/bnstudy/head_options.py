"""Deprecated alias of bnstudy.spec.head_options, kept for one release.

Its registry (which heads take which options) lives in ``bnstudy.spec.head_options``: patch
that module, not this one.
"""

from __future__ import annotations

from bnstudy.spec.head_options import (
    BUILTIN,
    DEFAULTS,
    DROPOUT_PLACES,
    applies,
    declare,
    heads,
    of_head,
    options_of,
    recall,
    resolve,
)

__all__ = [
    "BUILTIN",
    "DEFAULTS",
    "DROPOUT_PLACES",
    "applies",
    "declare",
    "heads",
    "of_head",
    "options_of",
    "recall",
    "resolve",
]
