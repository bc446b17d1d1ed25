"""Synthetic per-trial detail for simulated tables: what training would record beside the metrics.

:func:`bnstudy.stats.simulate.simulate_results` makes the metric columns; the report also draws
training curves, per-class recall and FC weight norms (list columns) and the mechanism
metrics. This fills them with plausible shapes so that tests and the report benchmark can
exercise every figure without training. Nothing here is evidence of anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnstudy.catalogue import MEASURED_STATUSES
from bnstudy.spec.trial import TREATMENT


def with_detail_columns(
    table: pd.DataFrame,
    treatment: str = TREATMENT,
    control: str = "plain",
    n_points: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """``table`` plus the columns a real run records and a simulation lacks (present ones are
    kept): ``curve_train_loss``, ``class_recall``, ``class_fc_weight_norm`` (lists) and
    head_dead_frac, head_inactive_frac, feature_dead_frac, feature_inactive_frac,
    train_eval_gap, fold_max_abs_diff, balanced_acc_precise (fractions; NaN where a trial
    has no metrics, as the runner writes them)."""
    rng = np.random.default_rng(seed)
    out = table.copy()
    n = len(out)
    arms = list(dict.fromkeys(out[treatment]))
    arm = pd.Categorical(out[treatment], categories=arms).codes
    treated = (out[treatment] != control).to_numpy()
    measured = out["status"].astype(str).isin(MEASURED_STATUSES).to_numpy()
    counts = (
        [np.asarray(c, dtype=float) for c in out["class_counts"]]
        if "class_counts" in out.columns
        else [np.full(10, 100.0)] * n
    )
    steps = np.arange(1, n_points + 1, dtype=float)
    speed = 0.08 + 0.04 * treated + 0.01 * arm + rng.gamma(20, 0.0005, n)
    floor = 0.2 + 0.05 * rng.random(n)
    noise = rng.normal(0.0, 0.03, (n, n_points))
    curves = 2.3 * np.exp(-speed[:, None] * steps[None, :]) + floor[:, None] + noise
    skill = 0.6 + 0.1 * treated + rng.normal(0.0, 0.05, n)
    new: dict[str, object] = {
        "curve_train_loss": [list(np.round(c, 5)) for c in curves],
        "class_recall": [
            list(np.clip(s * (c / c.max()) ** 0.3 + rng.normal(0, 0.03, len(c)), 0, 1))
            if m and len(c)
            else []
            for s, c, m in zip(skill, counts, measured, strict=True)
        ],
        "class_fc_weight_norm": [
            list(1.0 + (0.8 - 0.5 * t) * np.log1p(c) / np.log1p(c.max() or 1.0)) if len(c) else []
            for t, c in zip(treated, counts, strict=True)
        ],
    }
    scalars = {
        "head_dead_frac": rng.beta(1, 12, n),
        "head_inactive_frac": rng.beta(2, 6, n),
        "feature_dead_frac": rng.beta(1, 20, n),
        "feature_inactive_frac": rng.beta(3, 5, n),
        "train_eval_gap": rng.normal(0.0, 0.01, n) - 0.02 * treated,
        "fold_max_abs_diff": np.where(treated, 10 ** rng.uniform(-7, -5, n), np.nan),
        "balanced_acc_precise": np.clip(
            pd.to_numeric(out.get("balanced_acc", pd.Series(0.7, index=out.index))).to_numpy(float)
            + 0.005 * treated,
            0,
            1,
        ),
    }
    for name, values in scalars.items():
        new[name] = np.where(measured, values, np.nan)
    for name, values in new.items():
        if name not in out.columns:
            out[name] = values
    return out
