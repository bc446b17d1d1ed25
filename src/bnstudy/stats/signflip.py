"""A sign-flip test on condition means: the model-free robustness check of the overall effect.

The unit the analysis generalises over is the condition, so the check works on the G
condition means of the paired differences. Under H0 (the effect is 0 on average, and each
condition's mean difference is symmetric about its expectation, as it is when condition
deviations and seed noise are symmetric) every pattern of signs of the G means is equally
likely. The p-value is the share of the 2^G sign patterns whose |sum| reaches the observed
one: exact by enumeration for G <= :data:`EXACT_MAX`, Monte Carlo (with the +1 correction,
so still valid) beyond.

It replaced a Wilcoxon signed-rank test that fell back to the pairing blocks when there were
few conditions: blocks ignore how the effect varies between conditions, and that test
rejected 13.7% of null analyses against the model's 1.3%. This one never falls back. With G
conditions the smallest attainable p is 2 / 2^G, so with G <= 5 it cannot reject at 5%:
:attr:`SignFlip.can_reject` says so, and the analysis reports it as "no power" rather than
as disagreement with the model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Up to this many conditions every sign pattern is enumerated (2^12 = 4,096).
EXACT_MAX = 12


@dataclasses.dataclass(frozen=True)
class SignFlip:
    """Result of :func:`sign_flip_test`."""

    p: float
    min_p: float  # the smallest p-value attainable with this many conditions
    n_units: int
    exact: bool
    replicates: int  # sign patterns used (2^G when exact)

    def can_reject(self, alpha: float) -> bool:
        return self.min_p < alpha


def sign_flip_test(means: np.ndarray, replicates: int = 10_000, seed: int = 0) -> SignFlip:
    """Two-sided sign-flip test of H0: E[mean] = 0 from independent, symmetric ``means`` (G,).

    Exact for G <= :data:`EXACT_MAX`, else ``replicates`` random sign patterns. A G of 0
    gives p = nan; all-zero means give p = 1.
    """
    m = np.asarray(means, float)
    m = m[np.isfinite(m)]
    G = len(m)
    if G == 0:
        return SignFlip(float("nan"), 1.0, 0, True, 0)
    observed = abs(float(m.sum()))
    tol = 1e-12 * max(float(np.abs(m).sum()), 1e-300)
    if G <= EXACT_MAX:
        patterns = np.arange(2**G, dtype=np.int64)[:, None] >> np.arange(G) & 1
        totals = np.abs((1 - 2 * patterns) @ m)
        p = float(np.mean(totals >= observed - tol))
        return SignFlip(p, 2.0 / 2**G, G, True, 2**G)
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    chunk = max(1, 2_000_000 // G)
    while done < replicates:
        b = min(chunk, replicates - done)
        signs = rng.integers(0, 2, size=(b, G)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ m) >= observed - tol))
        done += b
    p = (hits + 1) / (replicates + 1)
    return SignFlip(float(p), max(2.0 / 2**G, 1 / (replicates + 1)), G, False, replicates)
