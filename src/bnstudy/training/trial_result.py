"""What a trial gives back (:class:`TrialResult`), importable without torch.

Workers make results and the parent stores them; the parent never trains, so it should not
have to import torch to know what a result is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from bnstudy.catalogue import DERIVED_METRICS, METRICS, RECORDED_METRICS


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class TrialResult:
    """The outcome of one trial.

    ``status`` is ``"ok"``, ``"diverged"`` (non-finite training loss), ``"collapsed"`` (one
    class predicted for >= 95% of test inputs; metrics still filled) or ``"failed"`` (an
    exception, recorded by the runner). ``metrics`` holds every key of
    :data:`bnstudy.catalogue.METRICS` and :data:`bnstudy.catalogue.RECORDED_METRICS`
    (accuracies as fractions, NaN where undefined); ``curves`` the ``train_loss`` series (see
    the module docstring for its points); ``per_class`` per-class lists.
    """

    status: str
    error: str | None
    metrics: dict[str, float]
    curves: dict[str, list[float]]
    per_class: dict[str, list[float] | list[int]]  # class_counts are ints
    started_at: dt.datetime
    ended_at: dt.datetime
    device: str

    @classmethod
    def failed(cls, error: str, started_at: dt.datetime, device: str) -> TrialResult:
        """A result for a trial that raised: all metrics NaN, ``error`` holds the cause."""
        return cls(
            status="failed",
            error=error,
            metrics=nan_metrics(),
            curves={"train_loss": []},
            per_class={"class_counts": [], "recall": [], "fc_weight_norm": []},
            started_at=started_at,
            ended_at=now(),
            device=device,
        )


def nan_metrics() -> dict[str, float]:
    # Derived metrics (``failure``) are computed by the analysis from the status, not here.
    measured = [m for m in METRICS if m not in DERIVED_METRICS]
    return {name: math.nan for name in (*measured, *RECORDED_METRICS)}
