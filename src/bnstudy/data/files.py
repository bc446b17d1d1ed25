"""The one check every reader makes before it opens a user's file, and the files' fingerprint.

A user path is checked with ``os.stat`` before anything opens it: opening a FIFO blocks until
a writer comes (``validate`` hung), and reading a device never ends (``/dev/zero`` exhausted
memory). Only a regular, readable file is opened.

:func:`describe` is what the dataset cache is keyed by and what a results table records:
each file's resolved path, size and modification time, so a replaced or moved file is read
again rather than served from a stale pool.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bnstudy.data.spec import DatasetError

#: What a path that is not a regular file is, for the message.
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file(path: Path, what: str = "") -> os.stat_result:
    """``path``'s stat (links followed) once it is known to be a regular, readable file.

    Raises :class:`DatasetError` (one line naming ``path``, and ``what`` was expected when
    given) otherwise. Never opens the path.
    """
    expected = f" (expected {what})" if what else ""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found{expected}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DatasetError(f"{path}: is a directory{expected}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "an unknown kind of file")
        raise DatasetError(f"{path}: is {kind}, not a regular file{expected}")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"{path}: cannot read: permission denied")
    return st


def describe(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """``{"path", "size", "mtime_ns"}`` of each file (path resolved: links and ``..`` gone)."""
    out = []
    for path in paths:
        st = regular_file(path)
        out.append({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out
