"""Checks beside the paired model, primary population only: effect sizes with bootstrap CIs
(:mod:`bnstudy.stats.bootstrap`), and a robustness row setting that bootstrap and an exact
sign-flip test on condition means (:mod:`bnstudy.stats.signflip`) next to the model."""

from __future__ import annotations

import numpy as np

from bnstudy.spec.design import Design
from bnstudy.stats.analysis_result import WILCOXON_REPLACED
from bnstudy.stats.bootstrap import GENERALISING, STATISTICS, Bootstrap, effect_size_bootstrap
from bnstudy.stats.effect_fit import EffectFit
from bnstudy.stats.findings import Comparison, Findings
from bnstudy.stats.inference import p_value
from bnstudy.stats.paired import Pairs
from bnstudy.stats.signflip import SignFlip, sign_flip_test


def robustness_rows(cmp: Comparison, pairs: Pairs, overall: EffectFit, design: Design) -> Findings:
    """Effect-size rows, the robustness row and, when the checks disagree with the model, a
    warning."""
    frame = pairs.frame
    d = frame["d"].to_numpy()
    boot = effect_size_bootstrap(
        d,
        frame["condition"].to_numpy(),
        design.metrics[cmp.metric].direction,
        design.bootstrap_replicates,
        design.bootstrap_seed,
        cmp.confidence,
    )
    means = frame.groupby("condition")["d"].mean().to_numpy()
    flip = sign_flip_test(means, seed=design.bootstrap_seed)
    m_est = overall.estimate[0]
    m_low, m_high = (v[0] for v in overall.t_interval(cmp.confidence))
    m_p = p_value(m_est, overall.se[0], overall.df)
    b_est, b_low, b_high = boot.values["mean_difference"]
    notes, remarks = _disagreements(cmp, pairs, (m_low, m_high, m_p), boot, flip)
    row = dict(
        cmp.arms(),
        model_estimate=m_est,
        model_ci_low=m_low,
        model_ci_high=m_high,
        model_p=m_p,
        bootstrap_estimate=b_est,
        bootstrap_ci_low=b_low,
        bootstrap_ci_high=b_high,
        wilcoxon_p=np.nan,
        wilcoxon_unit=WILCOXON_REPLACED,
        n_pairs=len(d),
        n_dropped_blocks=pairs.n_dropped,
        n_conditions=pairs.n_conditions,
        agree=not notes,
        note="; ".join(notes + remarks),
        estimand=cmp.estimand,
        bootstrap_resampled=boot.resampled,
        signflip_p=flip.p,
        signflip_min_p=flip.min_p,
    )
    found = [_effect_size_rows(cmp, boot, len(d)), Findings(robustness=(row,))]
    if notes:
        found.append(cmp.note("robustness", "warning", "; ".join(notes)))
    return Findings.concat(found)


def _effect_size_rows(cmp: Comparison, boot: Bootstrap, n_pairs: int) -> Findings:
    rows = []
    for stat in STATISTICS:
        est, low, high = boot.values[stat]
        rows.append(
            dict(
                cmp.arms(),
                statistic=stat,
                estimate=est,
                ci_low=low,
                ci_high=high,
                n_pairs=n_pairs,
                method=boot.method[stat],
                estimand=cmp.estimand,
                resampled=boot.resampled,
            )
        )
    return Findings(effect_sizes=tuple(rows))


def _disagreements(
    cmp: Comparison,
    pairs: Pairs,
    model: tuple[float, float, float],
    boot: Bootstrap,
    flip: SignFlip,
) -> tuple[list[str], list[str]]:
    """Where the bootstrap or the sign-flip test disagrees with the model (``model``: its CI
    low, CI high and p), and remarks on checks too weak to compare."""
    m_low, m_high, m_p = model
    _, b_low, b_high = boot.values["mean_difference"]
    alpha = 1 - cmp.confidence
    model_sig = m_p < alpha
    notes, remarks = [], []
    if boot.resampled == GENERALISING:
        if np.isfinite(b_low) and model_sig != (b_low > 0 or b_high < 0):
            notes.append("model and bootstrap CI disagree on significance")
        if (m_low > 0 and b_high < 0) or (m_high < 0 and b_low > 0):
            notes.append("model and bootstrap CIs disagree on sign")
    else:
        remarks.append(
            f"bootstrap conditional on the {pairs.n_conditions} observed condition(s) (too "
            "few to resample): not compared with the model"
        )
    if flip.can_reject(alpha):
        if np.isfinite(flip.p) and model_sig != (flip.p < alpha):
            notes.append("model and sign-flip test disagree on significance")
    else:
        remarks.append(
            f"sign-flip test has no power with {flip.n_units} condition(s) (smallest "
            f"attainable p {flip.min_p:.2g}): not compared with the model"
        )
    return notes, remarks
