"""Class-imbalance profiles and the subsampling that applies them to a training pool."""

from __future__ import annotations

import torch


def longtail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Per-class training counts of the exponential long-tail profile (Cui et al. 2019).

    ``n_i = int(n_max * ratio ** (-i / (C - 1)))`` for class ``i`` in ``0..C-1``: class 0 keeps
    ``n_max`` images and the last class ``n_max / ratio``. ``ratio == 1`` is balanced.
    Returns ``num_classes`` ints.
    """
    if n_max < 1 or num_classes < 1 or ratio < 1:
        raise ValueError(
            f"longtail_counts: need n_max >= 1, num_classes >= 1, ratio >= 1; "
            f"got n_max={n_max}, num_classes={num_classes}, ratio={ratio}"
        )
    if num_classes == 1:
        return [n_max]
    return [int(n_max * ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]


def subsample(labels: torch.Tensor, counts: list[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of a class-wise subset: the first ``counts[c]`` of a random permutation of class c.

    ``labels``: int tensor (n,) with values in ``0..len(counts)-1``. Returns a sorted int64
    tensor of ``sum(counts)`` indices into ``labels``. Classes are visited in order, each with
    its own permutation drawn from ``generator``, so a class's subset does not depend on how
    many images the other classes keep.
    """
    chosen = []
    for c, count in enumerate(counts):
        members = torch.nonzero(labels == c).flatten()
        if count > len(members):
            raise ValueError(
                f"subsample: class {c} needs {count} images but the pool has {len(members)}"
            )
        perm = torch.randperm(len(members), generator=generator)
        chosen.append(members[perm[:count]])
    return torch.sort(torch.cat(chosen)).values
