"""Dataset registry: a name maps to a builder of the full balanced pool; trials subsample it.

``build_dataset(trial)`` applies the trial's long-tail profile to the training split only
(``trial.train_per_class`` is the head class's count, ``trial.imbalance_ratio`` the head/tail
ratio), drawing the subset from the trial's ``"subset"`` random stream so every arm of a
pairing block trains on the same images.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

import torch

from bnstudy.data.dataset import Dataset
from bnstudy.data.imbalance import longtail_counts, subsample
from bnstudy.data.synthetic import synthetic_pool
from bnstudy.protocol import Trial

__all__ = ["DATASETS", "Dataset", "build_dataset", "dataset_names"]

#: name -> builder of the balanced pool (cached by the builder itself).
DATASETS: dict[str, Callable[[], Dataset]] = {
    "synthetic": synthetic_pool,
}


def dataset_names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(DATASETS)


def build_dataset(trial: Trial) -> Dataset:
    """The trial's dataset: a long-tail subset of the pool's training split, its full test split."""
    builder = DATASETS.get(trial.dataset)
    if builder is None:
        close = difflib.get_close_matches(trial.dataset, DATASETS, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(
            f"unknown dataset {trial.dataset!r}{hint}; known: {', '.join(dataset_names())}"
        )
    pool = builder()
    counts = longtail_counts(trial.train_per_class, pool.num_classes, trial.imbalance_ratio)
    generator = torch.Generator().manual_seed(trial.stream_seed("subset"))
    index = subsample(pool.y_train, counts, generator)
    return dataclasses.replace(
        pool, x_train=pool.x_train[index], y_train=pool.y_train[index], class_counts=counts
    )
