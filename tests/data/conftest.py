"""Fixture files in the official formats, written by the tests themselves (nothing downloaded).

- CIFAR python-version batches: dicts with byte-string keys pickled with protocol 2 exactly
  as Python 2's cPickle wrote them (str values as BINSTRING, NumPy arrays through
  ``numpy.core.multiarray._reconstruct``), so the reader is tested on the real layout.
- IDX files with the real magic numbers, plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch) -> Path:
    """Every data test caches pools in its own temporary directory, never in the repo."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("BNSTUDY_DATA_DIR", str(path))
    return path


# -- Python 2 pickles ---------------------------------------------------------------------


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _str(value: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING)."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<I", len(value)) + value


def _emit(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return _int(obj)
    if isinstance(obj, bytes):
        return _str(obj)
    if isinstance(obj, tuple):
        body = b"".join(_emit(v) for v in obj)
        if 1 <= len(obj) <= 3:  # TUPLE1, TUPLE2, TUPLE3
            return body + bytes([0x84 + len(obj)])
        return b"(" + body + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_emit(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_emit(k) + _emit(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8
        dtype = (
            b"cnumpy\ndtype\n"
            + _emit((b"u1", 0, 1))
            + b"R"
            + _emit((3, b"|", None, None, None, -1, -1, 0))
            + b"b"
        )
        state = b"(" + _int(1) + _emit(tuple(obj.shape)) + dtype + b"\x89"
        state += _str(np.ascontiguousarray(obj).tobytes()) + b"t"
        args = b"cnumpy\nndarray\n" + _emit((0,)) + _str(b"b") + b"\x87"
        return b"cnumpy.core.multiarray\n_reconstruct\n" + args + b"R" + state + b"b"
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    """``cPickle.dumps(obj, 2)`` as Python 2 wrote it (byte strings are Python 2 ``str``)."""
    return b"\x80\x02" + _emit(obj) + b"."


def _images(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """uint8 (n, 3072) images whose first byte is the label (so tests can trace rows)."""
    x = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    x[:, 0] = labels
    return x


@pytest.fixture
def cifar10_dir(tmp_path) -> Path:
    """A CIFAR-10 python-version directory: 5 batches of 20 images (2 per class), test 30."""
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name, per_class in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]:
        labels = [c for c in range(10) for _ in range(per_class)]
        batch = {
            b"batch_label": b"training batch 1 of 5",
            b"labels": labels,
            b"data": _images(rng, labels),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        (directory / name).write_bytes(py2_pickle(batch))
    return directory


@pytest.fixture
def cifar100_dir(tmp_path) -> Path:
    """A CIFAR-100 python-version directory: train 3 per class, test 1 per class."""
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    rng = np.random.default_rng(1)
    for name, per_class in (("train", 3), ("test", 1)):
        labels = [c for c in range(100) for _ in range(per_class)]
        batch = {
            b"filenames": [b"x.png"] * len(labels),
            b"batch_label": name.encode(),
            b"fine_labels": labels,
            b"coarse_labels": [c // 5 for c in labels],
            b"data": _images(rng, labels),
        }
        (directory / name).write_bytes(py2_pickle(batch))
    return directory


# -- IDX ----------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: magic (0, 0, 0x08 = uint8, ndim), big-endian uint32 dims, raw bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture
def make_idx_dir(tmp_path) -> Callable[..., Path]:
    """``make_idx_dir(gz=False, per_class=10)``: an MNIST-format directory of 28x28 images."""

    def make(gz: bool = False, per_class: int = 10, name: str = "mnist") -> Path:
        directory = tmp_path / f"{name}-{'gz' if gz else 'raw'}"
        directory.mkdir()
        rng = np.random.default_rng(2)
        for split, n in (("train", per_class), ("test", 2)):
            y = np.repeat(np.arange(10), n).astype(np.uint8)
            x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
            for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
                data = idx_bytes(array)
                target = directory / IDX_NAMES[key]
                if gz:
                    target = target.with_name(target.name + ".gz")
                    data = gzip.compress(data)
                target.write_bytes(data)
        return directory

    return make
