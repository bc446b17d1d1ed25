"""Synthetic results tables with known effects, shared by tests, benchmarks and coverage runs.

The generative model, in analysis units (pp for accuracies), for trial (condition c, block b,
arm h) is::

    y = base + a_c + b_b + [h != control] * (effect_h + slope_h * log(ratio_c) + u_ch + v_ch)
          - lr_curvature * (ln lr - ln lr*_h)^2 + t + e

with condition intercepts a_c ~ N(0, condition_sd), block intercepts b_b ~ N(0, block_sd),
the effect's condition-level deviations u_ch ~ N(0, tau) and v_ch ~ Uniform(-spread,
spread) (heterogeneity), an optional learning-rate optimum lr*_h per arm, the trial's luck
t ~ N(0, trial_sd_h) (its own SD per arm, the control's included) and residual
e ~ N(0, sigma). Without trial luck (the default) the paired difference of one block has SD
sigma * sqrt(2) around its condition's effect. Stored values are divided by the metric's
scale, as the runner does.

With tuning factors in the protocol, the selection metric (``select_by``, a validation
metric) is simulated from the first primary metric's mean *and its trial luck* (everything
but the residual) plus its own residual ~ N(0, val_sigma): what a validation split of the
same trial would show. The luck t is what makes selection on the same seeds optimistic: a
trial that happens to go well shows it on validation and on test alike (the winner's curse of
:mod:`bnstudy.stats.tuning`); sigma and val_sigma are the independent noise of each split.

Failures mimic the runner: a diverged or failed trial keeps its row with NaN metrics (a failed
one also has an empty ``class_counts``), a collapsed one is measured at the metric's chance
level (a uniform guesser over ``num_classes`` classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS

if TYPE_CHECKING:  # the protocol (pydantic) is imported only by the functions that need it
    from bnstudy.spec.protocol import Protocol


def simulate_results(
    protocol: Protocol,
    effect: float | Mapping[str, float] = -1.0,
    *,
    tau: float = 0.0,
    sigma: float = 1.0,
    block_sd: float = 2.0,
    condition_sd: float = 3.0,
    slope: float | Mapping[str, float] = 0.0,
    missing: float = 0.0,
    failed: float = 0.0,
    num_classes: int = 10,
    seed: int = 0,
    spread: float = 0.0,
    lr_optimum: Mapping[str, float] | None = None,
    lr_curvature: float = 0.0,
    val_sigma: float = 1.0,
    trial_sd: float | Mapping[str, float] = 0.0,
) -> pd.DataFrame:
    """A results table (one row per trial of ``protocol.expand()``) with known effects.

    ``effect`` / ``slope`` are per variant (a float applies to every variant) in analysis
    units of every primary metric. ``missing`` is the fraction of trial rows dropped (never
    run); ``failed`` the fraction kept with a non-ok status: diverged or failed (NaN
    metrics) or collapsed (metrics at chance where the metric has a chance level).
    ``spread``: condition-level deviations of each variant's effect drawn uniformly from
    [-spread, spread] (added to the normal ones of SD ``tau``). ``lr_optimum`` maps arm ->
    its best learning rate; each trial loses ``lr_curvature`` (ln(lr / optimum))^2 analysis
    units (a tuned comparison's ground truth). ``trial_sd``: the SD of each trial's luck, a
    deviation its test and validation scores share (per arm, the control's included, when a
    mapping; 0 draws nothing, so tables made without it keep their random streams).
    Returns the runner's columns: trial_id, block_id, status, error, seed, the factors,
    ``class_counts`` (an exponential profile of ``num_classes`` classes at the row's
    imbalance ratio; empty for failed trials), one column per primary metric (stored
    scale) and, with tuning factors, the selection metric.
    """
    design = protocol.design()
    treatment = design.treatment
    rng = np.random.default_rng(seed)
    trials = protocol.expand()
    rows = pd.DataFrame([t.settings() for t in trials])
    rows.insert(0, "trial_id", [t.trial_id for t in trials])
    rows.insert(1, "block_id", [t.block_id for t in trials])
    condition_cols = [c for c in design.conditions if c in rows.columns]
    condition = rows.groupby(condition_cols, sort=False).ngroup().to_numpy()
    block = pd.factorize(rows["block_id"])[0]
    if treatment in rows.columns:  # the head: its levels in protocol order
        heads = list(getattr(protocol.factors, treatment))
    else:  # the derived arm column (another treatment, or head options in the arms)
        rows[treatment] = [t.arm for t in trials]
        heads = [design.control, *design.variants]
    arm = pd.Categorical(rows[treatment], categories=heads).codes
    n_cond, n_block, n_arm = condition.max() + 1, block.max() + 1, len(heads)

    is_variant = np.array([h != design.control for h in heads])
    luck_sd = _per_arm(trial_sd, heads, None)[arm]
    log_ratio = np.log(rows["imbalance_ratio"].to_numpy(dtype=float))
    lr_loss = _lr_loss(rows, heads, arm, lr_optimum, lr_curvature)
    metrics = list(design.metrics)
    for i, metric in enumerate(metrics):
        info = METRICS[metric]
        base = 80.0 if info.unit == "pp" else 1.0
        u = rng.normal(0.0, tau, (n_cond, n_arm)) * is_variant
        if spread:  # drawn only when asked for, so other tables keep their random streams
            u += rng.uniform(-spread, spread, (n_cond, n_arm)) * is_variant
        mean = (
            base
            + rng.normal(0.0, condition_sd, n_cond)[condition]
            + rng.normal(0.0, block_sd, n_block)[block]
            + _per_arm(effect, heads, design.control)[arm]
            + _per_arm(slope, heads, design.control)[arm] * log_ratio
            + u[condition, arm]
            - lr_loss
        )
        if luck_sd.any():  # drawn only when asked for, as above
            mean = mean + rng.normal(0.0, 1.0, len(rows)) * luck_sd
        rows[metric] = (mean + rng.normal(0.0, sigma, len(rows))) / info.scale
        if i == 0 and design.select_by and design.select_by not in metrics:
            val = METRICS[design.select_by]
            rows[design.select_by] = (mean + rng.normal(0.0, val_sigma, len(rows))) / val.scale

    return _fail_and_drop(rows, rng, design, metrics, failed, missing, num_classes)


def _lr_loss(
    rows: pd.DataFrame,
    heads: list[str],
    arm: np.ndarray,
    optimum: Mapping[str, float] | None,
    curvature: float,
) -> np.ndarray:
    """Each trial's loss from its distance to its arm's best lr: curvature (ln(lr/best))^2."""
    if not optimum:
        return np.zeros(len(rows))
    best = np.array([optimum.get(h, np.nan) for h in heads])[arm]
    return curvature * np.log(rows["lr"].to_numpy(dtype=float) / best) ** 2


def _per_arm(
    value: float | Mapping[str, float], heads: list[str], control: str | None
) -> np.ndarray:
    """``value`` for each arm (a float applies to all; a mapping names some), 0 for the
    ``control`` (None: the control takes its value too)."""
    if isinstance(value, Mapping):
        return np.array([0.0 if h == control else float(value.get(h, 0.0)) for h in heads])
    return np.array([0.0 if h == control else float(value) for h in heads])


def _fail_and_drop(
    rows: pd.DataFrame,
    rng: np.random.Generator,
    design: Any,
    metrics: list[str],
    failed: float,
    missing: float,
    num_classes: int,
) -> pd.DataFrame:
    """Give a fraction ``failed`` of the rows a non-ok status (NaN metrics, or chance where
    collapsed), class counts, and drop a fraction ``missing`` (in that order of draws)."""
    status = np.full(len(rows), "ok", dtype=object)
    fail = rng.random(len(rows)) < failed
    status[fail] = rng.choice(["diverged", "collapsed", "failed"], fail.sum())
    rows.insert(2, "status", status)
    rows.insert(3, "error", np.where(fail, "simulated failure", None))
    collapsed = status == "collapsed"
    scored = metrics + ([design.select_by] if design.select_by in rows.columns else [])
    for metric in dict.fromkeys(scored):
        chance = METRICS[metric].chance
        rows.loc[fail & ~collapsed, metric] = np.nan
        # A collapsed network predicts one class: at chance where "chance" means something.
        if chance is not None:
            rows.loc[collapsed, metric] = chance(num_classes)
    rows["class_counts"] = [
        [] if s == "failed" else _class_counts(num_classes, r)
        for s, r in zip(status, rows["imbalance_ratio"], strict=True)
    ]
    keep = rng.random(len(rows)) >= missing
    return rows.loc[keep].reset_index(drop=True)


def simulate_paired(
    n_conditions: int,
    n_pairs: int,
    effect: float = 0.0,
    *,
    tau: float = 0.0,
    spread: float = 0.0,
    sigma: float = float(np.sqrt(2.0)),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired differences straight from the paired model, for fast simulations.

    ``n_pairs`` pairs in each of ``n_conditions`` conditions; condition effects effect +
    N(0, tau) + Uniform(-spread, spread); pair noise N(0, sigma) (sigma = sqrt(2) matches
    :func:`simulate_results` with its default residual SD 1 per arm). Returns (d (N,),
    condition codes (N,), the conditions' true effects (G,)).
    """
    rng = np.random.default_rng(seed)
    theta = effect + rng.normal(0.0, tau, n_conditions) + rng.uniform(-spread, spread, n_conditions)
    groups = np.repeat(np.arange(n_conditions), n_pairs)
    d = theta[groups] + rng.normal(0.0, sigma, len(groups))
    return d, groups, theta


def _class_counts(num_classes: int, ratio: float, n_max: int = 100) -> list[int]:
    """Training examples per class of an exponential long-tail profile."""
    i = np.arange(num_classes)
    return [int(n_max * ratio ** (-k / max(num_classes - 1, 1))) for k in i]


def grid_protocol(
    n_seeds: int = 10,
    *,
    heads: tuple[str, ...] = ("plain", "bn"),
    datasets: tuple[str, ...] = ("d0", "d1", "d2", "d3"),
    ratios: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0),
    lrs: tuple[float, ...] = (0.01, 0.05, 0.1),
    metrics: tuple[str, ...] = ("balanced_acc",),
    extra_analysis: str = "",
) -> Protocol:
    """A protocol over datasets x ratios x lrs (48 conditions by default) for simulations."""
    from bnstudy.spec.loading import parse_protocol

    def seq(values: tuple) -> str:
        return "[" + ", ".join(str(v) for v in values) + "]"

    text = (
        f"name: sim\nseeds: {n_seeds}\ncontrol: {heads[0]}\n"
        f"factors:\n  architecture: mlp\n  head: {seq(heads)}\n  dataset: {seq(datasets)}\n"
        f"  imbalance_ratio: {seq(ratios)}\n  lr: {seq(lrs)}\n"
        f"analysis:\n  metrics: {seq(metrics)}\n{extra_analysis}"
    )
    return parse_protocol(text)
