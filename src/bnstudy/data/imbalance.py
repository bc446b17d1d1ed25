"""Class-imbalance profiles and the subsampling that applies them to a training pool.

Every profile gives class ``i`` of ``C`` a training count from ``n_max`` (the head class's
count, ``trial.train_per_class``) and the ratio ``rho >= 1`` between the largest and smallest
count; at ``rho == 1`` every profile is balanced. ``train_per_class: all`` (``n_max`` 0,
:data:`WHOLE_POOL`) takes the pool as it is instead (:func:`training_counts`).

- ``exp`` (Cui et al. 2019): ``n_i = int(n_max * rho ** (-i / (C - 1)))``, the CIFAR-LT profile.
- ``step`` (Buda et al. 2018): the last ``floor(mu * C + 0.5)`` classes (a fraction ``mu``,
  ``step_fraction``) get ``int(n_max / rho)``, the others ``n_max``.
- ``single_majority``: class 0 keeps ``n_max``, every other class ``int(n_max / rho)``.
- ``two_majority``: classes 0 and 1 keep ``n_max``, every other class ``int(n_max / rho)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by subsample only: the counts are torch-free
    import torch

PROFILES = ("exp", "step", "single_majority", "two_majority")
#: ``n_max`` of a trial that takes its pool's every training image (``train_per_class: all``,
#: ``bnstudy.spec.trial.ALL_TRAIN``, which data may not import; a test keeps them equal).
WHOLE_POOL = 0


def longtail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """Per-class training counts of the exponential long-tail profile (Cui et al. 2019).

    ``n_i = int(n_max * ratio ** (-i / (C - 1)))`` for class ``i`` in ``0..C-1``: class 0 keeps
    ``n_max`` images and the last class ``n_max / ratio``. ``ratio == 1`` is balanced.
    Returns ``num_classes`` ints.
    """
    _check(n_max, num_classes, ratio)
    if num_classes == 1:
        return [n_max]
    return [int(n_max * ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]


def profile_counts(
    profile: str, n_max: int, num_classes: int, ratio: float, step_fraction: float = 0.5
) -> list[int]:
    """Per-class training counts (``num_classes`` ints) of imbalance ``profile``.

    See the module docstring for the profiles; ``step_fraction`` (``mu`` in [0, 1]) is used by
    ``step`` only. Raises ``ValueError`` for an unknown profile or out-of-range arguments.
    """
    if profile == "exp":
        return longtail_counts(n_max, num_classes, ratio)
    _check(n_max, num_classes, ratio)
    minority = int(n_max / ratio)
    if profile == "step":
        if not 0 <= step_fraction <= 1:
            raise ValueError(
                f"profile_counts: step_fraction must lie in [0, 1], got {step_fraction}"
            )
        n_minority = math.floor(step_fraction * num_classes + 0.5)
        n_majority = num_classes - n_minority
    elif profile == "single_majority":
        n_majority = 1
    elif profile == "two_majority":
        if num_classes < 2:
            raise ValueError("profile_counts: two_majority needs at least 2 classes")
        n_majority = 2
    else:
        raise ValueError(f"unknown imbalance profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return [n_max] * n_majority + [minority] * (num_classes - n_majority)


def training_counts(
    profile: str,
    n_max: int,
    pool_counts: list[int],
    ratio: float,
    step_fraction: float = 0.5,
) -> list[int]:
    """Per-class training counts of a trial on a pool holding ``pool_counts`` per class.

    :func:`profile_counts` with ``n_max`` for the head class, or at ``n_max ==``
    :data:`WHOLE_POOL` the pool's own counts (its every image, unbalanced), where ``ratio``
    must be 1: an imbalance profile needs a balanced count to shrink (``ValueError``).
    """
    if n_max != WHOLE_POOL:
        return profile_counts(profile, n_max, len(pool_counts), ratio, step_fraction)
    if ratio != 1:
        raise ValueError(
            f"training_counts: the whole pool (train_per_class all) takes no imbalance_ratio; "
            f"got {ratio:g}"
        )
    return list(pool_counts)


def _check(n_max: int, num_classes: int, ratio: float) -> None:
    if n_max < 1 or num_classes < 1 or not ratio >= 1:
        raise ValueError(
            f"profile counts: need n_max >= 1, num_classes >= 1, ratio >= 1; "
            f"got n_max={n_max}, num_classes={num_classes}, ratio={ratio}"
        )


def subsample(labels: torch.Tensor, counts: list[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of a class-wise subset: the first ``counts[c]`` of a random permutation of class c.

    ``labels``: int tensor (n,) with values in ``0..len(counts)-1``. Returns a sorted int64
    tensor of ``sum(counts)`` indices into ``labels``. Classes are visited in order, each with
    its own permutation drawn from ``generator``, so a class's subset does not depend on how
    many images the other classes keep.
    """
    import torch

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
