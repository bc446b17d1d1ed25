import numpy as np
import pytest
import torch

from bnstudy.data.synthetic import synthetic_pool

# Recorded from the pool as generated before the validation split was added (same images
# must come out: the val images are drawn after the test images).
TRAIN_SUM = -0.48459342744899914
TEST_SUM = 4566.1421024993615
TRAIN_123 = -0.0628696009516716


def test_pool_shapes_balance_and_standardization():
    pool = synthetic_pool()
    assert pool.x_train.shape == (10_000, 3, 16, 16) and pool.x_train.dtype == torch.float32
    assert pool.x_test.shape == (2_000, 3, 16, 16)
    assert torch.bincount(pool.y_train).tolist() == [1000] * 10
    assert torch.bincount(pool.y_test).tolist() == [200] * 10
    assert pool.input_shape == (3, 16, 16) and pool.num_classes == 10
    assert pool.x_val.shape == (1_000, 3, 16, 16)
    assert torch.bincount(pool.y_val).tolist() == [100] * 10
    channel_mean = pool.x_train.mean(dim=(0, 2, 3))
    channel_std = pool.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(channel_mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(channel_std, torch.ones(3), atol=1e-4)


def test_pool_is_deterministic_and_cached():
    first = synthetic_pool()
    synthetic_pool.cache_clear()
    second = synthetic_pool()
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test, second.x_test)
    assert synthetic_pool() is second  # cached per process


def test_pool_is_not_trivially_separable():
    """Nearest class mean on raw pixels is above chance but far from perfect."""
    pool = synthetic_pool()
    means = torch.stack([pool.x_train[pool.y_train == c].mean(0) for c in range(10)])
    distances = torch.cdist(pool.x_test.flatten(1), means.flatten(1))
    acc = (distances.argmin(1) == pool.y_test).float().mean().item()
    assert 0.2 < acc < 0.9


def test_train_and_test_unchanged_by_the_val_split():
    """Checksums of the pool as drawn before the validation images existed."""
    pool = synthetic_pool()
    assert pool.x_train.double().sum().item() == pytest.approx(TRAIN_SUM, abs=1e-4)
    assert pool.x_test.double().sum().item() == pytest.approx(TEST_SUM, rel=1e-7)
    assert pool.x_train[123, 1, 4, 5].item() == pytest.approx(TRAIN_123, rel=1e-6)


def test_val_images_are_new_draws():
    pool = synthetic_pool()
    flat = lambda x: {r.numpy().tobytes() for r in x.flatten(1)}  # noqa: E731
    assert not flat(pool.x_val) & flat(pool.x_test)
    assert not flat(pool.x_val[:100]) & flat(pool.x_train)


def test_the_pool_is_float32_whatever_the_default_dtype():
    import torch

    from bnstudy.data.synthetic import _sample, _smooth

    generator = torch.Generator().manual_seed(0)
    reference = _sample(_smooth(10, generator), 2, generator)[0]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        generator = torch.Generator().manual_seed(0)
        under_float64 = _sample(_smooth(10, generator), 2, generator)[0]
    finally:
        torch.set_default_dtype(previous)
    assert under_float64.dtype == torch.float32
    assert torch.equal(under_float64, reference)


def test_another_task_has_other_prototypes_and_leaves_task_0_unchanged():
    from bnstudy.data.pool import load_pool
    from bnstudy.data.spec import identity_options

    task0 = load_pool("synthetic")
    other = load_pool("synthetic", {"task": 1})
    assert other.x_train.shape == task0.x_train.shape
    assert not np.allclose(other.x_train, task0.x_train)
    assert load_pool("synthetic", {"task": 0}) is task0
    assert float(task0.x_train.sum(dtype=np.float64)) == pytest.approx(TRAIN_SUM, abs=1e-6)
    # Class means of task 1 classify task 0 test images no better than chance: another task.
    means = np.stack([other.x_train[other.y_train == c].mean(0) for c in range(10)])
    d = ((task0.x_test.reshape(len(task0.x_test), 1, -1) - means.reshape(1, 10, -1)) ** 2).sum(-1)
    assert (d.argmin(1) == task0.y_test).mean() < 0.2
    assert identity_options("synthetic", {"task": 0}) == {}
    assert identity_options("synthetic", {"task": 2}) == {"task": 2}


def test_the_pool_is_cached_on_disk_bit_for_bit(_cache_in_tmp, monkeypatch):
    """Built once (by the parent) and written like every other pool: a worker only loads it,
    and loads exactly the generated arrays, with no standardisation statistics (None)."""
    from bnstudy.data import pool as pool_module
    from bnstudy.data.pool import load_pool, max_train_per_class, prepare_dataset

    path = prepare_dataset("synthetic")
    assert path.parent == _cache_in_tmp and path.name.startswith("synthetic-")
    generated = synthetic_pool()
    monkeypatch.setattr(pool_module, "build_pool", lambda *a: pytest.fail("rebuilt"))
    loaded = load_pool("synthetic")
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            array = getattr(loaded, f"{part}_{split}")
            assert np.array_equal(array, getattr(generated, f"{part}_{split}").numpy())
            assert array.dtype == getattr(generated, f"{part}_{split}").numpy().dtype
    assert loaded.mean is None and loaded.std is None
    assert loaded.num_classes == 10 and loaded.input_shape == (3, 16, 16)
    assert max_train_per_class("synthetic") == 1000
    assert [p.name for p in _cache_in_tmp.iterdir()] == [path.name]


def test_a_trial_on_the_cached_pool_is_the_trial_on_the_generated_pool(make_trial, monkeypatch):
    """Same trial id and bit-identical results as when every process generated the pool."""
    from bnstudy.data import build as build_module
    from bnstudy.data.pool import build_pool
    from bnstudy.training.train import run_trial

    trial = make_trial(architecture="cnn", head="bn", epochs=1, imbalance_ratio=10.0)
    assert trial.trial_id == "b0805bd77840c620"  # as before the pool was cached
    cached = run_trial(trial)
    in_memory = build_pool("synthetic")  # generated here, never written
    monkeypatch.setattr(build_module, "load_pool", lambda name, options=None: in_memory)
    generated = run_trial(trial)
    assert cached.curves == generated.curves and cached.per_class == generated.per_class
    same = {k: v for k, v in cached.metrics.items() if k != "wall_s"}
    assert same.keys() <= generated.metrics.keys()
    assert all(
        np.isclose(v, generated.metrics[k], rtol=0, atol=0, equal_nan=True) for k, v in same.items()
    )
