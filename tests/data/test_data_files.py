"""User paths that are not regular files, and archives whose headers lie about their size.

Each must be a one-line DatasetError, promptly: a FIFO used to block ``validate`` and ``run``
forever, ``/dev/zero`` to exhaust memory, an npz declaring a 7 TiB array to end in a traceback.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bnstudy.data import DatasetError, check_dataset, load_pool, prepare_dataset


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("sha256", ["", "0" * 64])
def test_a_fifo_as_npz_path_is_refused_without_opening_it(tmp_path, deadline, sha256):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    options = {"path": str(fifo), "sha256": sha256}
    for step in (check_dataset, prepare_dataset, load_pool):
        with deadline(5), pytest.raises(DatasetError) as info:
            step("npz", options)
        assert _one_line(info) == (
            f"{fifo}: is a named pipe (FIFO), not a regular file "
            "(expected a .npz with arrays x_train, y_train, x_test, y_test)"
        )


@pytest.mark.parametrize("sha256", ["", "0" * 64])
def test_dev_zero_as_npz_path_is_refused(deadline, sha256):
    for step in (check_dataset, prepare_dataset):
        with deadline(5), pytest.raises(DatasetError, match="character device") as info:
            step("npz", {"path": "/dev/zero", "sha256": sha256})
        assert _one_line(info).startswith("/dev/zero: ")


def test_a_device_or_fifo_among_cifar_files_is_refused(cifar10_dir, deadline):
    (cifar10_dir / "data_batch_2").unlink()
    (cifar10_dir / "data_batch_2").symlink_to("/dev/zero")
    with deadline(5), pytest.raises(DatasetError) as info:
        check_dataset("cifar10", {"path": str(cifar10_dir)})
    assert _one_line(info).startswith(f"{cifar10_dir / 'data_batch_2'}: is a character device")
    (cifar10_dir / "data_batch_2").unlink()
    os.mkfifo(cifar10_dir / "data_batch_2")
    with deadline(5), pytest.raises(DatasetError, match="data_batch_2: is a named pipe"):
        load_pool("cifar10", {"path": str(cifar10_dir)})


def test_a_fifo_among_idx_files_is_refused(make_idx_dir, deadline):
    directory = make_idx_dir()
    (directory / "t10k-labels-idx1-ubyte").unlink()
    os.mkfifo(directory / "t10k-labels-idx1-ubyte")
    with deadline(5), pytest.raises(DatasetError) as info:
        check_dataset("mnist", {"path": str(directory)})
    assert _one_line(info).startswith(f"{directory / 't10k-labels-idx1-ubyte'}: is a named pipe")


def _npy(shape: tuple[int, ...], descr: str, payload: bytes) -> bytes:
    """A .npy member whose header declares ``shape`` but whose data is only ``payload``."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + payload


def test_an_npz_declaring_more_than_its_member_holds_is_refused_before_reading(tmp_path):
    # 1 KB on disk; the labels' header declares 10**12 int64 values (7.3 TiB)
    n = 10**12
    path = tmp_path / "crafted.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", _npy((n, 1), "|u1", b"\0" * 16))
        archive.writestr("y_train.npy", _npy((n,), "<i8", b"\0" * 16))
        archive.writestr("x_test.npy", _npy((2, 1), "|u1", b"\0" * 2))
        archive.writestr("y_test.npy", _npy((2,), "<i8", b"\0" * 16))
    assert path.stat().st_size < 1024
    for step in (check_dataset, prepare_dataset):
        with pytest.raises(DatasetError) as info:
            step("npz", {"path": str(path)})
        message = _one_line(info)
        assert message.startswith(f"{path}: x_train declares shape ({n}, 1) of uint8")
        assert "1000000000000 bytes, but its archive member holds 16" in message


def test_regular_file_says_what_the_path_is(tmp_path):
    from bnstudy.data.files import regular_file

    (tmp_path / "f").write_bytes(b"abc")
    assert regular_file(tmp_path / "f").st_size == 3
    os.mkfifo(tmp_path / "pipe")
    cases = [
        (tmp_path / "nothing", "file not found"),
        (tmp_path, "is a directory"),
        (tmp_path / "pipe", "is a named pipe (FIFO), not a regular file"),
        (Path("/dev/null"), "is a character device, not a regular file"),
    ]
    for path, why in cases:
        with pytest.raises(DatasetError) as info:
            regular_file(path, "what it should be")
        assert str(info.value) == f"{path}: {why} (expected what it should be)"
