"""The in-memory dataset record a trial trains and evaluates on."""

from __future__ import annotations

import dataclasses
import statistics

import torch


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train, validation and test tensors of one trial, on the CPU.

    ``x_*``: float32 (n, *input_shape), standardised with the training pool's per-channel
    statistics; ``y_*``: int64 (n,) class ids in ``0..num_classes-1``. ``class_counts[c]`` is
    the number of *training* images of class ``c``. Only the training split follows the
    trial's imbalance profile: the validation split (for model selection: learning rate,
    early stopping) and the test split are whole and never subsampled. The test split is the
    dataset's own test set (balanced for synthetic and CIFAR, near-balanced for the MNIST
    family); the validation split is a stratified holdout of the training pool (balanced for
    synthetic), disjoint from both.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    class_counts: list[int]
    # Added after the first release; at the end with defaults so older constructions still work.
    x_val: torch.Tensor = dataclasses.field(default_factory=lambda: torch.empty(0))
    y_val: torch.Tensor = dataclasses.field(
        default_factory=lambda: torch.empty(0, dtype=torch.int64)
    )

    @property
    def minority_classes(self) -> list[int]:
        """Classes trained on fewer images than the others, by ``class_counts``.

        The classes strictly below the median count; where none is (the median is itself a
        minority count, as under ``single_majority``, ``two_majority`` or a ``step`` with most
        classes minority), the classes strictly below the largest count. Under the
        exponential profile this is the tail half of the classes at every ratio > 1 (so
        minority recall averages the same classes across ratios); on a balanced set it is
        empty.
        """
        median = statistics.median(self.class_counts)
        below_median = [c for c, n in enumerate(self.class_counts) if n < median]
        if below_median:
            return below_median
        largest = max(self.class_counts, default=0)
        return [c for c, n in enumerate(self.class_counts) if n < largest]
