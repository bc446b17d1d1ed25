import datetime as dt
import math
import pickle

import pytest

from bnstudy.catalogue import METRICS
from bnstudy.train import EXTRA_METRICS, TrialResult, run_trial


def without_wall_time(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"architecture": "cnn", "head": "bn", "optimizer": "adamw", "lr": 0.003}],
)
def test_tiny_trial_learns_and_reports_every_metric(make_trial, overrides):
    result = run_trial(make_trial(**overrides))
    assert result.status == "ok" and result.error is None
    assert set(METRICS) | set(EXTRA_METRICS) == set(result.metrics)
    assert result.metrics["balanced_acc"] > 0.3  # chance is 0.1
    assert result.metrics["test_acc"] == pytest.approx(result.metrics["balanced_acc"])
    assert math.isnan(result.metrics["minority_recall"])  # balanced: no minority classes
    assert len(result.curves["train_loss"]) == 3
    assert result.metrics["train_loss"] == result.curves["train_loss"][-1]
    assert result.per_class["class_counts"] == [100] * 10
    assert len(result.per_class["recall"]) == 10
    assert result.started_at.tzinfo is dt.UTC and result.ended_at >= result.started_at


def test_imbalanced_trial_reports_minority_and_hidden_unit_metrics(make_trial):
    trial = make_trial(head="hidden", imbalance_ratio=10.0)
    result = run_trial(trial)
    assert result.status == "ok"
    metrics = result.metrics
    assert 0 <= metrics["minority_recall"] <= 1
    assert 0 <= metrics["head_dead_frac"] <= metrics["head_inactive_frac"] <= 1
    assert -1 <= metrics["fc_weight_norm_rank_corr"] <= 1


def test_same_trial_gives_bit_identical_metrics(make_trial):
    trial = make_trial(architecture="cnn", head="bn", imbalance_ratio=10.0)
    first, second = run_trial(trial), run_trial(trial)
    a, b = without_wall_time(first.metrics), without_wall_time(second.metrics)
    assert all(same(a[k], b[k]) for k in a), (a, b)
    assert first.curves == second.curves and first.per_class == second.per_class


def test_absurd_learning_rate_diverges_without_raising(make_trial):
    result = run_trial(make_trial(lr=1e6))
    assert result.status == "diverged"
    assert not math.isfinite(result.metrics["train_loss"])
    assert math.isnan(result.metrics["balanced_acc"])
    assert result.metrics["wall_s"] > 0
    assert set(METRICS) <= set(result.metrics)


def test_results_pickle_and_failed_results_have_every_metric(make_trial):
    result = run_trial(make_trial(epochs=1))
    assert repr(pickle.loads(pickle.dumps(result))) == repr(result)  # repr: NaN != NaN
    failed = TrialResult.failed("boom", started_at=dt.datetime.now(dt.UTC), device="cpu")
    assert failed.status == "failed" and failed.error == "boom"
    assert set(METRICS) <= set(failed.metrics)
    assert all(math.isnan(v) for v in failed.metrics.values())
