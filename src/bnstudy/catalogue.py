"""The torch-free vocabulary every part of bnstudy shares: metrics and trial statuses.

A metric is declared once, here: which way is better, the unit it is analysed in, its
customary equivalence margin, and what a network that learned nothing would score (used to
score trials that diverged or failed in the intention-to-treat analysis). Training fills the
metrics, the store writes them, the protocol validates names against them and the analysis
reads their direction and unit from them. A plugin declares the metrics its own trial
function returns with :func:`register_metric`; they then take part like these.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

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
    #: The largest stored value the analysis counts (None: no ceiling); a trial above it
    #: counts at it, and the analysis notes how many did. See :data:`NLL_CEILING`.
    ceiling: float | None = None


#: A trial's nll (its mean over the test set) counts at most -ln(2^-23) = 15.9 nats, the
#: natural log of float32's machine epsilon: the loss of a network that gives every test
#: example's true class a probability of 2^-23 (scikit-learn's ``log_loss`` clips each
#: example's probability at such an eps; capping the mean is the looser cousin of that, and
#: all the stored trial-level value allows). Without it a network whose eval-mode logits run
#: to 1e19 (BN's running statistics far from its batch statistics) but which never diverged
#: brings 1e19 nats, and one such trial decides every mean and CI it enters; a diverged
#: trial, by contrast, scores chance (2.3 nats). A trial at the ceiling is one that is
#: confidently wrong on a large share of the test set, whatever the exact share.
NLL_CEILING = -math.log(2.0**-23)


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
    "nll": MetricInfo(
        "lower",
        scale=1.0,
        unit="nats",
        default_margin=0.02,
        chance=math.log,
        ceiling=NLL_CEILING,
    ),
    "brier": MetricInfo(
        "lower", scale=1.0, unit="", default_margin=0.005, chance=lambda c: 1.0 - 1.0 / c
    ),
    "train_loss": MetricInfo("lower", scale=1.0, unit="nats", default_margin=None),
    "wall_s": MetricInfo("lower", scale=1.0, unit="s", default_margin=None),
    # Balanced accuracy with every BN's running statistics recomputed over training batches
    # (PreciseBN; see ``train.PRECISE_BN_BATCHES``); equals balanced_acc without BN.
    "balanced_acc_precise": MetricInfo("higher", **_PP, chance=_one_in),
    # Post-hoc long-tail corrections of the same trained model, on the test set (no extra
    # training; ``training.metrics``): the tau-normalised classifier (Kang et al. 2020, tau 1,
    # bias dropped) and post-hoc logit adjustment (Menon et al. 2021, logits - log prior).
    "balanced_acc_taunorm": MetricInfo("higher", **_PP, chance=_one_in),
    "balanced_acc_posthoc_la": MetricInfo("higher", **_PP, chance=_one_in),
    # The validation split: for model selection (the learning rate of a tuned comparison),
    # never the test set. NaN where the dataset has no validation split.
    "val_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "val_balanced_acc": MetricInfo("higher", **_PP, chance=_one_in),
    "val_nll": MetricInfo(
        "lower",
        scale=1.0,
        unit="nats",
        default_margin=0.02,
        chance=math.log,
        ceiling=NLL_CEILING,
    ),
    "val_balanced_acc_precise": MetricInfo("higher", **_PP, chance=_one_in),
    # Fraction of the head's hidden ReLU units (the units feeding the final FC) inactive on
    # every test input, in pp; NaN for heads without hidden units. A metric (not only
    # recorded) so that hypotheses about dead units can name it.
    "head_dead_frac": MetricInfo(
        "lower", scale=100.0, unit="pp", default_margin=None, imputed=False
    ),
    # The mean over test inputs of the fraction of those units inactive on the input (pp):
    # claim 5's estimand ("about 10% dead for any input", read per input). NaN as above.
    "head_inactive_frac": MetricInfo(
        "lower", scale=100.0, unit="pp", default_margin=None, imputed=False
    ),
    # 1 when the trial did not end ok (collapsed, diverged, failed, timed out, out of memory),
    # else 0; derived from ``status`` before analysis (see DERIVED_METRICS). In pp, so an
    # effect reads as a difference in failure rate.
    "failure": MetricInfo("lower", scale=100.0, unit="pp", default_margin=None, imputed=False),
    # 1 when the trial failed or its balanced accuracy is below chance + LEARNED_SHARE of the
    # way from chance to perfect, else 0: "it would not learn", which a network can do while
    # its status is ok (predicting at chance without collapsing onto one class). Derived.
    "not_learned": MetricInfo("lower", scale=100.0, unit="pp", default_margin=None, imputed=False),
}

#: ``not_learned``'s line: a trial learned if its balanced accuracy recovers more than this
#: share of the way from chance (1/C) to perfect (19% for 10 classes, 55% for 2).
LEARNED_SHARE = 0.1

#: Metrics of :data:`METRICS` that training does not record: the analysis derives them from
#: other columns of the results table (``stats.derived.with_derived_metrics``).
DERIVED_METRICS: dict[str, str] = {
    "failure": "1 when the trial's status is not ok (a failure of any kind), else 0",
    "not_learned": (
        "1 when the trial's status is not ok or its balanced accuracy is below chance + "
        f"{LEARNED_SHARE:.0%} of the way from chance to perfect, else 0"
    ),
}

#: Everything else a trial records (name -> meaning). Every trial result holds every key of
#: :data:`METRICS` and of this mapping (NaN where undefined); these are columns of the
#: results table but cannot be named as primary metrics.
RECORDED_METRICS: dict[str, str] = {
    "mean_max_prob": "mean largest class probability on the test set (fraction)",
    "train_eval_gap": (
        "test accuracy with BN on batch statistics (training batch size) minus eval mode (fraction)"
    ),
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

# -- metrics of plugins -----------------------------------------------------------------

#: What a metric's name may be: a results-table column that reads as a Python name.
METRIC_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: Metrics registered by :func:`register_metric` in this process, or recalled from a
#: results file (:func:`recall_metrics`): name -> the declaration, as JSON-ready values.
_DECLARED: dict[str, dict[str, Any]] = {}


def register_metric(
    name: str,
    direction: Direction,
    unit: str = "",
    margin: float | None = None,
    chance: float | None = None,
    *,
    scale: float = 1.0,
) -> MetricInfo:
    """Declare a metric a trial function returns, so that a protocol can analyse it
    (``analysis.metrics``), state hypotheses about it and judge them, like a built-in one.

    Call it in a plugin (``plugins:``, or the module of the protocol's ``trial:``), which
    bnstudy imports before it validates the protocol. ``direction``: ``higher`` or
    ``lower`` is better. ``scale``: the stored value times ``scale`` is what the analysis
    reads, in ``unit`` (100 and ``pp`` for a fraction read as percentage points).
    ``margin``: the customary equivalence margin, in those units (None: a protocol must
    give one where a hypothesis needs it). ``chance``: the stored value of a network that
    learned nothing, which a diverged or failed trial scores in the intention-to-treat
    analysis (None: the worst value measured in its condition). The declaration is recorded
    with the results, so they are analysed the same where the plugin is not installed.
    Registering a name twice is allowed only with the same declaration (a plugin imported by
    two processes' paths); a built-in metric's name is refused.
    """
    declared = {
        "direction": direction,
        "unit": unit,
        "margin": margin,
        "chance": chance,
        "scale": scale,
    }
    info = _metric_info(name, declared)
    if name in _DECLARED:
        if _DECLARED[name] != declared:
            raise ValueError(
                f"metric {name!r} is already registered as {_DECLARED[name]}, not {declared}"
            )
        return METRICS[name]
    if name in METRICS or name in RECORDED_METRICS:
        raise ValueError(f"metric {name!r} is one of bnstudy's own; choose another name")
    METRICS[name] = info
    _DECLARED[name] = declared
    return info


def declared_metrics() -> dict[str, dict[str, Any]]:
    """The metrics registered in this process, as :func:`register_metric` took them (what a
    results file records, so that :func:`recall_metrics` can read them back)."""
    return {name: dict(declared) for name, declared in _DECLARED.items()}


def recall_metrics(recorded: Mapping[str, Mapping[str, Any]]) -> None:
    """Take a results file's record of the metrics its plugins registered: a name this
    process does not know yet is declared as recorded (its plugin need not be installed);
    one it knows keeps its own declaration. ``ValueError`` for a record that is none."""
    for name, declared in recorded.items():
        if name in METRICS:
            continue
        declared = dict(declared)
        METRICS[name] = _metric_info(name, declared)
        _DECLARED[name] = declared


def _metric_info(name: str, declared: Mapping[str, Any]) -> MetricInfo:
    """The :class:`MetricInfo` of a declaration, each value checked (``ValueError``)."""
    if not isinstance(name, str) or not re.fullmatch(METRIC_NAME, name):
        raise ValueError(f"metric name {name!r}: expected letters, digits and '_'")
    direction, margin, chance, scale = (
        declared.get(key) for key in ("direction", "margin", "chance", "scale")
    )
    if direction not in ("higher", "lower"):
        raise ValueError(
            f"metric {name!r}: direction must be 'higher' or 'lower'; got {direction!r}"
        )
    if not isinstance(declared.get("unit"), str):
        raise ValueError(f"metric {name!r}: unit must be a string")
    if not _number(scale) or scale <= 0:
        raise ValueError(f"metric {name!r}: scale must be a positive number; got {scale!r}")
    if margin is not None and (not _number(margin) or margin <= 0):
        raise ValueError(f"metric {name!r}: margin must be a positive number or None")
    if chance is not None and not _number(chance):
        raise ValueError(f"metric {name!r}: chance must be a number or None; got {chance!r}")
    return MetricInfo(
        direction,
        scale=float(scale),
        unit=declared["unit"],
        default_margin=None if margin is None else float(margin),
        chance=None if chance is None else _constant(float(chance)),
    )


def _number(value: Any) -> bool:
    is_real = isinstance(value, int | float) and not isinstance(value, bool)
    return is_real and math.isfinite(value)


def _constant(value: float) -> Callable[[int], float]:
    """A chance level that does not depend on the number of classes."""
    return lambda num_classes: value


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
