"""Writing a file whole or not at all: the one way bnstudy writes results, dataset caches and
pre-trained checkpoints. Standard library only.

The content goes to a hidden temporary file beside the target (``.NAME.<random>.tmp``), is
flushed and fsynced, then renamed over the target, and the directory is fsynced: a reader
sees the old file or the new one, never half of one, and a killed process leaves at most a
temporary file (which the store sweeps up). On failure the temporary file is removed and the
error propagates for the caller to phrase.

**Permissions.** The file is created like any other file the user makes, mode 0666 less the
umask (0644 under the usual umask of 022), so results, caches and checkpoints are as readable
as the rest of the user's outputs; ``tempfile.mkstemp`` would make them 0600.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, whole or not at all."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where the platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
