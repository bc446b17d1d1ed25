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
