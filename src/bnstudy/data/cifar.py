"""CIFAR-10 and CIFAR-100 from the official "python version" files, read without trusting them.

The files are Python 2 pickles of dicts with byte-string keys (``b"data"``: uint8 (n, 3072),
rows of 1024 red, 1024 green and 1024 blue values; ``b"labels"`` or ``b"fine_labels"``: ints).
A pickle can run any code it names, so they are read with :class:`RestrictedUnpickler`, which
resolves only the three NumPy globals an array needs, and ``_codecs.encode`` for the files
re-pickled by Python 3 (which writes bytes that way at protocol 2), and refuses everything else.
Each file is checked to be a regular file before it is opened (:mod:`bnstudy.data.files`).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bnstudy.data.files import regular_file
from bnstudy.data.spec import DatasetError

IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32

#: name -> (training files, test files, label key, classes, what the files are).
LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bytes, int, str]] = {
    "cifar10": (
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
        10,
        "the CIFAR-10 python-version batch files data_batch_1..5, test_batch",
    ),
    "cifar100": (
        ("train",),
        ("test",),
        b"fine_labels",
        100,
        "the CIFAR-100 python-version files train, test",
    ),
}


def _reconstruct() -> Any:
    try:  # NumPy >= 2 (numpy.core is a deprecated alias there)
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for plain (non-object) dtypes only."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dtype


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3's pickle uses it for bytes at protocol 2: latin1 only."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed (latin1)")
    return codecs.encode(text, "latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves exactly the globals a pickled NumPy array references.

    Allowed: ``numpy.core.multiarray._reconstruct`` (and its NumPy 2 name
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and ``numpy.dtype`` (object
    dtypes refused), and ``_codecs.encode`` with the latin1 codec (how Python 3 pickles bytes
    at protocol 2: harmless, and torch's ``weights_only`` loader allows it too). Any other
    global, e.g. ``os.system``, raises ``UnpicklingError`` before it can be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }:
            return _reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def restricted_load(data: bytes) -> Any:
    """Unpickle ``data`` (a Python 2 pickle: ``encoding="bytes"``) with the restricted unpickler."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """x uint8 (n, 3, 32, 32), y int64 (n,) from one batch file; DatasetError naming it."""
    try:
        batch = restricted_load(path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise DatasetError(f"{path}: not a CIFAR python-version batch file ({exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(
            f"{path}: expected a dict with keys b'data' and {label_key!r}, got {keys}"
        )
    x, labels = batch[b"data"], batch[label_key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2:
        raise DatasetError(f"{path}: b'data' must be a uint8 (n, {_PIXELS}) array")
    if x.shape[1] != _PIXELS:
        raise DatasetError(f"{path}: b'data' has {x.shape[1]} columns, expected {_PIXELS}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {label_key!r} must be a list of integers") from None
    if y.shape != (len(x),):
        raise DatasetError(f"{path}: {len(x)} images but {y.size} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(f"{path}: labels must lie in 0..{num_classes - 1}")
    return x.reshape(-1, *IMAGE_SHAPE), y


def source_files(name: str, directory: Path) -> list[Path]:
    """The files :func:`read_cifar` reads (training, then test), each a regular, readable file.

    Raises :class:`DatasetError` naming the directory, the missing files or the file that is
    not a regular file (a FIFO, a device).
    """
    train_files, test_files, _, _, what = LAYOUTS[name]
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory (expected {what})")
    paths = [directory / f for f in train_files + test_files]
    missing = [p.name for p in paths if not os.path.exists(p)]
    if missing:
        raise DatasetError(f"{directory}: missing {', '.join(missing)} (expected {what})")
    for path in paths:
        regular_file(path, what)
    return paths


def read_cifar(name: str, directory: Path) -> dict[str, np.ndarray]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` of ``cifar10`` or ``cifar100``.

    Raises :class:`DatasetError` (one line, naming the directory or file) when a file is
    missing or malformed.
    """
    train_files, test_files, label_key, num_classes, _ = LAYOUTS[name]
    source_files(name, directory)  # every file there and a regular file before any is read
    out = {}
    for split, files in (("train", train_files), ("test", test_files)):
        parts = [_read_batch(directory / f, label_key, num_classes) for f in files]
        out[f"x_{split}"] = np.concatenate([x for x, _ in parts])
        out[f"y_{split}"] = np.concatenate([y for _, y in parts])
    return out
