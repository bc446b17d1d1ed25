"""A protocol's errors, each one self-contained line: file, field path, what is wrong.

:class:`ProtocolError` is what every reader of a protocol raises. The validators raise
:class:`FieldError` (a message at a field path of their choosing) or :class:`UnknownName`
(with a did-you-mean hint) inside pydantic, and :func:`one_line` turns pydantic's
``ValidationError`` into the lines a user reads.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bnstudy.suggest import did_you_mean

if TYPE_CHECKING:  # only a type here: workers raise ProtocolError without loading pydantic
    from pydantic import ValidationError


class ProtocolError(ValueError):
    """A protocol that cannot be used; the message is one line naming file, field and value."""


class FieldError(ValueError):
    """A validator's message about the field at ``loc`` (a path from the protocol's top)."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        self.loc = loc
        super().__init__(message)


class UnknownName(ValueError):
    """A name not among ``known``; ``index`` is its position in a factor's list of levels."""

    def __init__(self, index: int, value: str, known: Sequence[str]):
        self.index = index
        hint = did_you_mean(value, known)
        super().__init__(f"unknown name {value!r}{hint}; allowed: {', '.join(sorted(known))}")


#: The field names of the model at a path inside the protocol (for an unknown key's message).
AllowedKeys = Callable[[tuple[Any, ...]], list[str]]


def one_line(exc: ValidationError, source: str, allowed_keys: AllowedKeys) -> str:
    """Every validation error, one self-contained line each: file, field path, message.

    ``allowed_keys`` gives the field names of the model at a path (for an unknown key).
    """
    return "\n".join(_describe(e, source, allowed_keys) for e in exc.errors(include_url=False))


def _describe(first: Any, source: str, allowed_keys: AllowedKeys) -> str:
    loc = tuple(first["loc"])
    raw = first.get("ctx", {}).get("error")
    if isinstance(raw, FieldError):
        loc = raw.loc
        message = str(raw)
    elif isinstance(raw, UnknownName):
        loc = (*loc, raw.index) if loc[:1] == ("factors",) else loc
        message = str(raw)
    elif first["type"] == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        hint = did_you_mean(loc[-1], allowed)
        message = f"unknown key {loc[-1]!r}{hint}; allowed: {', '.join(allowed)}"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "value_error":  # raised by our validators, already explicit
        message = first["msg"].removeprefix("Value error, ")
    elif first["type"] == "too_short":
        message = "must not be empty"
    else:
        message = f"{first['msg'][:1].lower()}{first['msg'][1:]}; got {show(first.get('input'))}"
    return f"{source}: {_path(loc) or '<top>'}: {message}"


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


#: Renders a value for a message without walking all of it: an alias bomb in the YAML
#: expands to a structure far too large to repr whole.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 6, 6, 60, 60


def show(value: Any) -> str:
    """``value`` for a message: its repr, cut short (at most 80 characters)."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
