"""Bootstraps of the paired-difference effect sizes, with BCa intervals, vectorised.

What is resampled decides what the interval is about:

- :func:`condition_bootstrap` resamples *conditions* (each with all its pairs): the
  generalising interval, about the population of conditions the study's conditions stand
  for, like the paired mixed model. Pairs are not resampled again within a resampled
  condition: a condition's mean already carries its pairs' noise, and resampling both stages
  counts that noise twice (Davison & Hinkley 1997, sec. 3.8).
- :func:`stratified_bootstrap` resamples pairs *within* each condition: conditional on the
  observed conditions (narrower when the effect varies across conditions, and not what the
  model's interval estimates). Used, and labelled so, when there are too few conditions
  (:data:`MIN_CONDITIONS`) for the condition bootstrap.
- :func:`block_bootstrap` resamples pairs i.i.d. (a single condition).

Every statistic (mean difference, d_z, probability of improvement) is a function of the
sums of d, d^2, the improvement score and the count, so one resampling pass serves all
three and the BCa jackknife (leave one resampled unit out) has a closed form.

The probability of improvement gets a Wilson score interval instead of a bootstrap one: when
every pair improves, every resample gives 1 and a bootstrap interval is the degenerate
"1 (1 to 1)". The Wilson interval is computed at the level the bootstrap resamples: with an
effective number of independent units n_eff = p(1 - p) / Var_boot(p) (the design effect),
kept between the number of resampled units and the number of pairs, and equal to the number
of resampled units (conditions) when the bootstrap variance is 0 (every pair improves, or
none does) -- the conservative choice, treating each condition as one observation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

from bnstudy.stats.effect_sizes import improvement_score

STATISTICS = ("mean_difference", "d_z", "probability_of_improvement")
_CHUNK_ELEMENTS = 4_000_000  # resampled indices held at once (memory ~32 MB)
#: Below this many conditions, resampling conditions gives too few distinct resamples (and
#: intervals far too narrow): the conditional, stratified bootstrap is used and labelled.
MIN_CONDITIONS = 10

GENERALISING = "conditions"
CONDITIONAL = "pairs within conditions"


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """Effect sizes with intervals: ``values[stat] = (estimate, ci_low, ci_high)``.

    ``resampled`` is :data:`GENERALISING` ("conditions") or :data:`CONDITIONAL` ("pairs
    within conditions"); ``method`` describes the interval of each statistic.
    """

    values: dict[str, tuple[float, float, float]]
    resampled: str
    method: dict[str, str]
    replicates: int


def _from_sums(n, s1, s2, s3) -> dict[str, np.ndarray]:
    mean = s1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 - n * mean**2) / (n - 1)
        dz = mean / np.sqrt(np.where(var > 0, var, np.nan))
    return {"mean_difference": mean, "d_z": dz, "probability_of_improvement": s3 / n}


def bca_interval(
    theta: float, boot: np.ndarray, jack: np.ndarray, confidence: float
) -> tuple[float, float]:
    """BCa interval from the estimate, bootstrap replicates (B,) and jackknife values (n,)."""
    boot = boot[np.isfinite(boot)]
    if not np.isfinite(theta) or len(boot) < 10 or not np.all(np.isfinite(jack)):
        return float("nan"), float("nan")
    # Ties count half, so a discrete statistic (probability of improvement) is not biased.
    frac = (np.sum(boot < theta) + 0.5 * np.sum(boot == theta)) / len(boot)
    z0 = special.ndtri(np.clip(frac, 1 / len(boot), 1 - 1 / len(boot)))
    dev = jack.mean() - jack
    denom = 6 * np.sum(dev**2) ** 1.5
    a = np.sum(dev**3) / denom if denom > 0 else 0.0
    alpha = (1 - confidence) / 2
    z = special.ndtri(np.array([alpha, 1 - alpha]))
    adj = special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
    low, high = np.quantile(boot, adj)
    return float(low), float(high)


def wilson_effective(p: float, n_eff: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n_eff`` independent units."""
    if not (np.isfinite(p) and n_eff > 0):
        return float("nan"), float("nan")
    z = special.ndtri(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _summarise(
    point: dict[str, float],
    boot: dict[str, np.ndarray],
    jack: dict[str, np.ndarray],
    confidence: float,
    units: int,
    n_pairs: int,
) -> tuple[dict[str, tuple[float, float, float]], float]:
    out = {
        k: (point[k], *bca_interval(point[k], boot[k], jack[k], confidence))
        for k in ("mean_difference", "d_z")
    }
    p = point["probability_of_improvement"]
    var = float(np.var(boot["probability_of_improvement"], ddof=1))
    n_eff = float(units)
    if var > 0 and 0 < p < 1:
        n_eff = float(np.clip(p * (1 - p) / var, units, n_pairs))
    out["probability_of_improvement"] = (p, *wilson_effective(p, n_eff, confidence))
    return out, n_eff


def _methods(kind: str, replicates: int, n_eff: float) -> dict[str, str]:
    bca = f"BCa bootstrap resampling {kind}, B={replicates}"
    return {
        "mean_difference": bca,
        "d_z": bca,
        "probability_of_improvement": (
            f"Wilson score interval on {n_eff:.4g} effective units (design effect from the "
            f"bootstrap resampling {kind}, B={replicates})"
        ),
    }


def _nan_result(point: dict[str, float], resampled: str, replicates: int) -> Bootstrap:
    return Bootstrap(
        {k: (point[k], float("nan"), float("nan")) for k in STATISTICS},
        resampled,
        {k: f"too few units to resample ({resampled})" for k in STATISTICS},
        replicates,
    )


def _sums(d: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(d, float)
    return d, d * d, improvement_score(d, direction)


def _resampled_sums(
    columns: Sequence[np.ndarray],
    draw: Callable[[int], np.ndarray],
    replicates: int,
    width: int,
) -> np.ndarray:
    """Sums of each of ``columns`` over ``replicates`` resamples: (len(columns), replicates).

    ``draw(k)`` gives the indices of k resamples, (k, width); drawn in chunks so that no more
    than :data:`_CHUNK_ELEMENTS` indices are held at once."""
    sums = np.empty((len(columns), replicates))
    step = max(1, _CHUNK_ELEMENTS // width)
    for start in range(0, replicates, step):
        stop = min(start + step, replicates)
        idx = draw(stop - start)
        for row, column in enumerate(columns):
            sums[row, start:stop] = column[idx].sum(axis=1)
    return sums


def condition_bootstrap(
    d: np.ndarray,
    groups: np.ndarray,
    direction: str,
    replicates: int,
    seed: int,
    confidence: float,
) -> Bootstrap:
    """Resample conditions (each with all its pairs): the generalising bootstrap.

    ``d`` (N,) paired differences, ``groups`` (N,) condition labels. The statistics pool the
    pairs of the resampled conditions; BCa with a leave-one-condition-out jackknife.
    """
    x1, x2, x3 = _sums(d, direction)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    G = int(g.max()) + 1 if len(g) else 0
    cn = np.bincount(g, minlength=G).astype(float)
    c1, c2, c3 = (np.bincount(g, x, minlength=G) for x in (x1, x2, x3))
    n = float(cn.sum())
    point = {k: float(v) for k, v in _from_sums(n, c1.sum(), c2.sum(), c3.sum()).items()}
    if G < 3:
        return _nan_result(point, GENERALISING, replicates)
    rng = np.random.default_rng(seed)
    sums = _resampled_sums(
        (cn, c1, c2, c3), lambda k: rng.integers(0, G, size=(k, G)), replicates, G
    )
    boot = _from_sums(*sums)
    jack = _from_sums(n - cn, c1.sum() - c1, c2.sum() - c2, c3.sum() - c3)
    values, n_eff = _summarise(point, boot, jack, confidence, G, int(n))
    return Bootstrap(values, GENERALISING, _methods("conditions", replicates, n_eff), replicates)


def stratified_bootstrap(
    d: np.ndarray,
    groups: np.ndarray,
    direction: str,
    replicates: int,
    seed: int,
    confidence: float,
) -> Bootstrap:
    """Resample pairs within each condition: conditional on the observed conditions.

    ``d`` (N,) paired differences, ``groups`` (N,) condition labels (one label: the i.i.d.
    bootstrap of pairs). BCa with a leave-one-pair-out jackknife.
    """
    x1, x2, x3 = _sums(d, direction)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    order = np.argsort(codes, kind="stable")  # each condition's pairs contiguous
    x1, x2, x3, g = x1[order], x2[order], x3[order], codes[order]
    n = len(x1)
    s1, s2, s3 = x1.sum(), x2.sum(), x3.sum()
    point = {k: float(v) for k, v in _from_sums(float(n), s1, s2, s3).items()}
    if n < 3:
        return _nan_result(point, CONDITIONAL, replicates)
    counts = np.bincount(g)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first, size = starts[g], counts[g]  # per position: its condition's slice of the pairs
    rng = np.random.default_rng(seed)

    def draw(k: int) -> np.ndarray:
        return first + np.minimum((rng.random((k, n)) * size).astype(np.int64), size - 1)

    sums = _resampled_sums((x1, x2, x3), draw, replicates, n)
    boot = _from_sums(float(n), *sums)
    jack = _from_sums(float(n - 1), s1 - x1, s2 - x2, s3 - x3)
    values, n_eff = _summarise(point, boot, jack, confidence, n, n)
    kind = "pairs within conditions" if len(counts) > 1 else "pairs"
    return Bootstrap(values, CONDITIONAL, _methods(kind, replicates, n_eff), replicates)


def effect_size_bootstrap(
    d: np.ndarray,
    groups: np.ndarray,
    direction: str,
    replicates: int,
    seed: int,
    confidence: float,
) -> Bootstrap:
    """The generalising condition bootstrap when there are at least :data:`MIN_CONDITIONS`
    conditions, else the conditional stratified one (``resampled`` says which)."""
    if len(np.unique(np.asarray(groups))) >= MIN_CONDITIONS:
        return condition_bootstrap(d, groups, direction, replicates, seed, confidence)
    return stratified_bootstrap(d, groups, direction, replicates, seed, confidence)


def block_bootstrap(
    d: np.ndarray, direction: str, replicates: int, seed: int, confidence: float
) -> dict[str, tuple[float, float, float]]:
    """BCa bootstrap of pairs resampled i.i.d. (one condition): {statistic: (estimate,
    ci_low, ci_high)} for each of :data:`STATISTICS` (the probability of improvement with
    its Wilson interval); nan intervals when n < 3."""
    d = np.asarray(d, float)
    return stratified_bootstrap(
        d, np.zeros(len(d), int), direction, replicates, seed, confidence
    ).values
