import hashlib

import numpy as np
import pytest

from bnstudy.data import (
    DatasetError,
    check_dataset,
    identity_options,
    input_kind,
    input_shape,
    load_pool,
    num_classes,
)


def _write(path, x_train, y_train, x_test, y_test, **extra):
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return path


@pytest.fixture
def vectors(tmp_path):
    """(n, 1) vectors whose value is the image's index in x_train, 3 classes of 20 images."""
    y = np.repeat(np.arange(3), 20)
    x = np.arange(60, dtype=np.float32)[:, None]
    return _write(tmp_path / "v.npz", x, y, np.full((6, 1), -1.0), np.arange(6) % 3)


@pytest.mark.parametrize(
    ("shape", "layout", "expected", "kind"),
    [
        ((5,), "auto", (5,), "vector"),
        ((6, 7), "auto", (1, 6, 7), "image"),
        ((2, 6, 7), "auto", (2, 6, 7), "image"),
        ((6, 7, 3), "nhwc", (3, 6, 7), "image"),
        ((2, 9), "ncl", (2, 9), "signal"),
        ((9,), "nl", (1, 9), "signal"),
    ],
)
def test_layouts(tmp_path, shape, layout, expected, kind):
    y = np.arange(4) % 2
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    path = _write(tmp_path / "d.npz", x, y, x[:2], y[:2])
    options = {"path": str(path), "layout": layout, "val_fraction": 0.0}
    assert input_shape("npz", options) == expected
    assert input_kind("npz", options) == kind
    assert num_classes("npz", options) == 2
    pool = load_pool("npz", options)
    assert pool.input_shape == expected
    if layout == "nhwc":
        assert np.array_equal(pool.x_train, x.transpose(0, 3, 1, 2))


def test_val_split_is_stratified_and_disjoint(vectors):
    pool = load_pool("npz", {"path": str(vectors), "val_fraction": 0.25})
    assert np.bincount(pool.y_val).tolist() == [5, 5, 5]
    assert pool.class_counts() == [15, 15, 15]
    train, val = set(pool.x_train[:, 0].tolist()), set(pool.x_val[:, 0].tolist())
    assert not train & val and train | val == set(range(60))
    assert set(pool.x_test[:, 0].tolist()) == {-1.0}
    # Each image keeps its own label.
    assert np.array_equal(pool.y_train, pool.x_train[:, 0].astype(int) // 20)


def test_labels_must_be_zero_to_c_minus_one(tmp_path):
    x = np.zeros((4, 2), np.float32)
    path = _write(tmp_path / "gap.npz", x, np.array([0, 2, 2, 0]), x, np.array([0, 1, 2, 2]))
    with pytest.raises(DatasetError, match=r"classes 1 of 0\.\.2 have no training image"):
        check_dataset("npz", {"path": str(path)})
    path = _write(tmp_path / "float.npz", x, np.zeros(4), x, np.zeros(4, int))
    with pytest.raises(DatasetError, match="y_train must be integers"):
        check_dataset("npz", {"path": str(path)})
    path = _write(tmp_path / "neg.npz", x, np.array([0, 1, -1, 0]), x, np.zeros(4, int))
    with pytest.raises(DatasetError, match="found -1"):
        check_dataset("npz", {"path": str(path)})


def test_missing_keys_and_files(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2, int))
    with pytest.raises(DatasetError) as info:
        check_dataset("npz", {"path": str(tmp_path / "partial.npz")})
    assert str(info.value) == (
        f"{tmp_path / 'partial.npz'}: missing x_test, y_test "
        "(expected a .npz with arrays x_train, y_train, x_test, y_test)"
    )
    with pytest.raises(DatasetError, match="file not found"):
        check_dataset("npz", {"path": str(tmp_path / "nothing.npz")})
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        check_dataset("npz", {"path": str(tmp_path / "junk.npz")})


def test_object_arrays_are_never_unpickled(tmp_path):
    x = np.empty(2, dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=x, y_train=np.zeros(2, int), x_test=x, y_test=np.zeros(2, int))
    with pytest.raises(DatasetError, match="dtype object"):
        check_dataset("npz", {"path": str(path)})


def test_layout_rank_mismatch(vectors):
    with pytest.raises(DatasetError, match="layout 'nhwc' needs rank 4"):
        check_dataset("npz", {"path": str(vectors), "layout": "nhwc"})


def test_sha256_pin_checked_and_in_identity(vectors):
    digest = hashlib.sha256(vectors.read_bytes()).hexdigest()
    options = {"path": str(vectors), "sha256": digest}
    check_dataset("npz", options)
    assert identity_options("npz", options) == {"sha256": digest}
    assert identity_options("npz", {"path": str(vectors)}) == {}
    with pytest.raises(DatasetError, match="SHA-256 is"):
        check_dataset("npz", {"path": str(vectors), "sha256": "0" * 64})


def test_changed_file_is_rebuilt_not_served_stale(vectors):
    first = load_pool("npz", {"path": str(vectors), "val_fraction": 0.0})
    y = np.repeat(np.arange(3), 20)
    _write(vectors, np.ones((60, 1), np.float32), y, np.ones((6, 1)), np.arange(6) % 3)
    second = load_pool("npz", {"path": str(vectors), "val_fraction": 0.0})
    assert first.x_train[:, 0].max() == 59 and second.x_train[:, 0].max() == 1
