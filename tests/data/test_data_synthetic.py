import torch

from bnstudy.data.synthetic import synthetic_pool


def test_pool_shapes_balance_and_standardization():
    pool = synthetic_pool()
    assert pool.x_train.shape == (10_000, 3, 16, 16) and pool.x_train.dtype == torch.float32
    assert pool.x_test.shape == (2_000, 3, 16, 16)
    assert torch.bincount(pool.y_train).tolist() == [1000] * 10
    assert torch.bincount(pool.y_test).tolist() == [200] * 10
    assert pool.input_shape == (3, 16, 16) and pool.num_classes == 10
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
