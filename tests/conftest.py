"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bnstudy.protocol import Trial

#: A small, fast trial; tests override what they are about.
SMALL_TRIAL = dict(
    seed=0,
    architecture="mlp",
    head="plain",
    dataset="synthetic",
    imbalance_ratio=1.0,
    train_per_class=100,
    epochs=3,
    batch_size=32,
    lr=0.05,
    optimizer="sgd",
    weight_decay=5e-4,
)


@pytest.fixture
def make_trial() -> Callable[..., Trial]:
    """``make_trial(**overrides)``: a small trial with the given settings changed."""
    return lambda **overrides: Trial(**{**SMALL_TRIAL, **overrides})


@pytest.fixture(autouse=True, scope="session")
def _dataset_cache(tmp_path_factory):
    """Cache dataset pools (``synthetic`` included) in one directory for the session, never in
    the working directory; subprocesses (CLI, loky workers) inherit it. Data tests use their
    own directory per test (tests/data/conftest.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNSTUDY_DATA_DIR", str(tmp_path_factory.mktemp("datasets")))
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Train in tests as a worker trains: on one thread (steadier on a loaded 2-core machine,
    and the numbers a trial gives depend on the thread count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
