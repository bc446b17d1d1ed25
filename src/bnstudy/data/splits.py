"""Fixed, seeded splits of a dataset's images and the statistics that standardise them.

Splits are drawn from keyed hashes, not from a library's random generator, so they are the
same on every machine and under every NumPy version: a cache rebuilt years later holds the
same validation images.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_keys(n: int, salt: str) -> np.ndarray:
    """``n`` pseudo-random uint64 sort keys, a pure function of ``salt`` and the index."""
    prefix = salt.encode() + b"/"
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest())
            for i in range(n)
        ),
        dtype=np.uint64,
        count=n,
    )


def stratified_holdout(labels: np.ndarray, fraction: float, salt: str) -> np.ndarray:
    """A boolean mask (n,) holding out ``fraction`` of every class, chosen by ``salt``.

    Class ``c`` with ``n_c`` images contributes ``floor(fraction * n_c + 0.5)`` of them (its
    images with the smallest keys), so the held-out split has the pool's class proportions.
    """
    keys = stable_keys(len(labels), salt)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = int(np.floor(fraction * len(members) + 0.5))
        mask[members[np.argsort(keys[members], kind="stable")[:take]]] = True
    return mask


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (unbiased) std, float64 (C,), of x (n, C, ...), or (n, D) as C = 1.

    Two chunked passes in float64, so a uint8 image pool is never copied whole to float. A
    channel with zero spread gets std 1 (it is then only centred).
    """
    n = len(x)
    flat = x.reshape(n, x.shape[1] if x.ndim > 2 else 1, -1)
    count = n * flat.shape[2]
    total = np.zeros(flat.shape[1])
    for start in range(0, n, chunk):
        total += flat[start : start + chunk].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(flat.shape[1])
    for start in range(0, n, chunk):
        centred = flat[start : start + chunk].astype(np.float64) - mean[None, :, None]
        squares += np.square(centred).sum(axis=(0, 2))
    std = np.sqrt(squares / max(count - 1, 1))
    std[~(std > 0)] = 1.0
    return mean, std
