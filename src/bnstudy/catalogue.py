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
}

# -- statuses ---------------------------------------------------------------------------

OK = "ok"
#: One class predicted for >= 95% of test inputs; the metrics are still measured.
COLLAPSED = "collapsed"
#: Non-finite training loss; no metrics.
DIVERGED = "diverged"
#: The trial raised; no metrics. Retried when a run resumes.
FAILED = "failed"

#: Outcomes that are final: a re-run skips these trials.
FINAL_STATUSES = (OK, DIVERGED, COLLAPSED)
#: Outcomes whose metrics were measured (they enter every analysis with their values).
MEASURED_STATUSES = (OK, COLLAPSED)
