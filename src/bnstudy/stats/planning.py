"""Seed planning from a pilot: seeds per cell for a target CI half-width or power.

With G conditions, n seeds (pairs) per condition, within-condition SD sigma of the paired
differences and between-condition SD tau of the effect, the overall effect's standard error
is sqrt((tau^2 + sigma^2 / n) / G) and its CI half-width t_{G-1} times that. More seeds
shrink only the sigma part: the half-width cannot go below t_{G-1} tau / sqrt(G) (the
"floor"); beating it takes more conditions, not more seeds.

The pilot's paired differences are those of the primary analysis (intention to treat, see
:mod:`bnstudy.stats.imputation`), so a head that often fails in the pilot plans for the
spread its failures add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import Design
from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.paired import as_design, condition_columns, paired_differences

PLAN_COLUMNS = [
    "metric",
    "variant",
    "control",
    "target",
    "target_value",
    "unit",
    "n_conditions",
    "sigma_within",
    "tau",
    "pilot_pairs_per_condition",
    "seeds_per_condition",
    "achieved_halfwidth",
    "halfwidth_floor",
    "feasible",
    "note",
]
MAX_SEEDS = 100_000


def variance_components(d: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(sigma^2 within conditions, tau^2 between) of paired differences ``d`` by ``groups``.

    sigma^2 is the pooled within-condition variance; tau^2 the REML estimate of the paired
    model, or the moment estimate var(condition means) - mean(sigma^2 / n_g) when REML is not
    available; tau^2 = 0 with a single condition.
    """
    _, g = np.unique(groups, return_inverse=True)
    counts = np.bincount(g)
    means = np.bincount(g, d) / counts
    ss = np.bincount(g, (d - means[g]) ** 2)
    dof = len(d) - len(counts)
    sigma2 = float(ss.sum() / dof) if dof > 0 else float("nan")
    if len(counts) < 2:
        return sigma2, 0.0
    tau2 = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"]).tau2
    if not np.isfinite(tau2):
        tau2 = max(0.0, float(np.var(means, ddof=1) - np.mean(sigma2 / counts)))
    return sigma2, float(tau2)


def halfwidth(n: float, sigma2: float, tau2: float, G: int, confidence: float) -> float:
    """CI half-width of the overall effect with n pairs in each of G conditions."""
    df = G - 1 if G > 1 else max(n - 1, 1)
    return float(stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt((tau2 + sigma2 / n) / G))


def seeds_for_halfwidth(
    target: float, sigma2: float, tau2: float, G: int, confidence: float
) -> int | None:
    """Smallest n >= 2 with halfwidth(n) <= target; None when the floor is above target."""
    if halfwidth(MAX_SEEDS, sigma2, tau2, G, confidence) > target:
        return None
    lo, hi = 2, MAX_SEEDS  # halfwidth decreases in n: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if halfwidth(mid, sigma2, tau2, G, confidence) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def power_halfwidth(effect: float, power: float, df: float, confidence: float) -> float:
    """The CI half-width at which a two-sided t test on ``df`` degrees of freedom has
    ``power`` against ``effect``: |effect| t_{1-alpha/2} / (t_{1-alpha/2} + t_{power})."""
    q = stats.t.ppf(0.5 + confidence / 2, df)
    return float(abs(effect) * q / (q + stats.t.ppf(power, df)))


def seeds_for_power(
    effect: float, power: float, sigma2: float, tau2: float, G: int, confidence: float
) -> int | None:
    """Smallest n >= 2 whose half-width reaches :func:`power_halfwidth`; the t degrees of
    freedom are those of :func:`halfwidth` (G - 1, or n - 1 with a single condition, where
    they grow with n). None when no number of seeds reaches it."""

    def enough(n: int) -> bool:
        df = G - 1 if G > 1 else max(n - 1, 1)
        return halfwidth(n, sigma2, tau2, G, confidence) <= power_halfwidth(
            effect, power, df, confidence
        )

    if not enough(MAX_SEEDS):
        return None
    lo, hi = 2, MAX_SEEDS  # both sides improve with n: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _per_metric(
    name: str, given: Mapping[str, float] | None, design: Design, positive: bool
) -> dict[str, float]:
    """Validate a metric -> value mapping: primary metrics only, finite values, > 0 (or
    non-zero with ``positive`` False). Raises ValueError with a one-line message."""
    if given is None:
        return {}
    primary = list(design.metrics)
    if not isinstance(given, Mapping):
        raise ValueError(
            f"{name} must map metric names to values in the metric's units, e.g. "
            f"{{{primary[0]!r}: 0.5}}; got {given!r}"
        )
    out = {}
    for metric, value in given.items():
        if metric not in primary:
            what = "not a primary metric of this protocol" if metric in METRICS else "unknown"
            raise ValueError(
                f"{name} for metric {metric!r}: {what}; primary metrics: {', '.join(primary)}"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        ok = math.isfinite(number) and (number > 0 if positive else number != 0)
        if not ok:
            need = "a finite number > 0" if positive else "a finite non-zero number"
            raise ValueError(f"{name} for metric {metric!r} must be {need}, got {value!r}")
        out[metric] = number
    return out


def design_conditions(design: Design | Any, table: pd.DataFrame) -> int:
    """How many conditions the study has: from a Protocol's factor levels (exclusions
    applied), else the number of distinct conditions in ``table``."""
    combinations = getattr(design, "combinations", None)
    d = as_design(design)
    if callable(combinations):
        return len({tuple(str(c.get(k)) for k in d.conditions) for c in combinations()})
    cols = condition_columns(d, table)
    if table.empty:
        return 0
    return int(table.groupby(cols, dropna=False).ngroups) if cols else 1


def plan_seeds(
    table: pd.DataFrame,
    design: Design | Any,
    halfwidth: Mapping[str, float] | None = None,
    power: float = 0.8,
    effect: Mapping[str, float] | None = None,
    n_conditions: int | None = None,
) -> pd.DataFrame:
    """Seeds per cell (pairs per condition) needed, per primary metric x variant.

    Targets are per metric, in that metric's analysis units (pp for accuracies, nats for
    NLL): ``halfwidth`` maps metric -> CI half-width; ``effect`` maps metric -> an effect
    to detect with ``power`` at the protocol's alpha (two-sided; the half-width that does so
    is |effect| t_{1-alpha/2} / (t_{1-alpha/2} + t_{power})). A metric named in neither
    takes its equivalence margin as the half-width target. Variance components come from the
    pilot ``table``'s intention-to-treat pairs; the number of conditions is
    ``n_conditions``, else the protocol's (when ``design`` is a Protocol: its factor levels
    with exclusions applied), else the pilot's. Returns one row per metric x variant with
    :data:`PLAN_COLUMNS`.

    Raises ValueError for a metric that is not a primary metric of ``protocol``, a
    half-width that is not finite and > 0, an effect that is not finite and non-zero, a
    metric given both, or a power outside [0.5, 1).
    """
    G = int(n_conditions) if n_conditions is not None else design_conditions(design, table)
    design = as_design(design)
    widths = _per_metric("halfwidth", halfwidth, design, positive=True)
    effects = _per_metric("effect", effect, design, positive=False)
    both = [m for m in widths if m in effects]
    if both:
        raise ValueError(f"give a half-width or an effect for metric {both[0]!r}, not both")
    if effects and not (0.5 <= power < 1):
        raise ValueError(f"power must be in [0.5, 1), got {power!r}")
    rows = [
        _plan_row(table, design, metric, variant, G, widths, effects, power)
        for metric in design.metrics
        for variant in design.variants
    ]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _plan_row(
    table: pd.DataFrame,
    design: Design,
    metric: str,
    variant: str,
    G: int,
    widths: Mapping[str, float],
    effects: Mapping[str, float],
    power: float,
) -> dict[str, Any]:
    """One row of :func:`plan_seeds`: the seeds ``variant`` vs the control need on ``metric``."""
    conf = design.confidence
    row = dict(
        metric=metric,
        variant=variant,
        control=design.control,
        unit=METRICS[metric].unit,
        n_conditions=G,
    )
    if metric not in table.columns:
        return dict(row, feasible=False, note=f"no column {metric!r} in pilot")
    pairs = paired_differences(table, design, metric, variant)
    if pairs.n_pairs < 3 or pairs.n_pairs <= pairs.n_conditions:
        return dict(
            row,
            feasible=False,
            note=f"pilot has {pairs.n_pairs} pairs in "
            f"{pairs.n_conditions} conditions: need >= 2 per condition",
        )
    d = pairs.frame["d"].to_numpy()
    sigma2, tau2 = variance_components(d, pairs.frame["condition"].to_numpy())
    effect_m = effects.get(metric)
    if effect_m is not None:
        # With one condition the df (n - 1) depend on n: solved jointly below.
        target = power_halfwidth(effect_m, power, max(G - 1, 1), conf)
        what, value = f"power {power:g} at effect", effect_m
    elif metric in widths:
        target = widths[metric]
        what, value = "halfwidth", target
    else:
        target = design.metrics[metric].equivalence_margin
        what, value = "halfwidth (equivalence margin)", target
    floor = halfwidth_floor(tau2, G, conf)
    notes = []
    if pairs.n_conditions != G:
        notes.append(f"pilot covers {pairs.n_conditions} of {G} conditions")
    imputed = pairs.n_imputed_control + pairs.n_imputed_variant
    if imputed:
        notes.append(
            f"{imputed} pilot values are failed trials' declared scores ({design.failed_score})"
        )
    if target is None:
        return dict(row, feasible=False, note="no half-width, effect or margin")
    n = (
        seeds_for_power(effect_m, power, sigma2, tau2, G, conf)
        if effect_m is not None
        else seeds_for_halfwidth(target, sigma2, tau2, G, conf)
    )
    if n is None:
        notes.append(_out_of_reach(target, floor))
    return dict(
        row,
        target=what,
        target_value=value,
        sigma_within=math.sqrt(sigma2),
        tau=math.sqrt(tau2),
        pilot_pairs_per_condition=pairs.n_pairs / pairs.n_conditions,
        seeds_per_condition=n,
        halfwidth_floor=floor,
        feasible=n is not None,
        achieved_halfwidth=(_hw(n, sigma2, tau2, G, conf) if n is not None else np.nan),
        note="; ".join(notes),
    )


def _out_of_reach(target: float, floor: float) -> str:
    """Why no number of seeds reaches ``target``: the between-condition floor, or (with the
    floor below it, e.g. a single condition or tau = 0) the search's seed limit."""
    if floor >= target:
        return f"target {target:.3g} is below the floor {floor:.3g} set by tau: add conditions"
    return f"target {target:.3g} needs more than {MAX_SEEDS} seeds per condition"


def halfwidth_floor(tau2: float, G: int, confidence: float) -> float:
    """The half-width reached with infinitely many seeds: t_{G-1} tau / sqrt(G)."""
    if G < 2:
        return 0.0
    return float(stats.t.ppf(0.5 + confidence / 2, G - 1) * math.sqrt(tau2 / G))


_hw = halfwidth  # plan_seeds' parameter shadows the function name
