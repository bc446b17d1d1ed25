"""The torch-free vocabulary every part of bnstudy shares: metrics and trial statuses.

A metric is declared once, here: which way is better, the unit it is analysed in, its
customary equivalence margin, and what a network that learned nothing would score (used to
score trials that diverged or failed in the intention-to-treat analysis). Training fills the
metrics, the store writes them, the protocol validates names against them and the analysis
reads their direction and unit from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

Direction = Literal["higher", "lower"]


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """What the analysis needs to know about a per-trial metric column."""

    direction: Direction
    scale: float  # multiply the stored value by this before analysis (0-1 -> pp)
    unit: str
    default_margin: float | None  # equivalence margin in analysis units, if one is customary
    #: The stored value of a uniform random guesser over ``num_classes`` classes on a balanced
    #: test set (None where that is no fair stand-in for "learned nothing", e.g. ECE, which
    #: is 0 for uniform probabilities).
    chance: Callable[[int], float] | None = None
    #: False: the intention-to-treat analysis uses the stored value as is and never a
    #: declared score: ``failure`` is defined for every trial, and a diverged network's dead
    #: units are no number to stand in for (its trial drops out, as it does in the levels).
    imputed: bool = True


def _one_in(num_classes: int) -> float:
    return 1.0 / num_classes


_PP = dict(scale=100.0, unit="pp", default_margin=0.5)

#: Every metric a trial records that can be named as a primary metric.
METRICS: dict[str, MetricInfo] = {
    "test_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "balanced_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "macro_f1": MetricInfo("higher", **_PP, chance=_one_in),
    "minority_recall": MetricInfo("higher", **_PP, chance=_one_in),
    "worst_class_recall": MetricInfo(
        "higher", scale=100.0, unit="pp", default_margin=1.0, chance=_one_in
    ),
    "ece": MetricInfo("lower", **_PP),
    "nll": MetricInfo("lower", scale=1.0, unit="nats", default_margin=0.02, chance=math.log),
    "brier": MetricInfo(
        "lower", scale=1.0, unit="", default_margin=0.005, chance=lambda c: 1.0 - 1.0 / c
    ),
    "train_loss": MetricInfo("lower", scale=1.0, unit="nats", default_margin=None),
    "wall_s": MetricInfo("lower", scale=1.0, unit="s", default_margin=None),
    # Balanced accuracy with every BN's running statistics recomputed over training batches
    # (PreciseBN; see ``train.PRECISE_BN_BATCHES``); equals balanced_acc without BN.
    "balanced_acc_precise": MetricInfo("higher", **_PP, chance=_one_in),
    # The validation split: for model selection (the learning rate of a tuned comparison),
    # never the test set. NaN where the dataset has no validation split.
    "val_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "val_balanced_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "val_nll": MetricInfo("lower", scale=1.0, unit="nats", default_margin=0.02, chance=math.log),
    "val_balanced_acc_precise": MetricInfo("higher", **_PP, chance=_one_in),
    # Fraction of the head's hidden ReLU units (the units feeding the final FC) inactive on
    # every test input, in pp; NaN for heads without hidden units. A metric (not only
    # recorded) so that hypotheses about dead units can name it.
    "head_dead_frac": MetricInfo(
        "lower", scale=100.0, unit="pp", default_margin=None, imputed=False
    ),
    # 1 when the trial did not end ok (collapsed, diverged, failed, timed out, out of memory),
    # else 0; derived from ``status`` before analysis (see DERIVED_METRICS). In pp, so an
    # effect reads as a difference in failure rate.
    "failure": MetricInfo("lower", scale=100.0, unit="pp", default_margin=None, imputed=False),
}

#: Metrics of :data:`METRICS` that training does not record: the analysis derives them from
#: other columns of the results table (``stats.derived.with_derived_metrics``).
DERIVED_METRICS: dict[str, str] = {
    "failure": "1 when the trial's status is not ok (a failure of any kind), else 0",
}

#: Everything else a trial records (name -> meaning). Every trial result holds every key of
#: :data:`METRICS` and of this mapping (NaN where undefined); these are columns of the
#: results table but cannot be named as primary metrics.
RECORDED_METRICS: dict[str, str] = {
    "mean_max_prob": "mean largest class probability on the test set (fraction)",
    "train_eval_gap": (
        "test accuracy with BN on batch statistics (training batch size) minus eval mode (fraction)"
    ),
    "head_inactive_frac": "mean fraction of those units inactive per test input",
    "feature_dead_frac": "fraction of the body's feature units inactive on every test input",
    "feature_inactive_frac": "mean fraction of the body's feature units inactive per input",
    "fc_weight_norm_rank_corr": (
        "Spearman correlation of the per-class FC weight norm with the training class counts"
    ),
    "epochs_run": "passes over the training set (steps_run / steps per epoch; may be fractional)",
    "steps_run": "optimiser steps taken (fewer than planned when training diverged)",
    "pretrain_train_loss": (
        "the pre-training stage's training loss over its last 100 steps; NaN without pre-training"
    ),
    "fold_max_abs_diff": (
        "max |logit| difference on the test set between the eval model and the model with the "
        "BN directly before the final FC folded into it; NaN for heads without such a BN"
    ),
}

# -- statuses ---------------------------------------------------------------------------

OK = "ok"
#: One class predicted for >= 95% of test inputs; the metrics are still measured.
COLLAPSED = "collapsed"
#: Non-finite training loss; no metrics.
DIVERGED = "diverged"
#: The trial raised; no metrics. Retried when a run resumes.
FAILED = "failed"
#: The trial ran past the run's per-trial time limit (``--timeout``); no metrics. Final for
#: that limit: a resume skips it unless the new run allows more time (or no limit), since the
#: same limit would only spend the same time again.
TIMEOUT = "timeout"
#: The device ran out of memory (CUDA OOM) during the trial; no metrics. Retried when a run
#: resumes, like ``failed``: it depends on what else shared the device (``--per-device``,
#: packing), so a resume with fewer trials per device can succeed.
OOM = "oom"

#: Outcomes that are final: a re-run skips these trials (``timeout``: see :data:`TIMEOUT`).
FINAL_STATUSES = (OK, DIVERGED, COLLAPSED, TIMEOUT)
#: Outcomes whose metrics were measured (they enter every analysis with their values).
MEASURED_STATUSES = (OK, COLLAPSED)
