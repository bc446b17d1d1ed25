"""Datasets: a registry of names, their options, a cached pool per dataset, per-trial subsets.

Importing this package does not import torch: the option specs, checks and the cache
(:mod:`~bnstudy.data.spec`, :mod:`~bnstudy.data.pool`) are NumPy only, so a protocol can be
validated where no GPU stack is installed. ``Dataset`` and ``build_dataset`` load torch on
first use.

The flow: the protocol validator calls :func:`check_dataset` (files present and parseable),
:func:`input_shape` / :func:`input_kind` (network/data match) and :func:`max_train_per_class`
(enough images); the runner records :func:`source_fingerprint` (which files each dataset is
read from) with the results and calls :func:`prepare_dataset` once per dataset in the parent; each
trial calls ``build_dataset(trial, options)``, which loads the cached pool (once per process)
and applies the trial's imbalance profile to the training split only (``trial.train_per_class``
is the head class's count, ``trial.imbalance_ratio`` the head/tail ratio), drawing the subset
from the trial's ``"subset"`` random stream so every arm of a pairing block trains on the same
images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bnstudy import lazy
from bnstudy.data.imbalance import PROFILES, longtail_counts, profile_counts, training_counts
from bnstudy.data.pool import (
    Pool,
    cache_dir,
    cache_path,
    check_dataset,
    input_kind,
    input_shape,
    load_pool,
    max_train_per_class,
    num_classes,
    pool_class_counts,
    prepare_dataset,
    source_fingerprint,
)
from bnstudy.data.spec import (
    SPECS,
    DatasetError,
    DatasetSpec,
    OptionSpec,
    dataset_names,
    dataset_options,
    dataset_spec,
    identity_options,
    resolve_options,
)

if TYPE_CHECKING:
    from bnstudy.data.build import build_dataset
    from bnstudy.data.dataset import Dataset

__all__ = [
    "PROFILES",
    "SPECS",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "OptionSpec",
    "Pool",
    "build_dataset",
    "cache_dir",
    "cache_path",
    "check_dataset",
    "dataset_names",
    "dataset_options",
    "dataset_spec",
    "identity_options",
    "input_kind",
    "input_shape",
    "load_pool",
    "longtail_counts",
    "max_train_per_class",
    "num_classes",
    "pool_class_counts",
    "prepare_dataset",
    "profile_counts",
    "resolve_options",
    "source_fingerprint",
    "training_counts",
]

#: Names whose modules import torch, loaded on first access (PEP 562).
_LAZY = {"Dataset": "bnstudy.data.dataset", "build_dataset": "bnstudy.data.build"}


__getattr__ = lazy.attributes(__name__, _LAZY, globals())
