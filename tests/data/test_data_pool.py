import os

import numpy as np
import pytest
import torch

from bnstudy.data import (
    DatasetError,
    build_dataset,
    cache_dir,
    check_dataset,
    load_pool,
    max_train_per_class,
    pool_class_counts,
    prepare_dataset,
)
from bnstudy.data import pool as pool_module


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    build = pool_module.build_pool

    def counting(name, options=None):
        calls.append(name)
        return build(name, options)

    monkeypatch.setattr(pool_module, "build_pool", counting)
    return calls


def test_prepare_writes_once_and_reuses(cifar10_dir, count_builds, _cache_in_tmp):
    options = {"path": str(cifar10_dir)}
    path = prepare_dataset("cifar10", options)
    assert path.parent == _cache_in_tmp == cache_dir()
    assert path.name.startswith("cifar10-") and path.name.endswith("-v1.npz")
    assert prepare_dataset("cifar10", options) == path
    assert count_builds == ["cifar10"]
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as archive:
        assert {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "meta"} <= set(
            archive.files
        )


def test_moved_files_are_read_from_their_new_place(cifar10_dir, count_builds, tmp_path):
    first = prepare_dataset("cifar10", {"path": str(cifar10_dir)})
    moved = cifar10_dir.rename(tmp_path / "elsewhere")
    # The cache is keyed by the files' resolved paths: a pool is never served for a path
    # whose files are gone, and the files at the new place are read.
    with pytest.raises(DatasetError, match="not a directory"):
        check_dataset("cifar10", {"path": str(cifar10_dir)})
    second = prepare_dataset("cifar10", {"path": str(moved)})
    assert second != first and count_builds == ["cifar10", "cifar10"]


def test_data_changing_option_gets_its_own_cache(cifar10_dir, count_builds):
    a = prepare_dataset("cifar10", {"path": str(cifar10_dir)})
    b = prepare_dataset("cifar10", {"path": str(cifar10_dir), "val_fraction": 0.2})
    assert a != b and count_builds == ["cifar10", "cifar10"]
    assert (
        load_pool("cifar10", {"path": str(cifar10_dir), "val_fraction": 0.2}).class_counts()
        == [8] * 10
    )


def test_workers_load_the_cache_once_per_process(cifar10_dir, count_builds):
    options = {"path": str(cifar10_dir)}
    prepare_dataset("cifar10", options)
    assert load_pool("cifar10", options) is load_pool("cifar10", options)
    assert count_builds == ["cifar10"]


def test_val_split_is_stratified_disjoint_and_fixed(cifar10_dir):
    pool = load_pool("cifar10", {"path": str(cifar10_dir), "val_fraction": 0.2})
    assert np.bincount(pool.y_val).tolist() == [2] * 10
    # Images are random bytes: rows identify images.
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    train, val, test = rows(pool.x_train), rows(pool.x_val), rows(pool.x_test)
    assert len(train) == 80 and len(val) == 20 and len(test) == 30
    assert not train & val and not val & test and not train & test
    assert np.array_equal(pool.x_val[:, 0, 0, 0], pool.y_val)  # labels travel with images
    again = pool_module.build_pool("cifar10", {"path": str(cifar10_dir), "val_fraction": 0.2})
    assert np.array_equal(again.x_val, pool.x_val)


def test_build_dataset_standardises_and_keeps_val_and_test_whole(cifar10_dir, make_trial):
    options = {"path": str(cifar10_dir)}
    data = build_dataset(
        make_trial(dataset="cifar10", train_per_class=9, imbalance_ratio=3.0), options
    )
    assert data.x_train.dtype == torch.float32 and data.input_shape == (3, 32, 32)
    assert torch.bincount(data.y_train, minlength=10).tolist() == data.class_counts
    assert data.class_counts[0] == 9 and data.class_counts[-1] == 3
    assert torch.bincount(data.y_val).tolist() == [1] * 10
    assert torch.bincount(data.y_test).tolist() == [3] * 10
    full = build_dataset(make_trial(dataset="cifar10", train_per_class=9), options)
    channel_mean = full.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(channel_mean, torch.zeros(3), atol=1e-5)


def test_train_per_class_beyond_the_pool_is_a_clear_error(cifar10_dir, make_trial):
    options = {"path": str(cifar10_dir)}
    assert pool_class_counts("cifar10", options) == [9] * 10
    assert max_train_per_class("cifar10", options) == 9
    with pytest.raises(DatasetError, match=r"train_per_class = 10.*only 9 images of class 0"):
        build_dataset(make_trial(dataset="cifar10", train_per_class=10), options)


def test_cache_dir_defaults_to_data_datasets(monkeypatch):
    monkeypatch.delenv("BNSTUDY_DATA_DIR")
    assert str(cache_dir()) == os.path.join("data", "datasets")
