"""Head options in training: they reach the trained model, dropout repeats exactly, and the
three evaluations (running, PreciseBN, folded) are measured on every BN-head trial."""

import math

import pytest

from bnstudy.training import train
from bnstudy.training.train import run_trial


@pytest.fixture
def built(monkeypatch):
    """The models run_trial builds, kept for inspection."""
    models, build_model = [], train.build_model

    def keep(*args, **kwargs):
        models.append(build_model(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(train, "build_model", keep)
    return models


def small(make_trial, **settings):
    return make_trial(epochs=1, train_per_class=40, **settings)


def test_trial_options_reach_the_trained_head(make_trial, built):
    run_trial(small(make_trial, head="hidden_relu_bn", hidden_width=16, bn_momentum=0.01))
    head = built[-1].head
    assert head.pre.hidden.out_features == 16 and head.pre.bn.momentum == 0.01
    run_trial(small(make_trial, head="bn", dropout=0.3, dropout_at="after_norm"))
    assert built[-1].head.drop.p == 0.3


def test_dropout_trials_repeat_exactly_and_differ_from_no_dropout(make_trial):
    trial = small(make_trial, head="plain", dropout=0.5)
    first, again = run_trial(trial), run_trial(trial)
    assert first.curves["train_loss"] == again.curves["train_loss"]
    without = run_trial(small(make_trial, head="plain"))
    assert first.curves["train_loss"] != without.curves["train_loss"]


@pytest.mark.parametrize(
    "options",
    [dict(bn_momentum=0.01), dict(dropout=0.5, dropout_at="after_norm"), dict(dropout=0.5)],
)
def test_folded_evaluation_equals_running_statistics(make_trial, options):
    """Folding the head's BN into the FC changes no logit beyond float32 rounding, so the
    running-statistics metrics are those of the folded network (no separate column)."""
    metrics = run_trial(small(make_trial, head="bn", **options)).metrics
    assert 0 <= metrics["fold_max_abs_diff"] < 1e-5
    assert math.isfinite(metrics["balanced_acc_precise"])
    assert math.isfinite(metrics["balanced_acc"])
