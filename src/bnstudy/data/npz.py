"""``npz``: any local ``.npz`` holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Read with ``np.load(allow_pickle=False)``, so a file cannot run code. Labels are integers
``0..C-1`` (C = largest label + 1; every class must occur in ``y_train``). How x maps to an
input is the ``layout`` option (see :mod:`bnstudy.data.spec`): by default ``(n, D)`` are
vectors, ``(n, H, W)`` one-channel images (a channel axis is added) and ``(n, C, H, W)``
channels-first images.

Nothing is opened before the path is known to be a regular file (a FIFO would block, a device
never end: :mod:`bnstudy.data.files`), and no array is read before its header's declared size
(shape x itemsize) is checked against the bytes its archive member holds: a 1 KB file whose
header declares 10**12 values must not make NumPy allocate terabytes.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np

from bnstudy.data.files import regular_file
from bnstudy.data.spec import DatasetError

KEYS = ("x_train", "y_train", "x_test", "y_test")
WHAT = "a .npz with arrays x_train, y_train, x_test, y_test"

#: layout -> (rank of x including the batch axis, how to reach (n, *input_shape)).
_LAYOUTS = {
    "nhwc": (4, "transpose"),
    "ncl": (3, "keep"),
    "nl": (2, "channel"),
}
_AUTO = {2: "keep", 3: "channel", 4: "keep"}


def file_sha256(path: Path) -> str:
    regular_file(path, WHAT)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array in the archive, read from the .npy headers only.

    Raises :class:`DatasetError` when an array's header declares more bytes than its archive
    member holds (a truncated or crafted file), so that nothing allocates what it declares.
    """
    regular_file(path, WHAT)
    out = {}
    sizes = {}  # the data bytes each member holds after its header
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    sizes[key] = info.file_size - f.tell()
                out[key] = (tuple(shape), dtype)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz ({exc}; expected {WHAT})") from None
    for key, (shape, dtype) in out.items():
        declared = math.prod(shape) * dtype.itemsize
        if declared > sizes[key]:
            raise DatasetError(
                f"{path}: {key} declares shape {shape} of {dtype}, {declared} bytes, but its "
                f"archive member holds {sizes[key]} (truncated or not a NumPy .npz)"
            )
    return out


def _input_shape(path: Path, shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    if layout == "auto":
        if len(shape) not in _AUTO:
            raise DatasetError(
                f"{path}: x_train has shape {shape}; layout 'auto' takes (n, D), (n, H, W) or "
                f"(n, C, H, W)"
            )
        how = _AUTO[len(shape)]
    else:
        rank, how = _LAYOUTS[layout]
        if len(shape) != rank:
            raise DatasetError(
                f"{path}: x_train has shape {shape}, layout {layout!r} needs rank {rank}"
            )
    if how == "transpose":
        return (shape[3], shape[1], shape[2])
    if how == "channel":
        return (1, *shape[1:])
    return tuple(shape[1:])


def _arrange(x: np.ndarray, layout: str) -> np.ndarray:
    """x (n, ...) as (n, *input_shape), C-contiguous."""
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout == "nl" or (layout == "auto" and x.ndim == 3):
        return x[:, None]
    return x


def inspect_npz(path: Path, layout: str) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` after checking keys, shapes, dtypes and the labels.

    Reads only the arrays' headers and the labels, never x.
    """
    headers = _headers(path)
    missing = [k for k in KEYS if k not in headers]
    if missing:
        raise DatasetError(f"{path}: missing {', '.join(missing)} (expected {WHAT})")
    x_shape, t_shape = headers["x_train"][0], headers["x_test"][0]
    for key in ("x_train", "x_test"):
        dtype = headers[key][1]
        if dtype.kind not in "uif":
            raise DatasetError(f"{path}: {key} has dtype {dtype}, expected integers or floats")
    input_shape = _input_shape(path, x_shape, layout)
    if t_shape[1:] != x_shape[1:]:
        raise DatasetError(f"{path}: x_test has shape {t_shape}, x_train {x_shape}")
    for split, n in (("train", x_shape[0]), ("test", t_shape[0])):
        shape, dtype = headers[f"y_{split}"]
        if dtype.kind not in "ui" or shape != (n,):
            raise DatasetError(
                f"{path}: y_{split} must be integers of shape ({n},), got {dtype} {shape}"
            )
    labels = _load(path, ("y_train", "y_test"))
    num_classes = _check_labels(path, labels["y_train"], labels["y_test"])
    return input_shape, num_classes


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot load ({exc}; expected {WHAT})") from None
    except MemoryError:  # sizes were checked against the archive's own (claimed) member sizes
        raise DatasetError(f"{path}: not enough memory to load {', '.join(keys)}") from None


def _check_labels(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    if len(y_train) == 0 or len(y_test) == 0:
        raise DatasetError(f"{path}: y_train and y_test must not be empty")
    low = min(y_train.min(), y_test.min())
    if low < 0:
        raise DatasetError(f"{path}: labels must be 0..C-1, found {low}")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    absent = np.flatnonzero(np.bincount(y_train.astype(np.int64), minlength=num_classes) == 0)
    if len(absent):
        shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
        raise DatasetError(
            f"{path}: labels must be 0..C-1 with every class in y_train; "
            f"classes {shown} of 0..{num_classes - 1} have no training image"
        )
    return num_classes


def read_npz(path: Path, layout: str) -> dict[str, np.ndarray]:
    """The four arrays, x as (n, *input_shape) (uint8 kept, other numbers float32), y int64."""
    inspect_npz(path, layout)
    arrays = _load(path, KEYS)
    out = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        x = x if x.dtype == np.uint8 else x.astype(np.float32)
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DatasetError(f"{path}: x_{split} holds NaN or infinite values")
        out[f"x_{split}"] = _arrange(x, layout)
        out[f"y_{split}"] = arrays[f"y_{split}"].astype(np.int64)
    return out
