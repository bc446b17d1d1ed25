"""A trial's :class:`Dataset`: the imbalanced training subset, the whole val and test splits."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bnstudy.data.dataset import Dataset
from bnstudy.data.imbalance import subsample, training_counts
from bnstudy.data.pool import Pool, load_pool
from bnstudy.data.spec import DatasetError

if TYPE_CHECKING:
    from bnstudy.spec.trial import Trial


def _tensor(pool: Pool, x: np.ndarray) -> torch.Tensor:
    """x as float32, standardised with the pool's per-channel training statistics."""
    t = torch.from_numpy(x)
    if pool.mean is None:  # already standardised (synthetic)
        return t
    shape = (1, -1, *([1] * (x.ndim - 2))) if x.ndim > 2 else (1, 1)
    mean = torch.from_numpy(pool.mean).float().reshape(shape)
    std = torch.from_numpy(pool.std).float().reshape(shape)
    return (t.float() - mean) / std


@functools.lru_cache(maxsize=2)
def _eval_tensors(pool: Pool) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool's standardised val and test images, made once per process and shared by every
    trial (like its int labels); callers must not modify them in place."""
    return _tensor(pool, pool.x_val), _tensor(pool, pool.x_test)


def check_pool_holds(pool: Pool, train_per_class: int) -> None:
    """Raise :class:`DatasetError` when a class has fewer than ``train_per_class`` images."""
    counts = pool.class_counts()
    short = [c for c, n in enumerate(counts) if n < train_per_class]
    if short:
        c = min(short, key=lambda k: counts[k])
        raise DatasetError(
            f"dataset {pool.name!r}: train_per_class = {train_per_class}, but the training pool "
            f"(after the validation holdout) holds only {counts[c]} images of class {c} "
            f"({len(short)} classes fall short); at most {min(counts)} per class"
        )


def build_dataset(trial: Trial, options: Mapping[str, Any] | None = None) -> Dataset:
    """The trial's dataset: its imbalanced subset of the training pool, the whole val and test.

    ``options``: the protocol's ``datasets.<name>`` section. The per-class counts follow the
    trial's ``imbalance_profile`` (default ``exp``) with ``n_max = train_per_class`` and
    ``rho = imbalance_ratio``; the subset is drawn from the trial's ``"subset"`` random stream,
    so every arm of a pairing block trains on the same images. At ``train_per_class`` 0
    (``all``) the subset is the whole training pool, in the pool's order. The pool is loaded
    from the cache that :func:`bnstudy.data.prepare_dataset` wrote (built here if missing).
    """
    pool = load_pool(trial.dataset, options)
    counts = training_counts(
        getattr(trial, "imbalance_profile", "exp"),
        trial.train_per_class,
        pool.class_counts(),
        trial.imbalance_ratio,
        getattr(trial, "step_fraction", 0.5),
    )
    check_pool_holds(pool, trial.train_per_class)
    generator = torch.Generator().manual_seed(trial.stream_seed("subset"))
    index = subsample(torch.from_numpy(pool.y_train), counts, generator).numpy()
    x_val, x_test = _eval_tensors(pool)
    return Dataset(
        x_train=_tensor(pool, pool.x_train[index]),
        y_train=torch.from_numpy(pool.y_train[index]),
        x_test=x_test,
        y_test=torch.from_numpy(pool.y_test),
        num_classes=pool.num_classes,
        input_shape=pool.input_shape,
        class_counts=counts,
        x_val=x_val,
        y_val=torch.from_numpy(pool.y_val),
    )
