"""The in-memory dataset record a trial trains and evaluates on."""

from __future__ import annotations

import dataclasses
import statistics

import torch


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test tensors of one trial, on the CPU.

    ``x_*``: float32 (n, *input_shape); ``y_*``: int64 (n,) class ids in ``0..num_classes-1``.
    ``class_counts[c]`` is the number of *training* images of class ``c``. The test split is
    balanced whatever the training imbalance.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    class_counts: list[int]

    @property
    def minority_classes(self) -> list[int]:
        """Classes whose training count is strictly below the median class count.

        Under the exponential long-tail profile this is the tail half of the classes at every
        ratio > 1 (so minority recall averages the same classes across ratios); on a balanced
        set it is empty.
        """
        median = statistics.median(self.class_counts)
        return [c for c, n in enumerate(self.class_counts) if n < median]
