"""The " (did you mean ...?)" hint of every unknown-name message, written in one place."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: object, known: Iterable[str], n: int = 1) -> str:
    """``" (did you mean 'x'?)"`` with up to ``n`` close matches of ``value``, or ``""``."""
    close = difflib.get_close_matches(str(value), list(known), n=n)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
