"""Evaluation: the head contract, dead units, validation split, PreciseBN and BN folding."""

import copy
import dataclasses
import math
import types

import pytest
import torch
from torch import nn

from bnstudy.models import Classifier, register_head, registry
from bnstudy.models.pooling import MaxPool2x2
from bnstudy.spec import head_options
from bnstudy.training import metrics as M
from bnstudy.training import train
from bnstudy.training.train import PRECISE_BN_BATCHES, precise_bn, run_trial, sample_indices


class FunctionalReluHead(nn.Module):
    """A head of the contract only: no ``pre``, the ReLU applied functionally."""

    def __init__(self, d: int, num_classes: int):
        super().__init__()
        self.hidden = nn.Linear(d, 32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.hidden(features)))


class BareHead(nn.Module):
    """Just the final FC, not an nn.Sequential and without ``pre``."""

    def __init__(self, d: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(d, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


@pytest.fixture
def custom_heads(monkeypatch):
    """Register the custom heads for one test only (the registry is restored afterwards)."""
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(head_options, "_TAKES", dict(head_options._TAKES))
    register_head("test_functional_relu")(FunctionalReluHead)
    register_head("test_bare")(BareHead)


def test_any_head_with_an_fc_is_trained_and_evaluated(make_trial, custom_heads):
    relu = run_trial(make_trial(head="test_functional_relu", epochs=1))
    assert relu.status == "ok"
    assert 0 <= relu.metrics["head_dead_frac"] <= relu.metrics["head_inactive_frac"] <= 1
    assert len(relu.per_class["fc_weight_norm"]) == 10
    assert math.isnan(relu.metrics["fold_max_abs_diff"])  # no BN before the FC
    bare = run_trial(make_trial(head="test_bare", epochs=1))
    assert bare.status == "ok" and bare.metrics["balanced_acc"] > 0.2
    # the FC reads the body's features directly: no head units to count
    assert math.isnan(bare.metrics["head_dead_frac"])
    # no BN anywhere in mlp + a bare head: PreciseBN leaves the model as it is
    assert bare.metrics["balanced_acc_precise"] == bare.metrics["balanced_acc"]


def test_dead_units_of_a_custom_head_are_its_fc_inputs(make_trial, custom_heads, monkeypatch):
    """Recompute the metric from the trained head: the units feeding ``fc``."""
    trial = make_trial(head="test_functional_relu", epochs=1)
    seen = {}
    original = train._head_forward

    def spy(head, features):
        logits, units, fc_input = original(head, features)
        seen.update(units=units, hidden=torch.relu(head.hidden(features)))
        return logits, units, fc_input

    monkeypatch.setattr(train, "_head_forward", spy)
    result = run_trial(trial)
    assert torch.equal(seen["units"], seen["hidden"])
    assert result.metrics["head_dead_frac"] == M.dead_unit_fraction(seen["hidden"][:, None])


@pytest.mark.parametrize(
    "head, has_units, foldable",
    [
        ("plain", False, False),
        ("bn", False, True),
        ("bnneck", False, True),
        ("hidden", True, False),
        ("hidden_bn_relu", True, False),
        ("hidden_relu_bn", True, True),
        ("logit_bn", False, False),
        ("ln", False, False),
    ],
)
def test_registered_heads_dead_units_and_folding(make_trial, head, has_units, foldable):
    result = run_trial(make_trial(head=head, epochs=1, train_per_class=40))
    metrics = result.metrics
    assert math.isfinite(metrics["head_dead_frac"]) == has_units
    assert math.isfinite(metrics["fold_max_abs_diff"]) == foldable
    if foldable:  # the fold is exact: what is left is float32 rounding
        assert 0 <= metrics["fold_max_abs_diff"] < 1e-5
    assert 0 <= metrics["balanced_acc_precise"] <= 1


# -- validation split ---------------------------------------------------------------------


def _patch_dataset(monkeypatch, change):
    """Make run_trial train on ``change(dataset)`` instead of the built dataset."""
    real = train.build_dataset
    monkeypatch.setattr(train, "build_dataset", lambda trial, options=None: change(real(trial)))


def test_validation_metrics_come_from_the_validation_split(make_trial, monkeypatch):
    trial = make_trial(architecture="cnn", head="bn", epochs=1)
    result = run_trial(trial)
    for name in ["val_acc", "val_balanced_acc", "val_nll", "val_balanced_acc_precise"]:
        assert math.isfinite(result.metrics[name]), name
    # the same trial with the test images given as validation split: the same numbers
    _patch_dataset(monkeypatch, lambda d: dataclasses.replace(d, x_val=d.x_test, y_val=d.y_test))
    as_test = run_trial(trial).metrics
    assert as_test["val_acc"] == as_test["test_acc"] == result.metrics["test_acc"]
    assert as_test["val_balanced_acc"] == as_test["balanced_acc"]
    assert as_test["val_nll"] == as_test["nll"]
    assert as_test["val_balanced_acc_precise"] == as_test["balanced_acc_precise"]
    assert result.metrics["val_nll"] != result.metrics["nll"]  # a split of its own


def _without_validation(d):
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    del fields["x_val"], fields["y_val"]
    return types.SimpleNamespace(**fields, minority_classes=d.minority_classes)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: dataclasses.replace(d, x_val=torch.empty(0), y_val=torch.empty(0).long()),
        _without_validation,  # a dataset record from before the validation split
    ],
)
def test_no_validation_split_gives_nan_validation_metrics(make_trial, monkeypatch, change):
    _patch_dataset(monkeypatch, change)
    result = run_trial(make_trial(head="bn", epochs=1))
    assert result.status == "ok" and math.isfinite(result.metrics["balanced_acc"])
    for name in ["val_acc", "val_balanced_acc", "val_nll", "val_balanced_acc_precise"]:
        assert math.isnan(result.metrics[name]), name


# -- PreciseBN ----------------------------------------------------------------------------


class FeaturesIn(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_precise_bn_is_the_cumulative_average_over_training_batches(make_trial):
    trial = make_trial(batch_size=16)
    model = Classifier(FeaturesIn(), nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3)))
    bn = model.head[0]
    bn.running_mean.fill_(100.0)  # stale statistics PreciseBN must replace
    x = torch.randn(2000, 4) * 3 + 1
    y = torch.randint(3, (2000,))
    precise = precise_bn(trial, model, x, y)
    assert not precise.training and precise is not model
    assert bn.running_mean.eq(100.0).all() and bn.momentum == 0.1  # the original is untouched
    order = sample_indices(trial, y, PRECISE_BN_BATCHES * 16, "precise_bn")
    batches = x[order].reshape(PRECISE_BN_BATCHES, 16, 4)
    mean = batches.mean(dim=1).mean(dim=0)
    var = batches.var(dim=1, unbiased=True).mean(dim=0)
    assert torch.allclose(precise.head[0].running_mean, mean, atol=1e-5)
    assert torch.allclose(precise.head[0].running_var, var, rtol=1e-5)
    # fewer batches when one pass has fewer
    small = precise_bn(trial, model, x[:100], y[:100])
    assert int(small.head[0].num_batches_tracked) == 100 // 16
    # and nothing to do without BN
    assert precise_bn(trial, Classifier(FeaturesIn(), nn.Linear(4, 3)), x, y) is None


def test_precise_bn_repairs_stale_statistics(make_trial, monkeypatch):
    """With the running statistics made useless after training, eval-mode accuracy drops and
    PreciseBN recovers it: the recorded metric really uses recomputed statistics."""
    trial = make_trial(head="bn", epochs=2)
    honest = run_trial(trial).metrics
    real_evaluate = train._evaluate

    def with_stale_statistics(trial, model, *args):
        model.head.pre.bn.running_mean.add_(5.0)
        return real_evaluate(trial, model, *args)

    monkeypatch.setattr(train, "_evaluate", with_stale_statistics)
    stale = run_trial(trial).metrics
    assert stale["balanced_acc"] < honest["balanced_acc"] - 0.1
    assert stale["balanced_acc_precise"] == honest["balanced_acc_precise"]


def _evaluate_as_before(trial, model, data, x_train, out):
    """The evaluation as it was before its forward passes were shared: every output from a
    whole-model forward of its own, with PyTorch's max-pooling kernel (the reference); each
    metric from its own function of :mod:`bnstudy.training.metrics`, the model as one copy."""
    x_test, y_test, x_val, y_val = data.x_test, data.y_test, data.x_val, data.y_val
    classes = data.num_classes
    model.eval()
    features = model.body(x_test)
    logits = model.head(features)
    probs = torch.softmax(logits.double(), dim=1)[:, None]  # (n, 1, C): one copy
    y_pred = logits.argmax(dim=1)[:, None]
    recalls = M.per_class_recall(y_test, y_pred, classes)
    measured = {
        "feature_dead_frac": M.dead_unit_fraction(features[:, None]),
        "test_acc": M.accuracy(y_test, y_pred),
        "balanced_acc": M.balanced_accuracy(recalls),
        "macro_f1": M.macro_f1(y_test, y_pred, classes),
        "minority_recall": M.minority_recall(recalls, data.minority_classes),
        "ece": M.expected_calibration_error(probs, y_test),
        "nll": M.nll(logits[:, None], y_test),
        "brier": M.brier(probs, y_test),
    }
    generator = torch.Generator().manual_seed(trial.stream_seed("eval_order"))
    batches = len(y_test) // trial.batch_size
    order = torch.randperm(len(y_test), generator=generator)[: batches * trial.batch_size]
    train_mode = copy.deepcopy(model).train()
    y_train_mode = torch.cat(
        [train_mode(x_test[i]).argmax(1) for i in order.split(trial.batch_size)]
    )
    measured["train_eval_gap"] = M.accuracy(y_test[order], y_train_mode[:, None]) - M.accuracy(
        y_test[order], y_pred[order]
    )
    measured["fold_max_abs_diff"] = train._fold_max_abs_diff(model.head, features, logits)
    val_logits = model(x_val)[:, None]
    val_recalls = M.per_class_recall(y_val, val_logits.argmax(2), classes)
    measured["val_balanced_acc"] = M.balanced_accuracy(val_recalls)
    measured["val_nll"] = M.nll(val_logits, y_val)
    precise = precise_bn(trial, model, x_train, data.y_train) or model
    for name, x, y in [
        ("balanced_acc_precise", x_test, y_test),
        ("val_balanced_acc_precise", x_val, y_val),
    ]:
        predictions = precise(x).argmax(1)[:, None]
        measured[name] = M.balanced_accuracy(M.per_class_recall(y, predictions, classes))
    out.update((name, float(value)) for name, value in measured.items())
    return recalls[0].tolist(), bool(M.is_collapsed(y_pred, classes))


@pytest.mark.parametrize(
    ("architecture", "head", "dropout"),
    [
        ("cnn", "bn", 0),
        ("cnn", "plain", 0),
        ("mlp", "bn", 0),
        ("mlp", "plain", 0),
        ("mlp", "bn", 0.2),
    ],
)
def test_shared_forward_passes_record_the_same_metrics(
    make_trial, monkeypatch, architecture, head, dropout
):
    """A quick trial's metrics equal (to 1e-6) the evaluation before the fast paths: the
    features reused for PreciseBN when the body has no BN, the fast no-gradient max pool;
    with dropout, the draws from torch's global generator in the same order."""
    trial = make_trial(
        architecture=architecture, head=head, dropout=dropout, epochs=2, imbalance_ratio=10.0
    )
    seen = {}
    real_evaluate = train._evaluate

    def both(trial, model, data, x_train, device, out):
        state, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
        seen["result"] = real_evaluate(trial, model, data, x_train, device, out)
        model.load_state_dict(state)  # as trained, whatever evaluation did to it
        torch.set_rng_state(rng)  # dropout draws the same masks again
        with monkeypatch.context() as m, torch.no_grad():
            m.setattr(MaxPool2x2, "forward", nn.MaxPool2d.forward)
            seen["before"] = {}
            seen["reference"] = _evaluate_as_before(trial, model, data, x_train, seen["before"])
        return seen["result"]

    monkeypatch.setattr(train, "_evaluate", both)
    after = run_trial(trial).metrics
    assert seen["result"] == seen["reference"]  # per-class recalls and collapse
    for name, value in seen["before"].items():
        assert after[name] == pytest.approx(value, abs=1e-6, nan_ok=True), name
