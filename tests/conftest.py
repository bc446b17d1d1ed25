"""Shared test helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Callable, Iterator

import pytest

from bnstudy.spec.trial import Trial

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


def float64_dataset(build):
    """``build_dataset`` run as in production (float32: the synthetic pool's draws depend on
    the default dtype), then cast to float64 with the test and validation splits thinned
    8-fold (both paths compared see the same thinned splits: what is compared is the code)."""
    import torch

    def build_float64(trial, options=None):
        dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            dataset = build(trial, options)
        finally:
            torch.set_default_dtype(dtype)
        return dataclasses.replace(
            dataset,
            x_train=dataset.x_train.double(),
            x_test=dataset.x_test[::8].double(),
            y_test=dataset.y_test[::8].clone(),
            x_val=dataset.x_val[::8].double(),
            y_val=dataset.y_val[::8].clone(),
        )

    return build_float64


@pytest.fixture
def float64(monkeypatch):
    """Train in float64, a trial alone and a pack alike, on the same (thinned) data: there two
    code paths that should agree do so to about 1e-12 on any CPU, where float32 results differ
    by summation order (tests/test_packing.py measures both)."""
    import torch

    from bnstudy.training import packing, train

    monkeypatch.setattr(train, "build_dataset", float64_dataset(train.build_dataset))
    monkeypatch.setattr(packing, "build_dataset", float64_dataset(packing.build_dataset))
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


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


@pytest.fixture
def deadline() -> Callable[[float], contextlib.AbstractContextManager[None]]:
    """``with deadline(seconds):`` raises TimeoutError instead of hanging (on a FIFO, an endless
    read): SIGALRM's handler raising interrupts a blocked open or read, and a thread would not."""

    @contextlib.contextmanager
    def limit(seconds: float) -> Iterator[None]:
        def expire(signum: int, frame: object) -> None:
            raise TimeoutError(f"still running after {seconds} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return limit
