"""MNIST and Fashion-MNIST from the official IDX files (plain or gzip-compressed).

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions,
then each dimension as uint32) followed by the raw values. Images are type 0x08 (uint8) with
3 dimensions (magic 2051), labels uint8 with one dimension (magic 2049). Each file is checked
to be a regular file before it is opened (:mod:`bnstudy.data.files`).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from bnstudy.data.files import regular_file
from bnstudy.data.spec import DatasetError

IMAGE_SHAPE = (1, 28, 28)
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _what(name: str) -> str:
    title = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}.get(name, name)
    files = ", ".join(f for pair in FILES.values() for f in pair)
    return f"the {title} IDX files {files}, plain or .gz"


def _locate(directory: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``directory`` (the plain file when both exist)."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if os.path.exists(candidate):  # not is_file(): a FIFO there is refused, not "missing"
            return candidate
    return None


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read: {exc}") from None


def parse_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """The uint8 array stored in IDX file ``path``, after checking magic number and size."""
    raw = _read(path)
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DatasetError(f"{path}: magic number {found:#010x}, expected {magic:#010x} (IDX)")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: {len(raw)} bytes, but its header {shape} implies {expected} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def source_files(name: str, directory: Path) -> dict[str, Path]:
    """Each file :func:`read_idx` reads, by stem (plain or ``.gz``), a regular, readable file.

    Raises :class:`DatasetError` naming the directory, the missing files or the file that is
    not a regular file (a FIFO, a device).
    """
    what = _what(name)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory (expected {what})")
    located = {stem: _locate(directory, stem) for pair in FILES.values() for stem in pair}
    missing = [stem for stem, path in located.items() if path is None]
    if missing:
        raise DatasetError(f"{directory}: missing {', '.join(missing)} (expected {what})")
    files = {stem: path for stem, path in located.items() if path is not None}  # all of them
    for path in files.values():
        regular_file(path, what)
    return files


def read_idx(name: str, directory: Path) -> dict[str, np.ndarray]:
    """``x_train`` uint8 (n, 1, 28, 28), ``y_train`` int64 (n,), ``x_test``, ``y_test``.

    Raises :class:`DatasetError` (one line naming the directory or file) for a missing file, a
    wrong magic number, a size that disagrees with the header, or images that are not 28x28.
    """
    located = source_files(name, directory)
    out = {}
    for split, (images, labels) in FILES.items():
        x = parse_idx(located[images], IMAGES_MAGIC, 3)
        y = parse_idx(located[labels], LABELS_MAGIC, 1)
        if x.shape[1:] != IMAGE_SHAPE[1:]:
            raise DatasetError(f"{located[images]}: images are {x.shape[1:]}, expected (28, 28)")
        if len(x) != len(y):
            raise DatasetError(
                f"{located[labels]}: {len(y)} labels for the {len(x)} images of {images}"
            )
        if len(y) and y.max() >= NUM_CLASSES:
            raise DatasetError(f"{located[labels]}: labels must lie in 0..{NUM_CLASSES - 1}")
        out[f"x_{split}"] = x.reshape(-1, *IMAGE_SHAPE)
        out[f"y_{split}"] = y.astype(np.int64)
    return out
