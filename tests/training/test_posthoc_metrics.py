"""The post-hoc long-tail metrics of every trial: ``balanced_acc_taunorm`` (Kang et al. 2020's
tau-normalised classifier, tau 1, bias dropped) and ``balanced_acc_posthoc_la`` (Menon et al.
2021's post-hoc logit adjustment, tau 1), on hand-made classifiers and recomputed by hand from
a trained model. Packs compute the same values: ``tests/test_packing*.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from bnstudy.catalogue import METRICS
from bnstudy.data import Dataset, build_dataset
from bnstudy.training import metrics as M
from bnstudy.training import train


def assert_close(actual: torch.Tensor, expected, atol: float = 1e-12) -> None:
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def test_tau_norm_of_a_hand_made_fc():
    # rows of norm 5, 2 and 1; two inputs; one copy (the copies lie along dimension 1)
    weight = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])[:, None]  # (C, K, f)
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])[:, None]  # (n, K, f)
    expected = [[7 / 5, 2 / 2, 1 / 1], [2 / 5, -2 / 2, 2 / 1]]
    assert_close(M.tau_normalised_logits(x, weight)[:, 0], expected)
    # tau = 0 is the FC itself, without its bias
    raw = M.tau_normalised_logits(x, weight, tau=0.0)[:, 0]
    assert_close(raw, [[7.0, 2.0, 1.0], [2.0, -2.0, 2.0]])
    # the normalisation changes the decision: class 0 wins on raw scores, 2 after
    assert raw[1].argmax() == 0 and M.tau_normalised_logits(x, weight)[1, 0].argmax() == 2


def test_posthoc_logit_adjustment_subtracts_the_log_prior():
    logits = torch.tensor([[1.0, 0.9], [0.2, -1.0]])[:, None]
    adjusted = M.posthoc_logit_adjusted(logits, [90, 10])[:, 0]
    expected = [[1.0 - math.log(0.9), 0.9 - math.log(0.1)], [0.2 - math.log(0.9), -1.0 + 2.302585]]
    assert_close(adjusted, expected, atol=1e-6)
    assert adjusted.argmax(dim=1).tolist() == [1, 1]  # the rare class wins both after it


def test_the_metrics_of_a_trained_model_equal_a_manual_computation(make_trial, monkeypatch):
    """A BN head on an imbalanced set: recompute both metrics from the trained model's FC
    (weights, bias, the BN before it) and its test logits by hand."""
    models = []
    build_model = train.build_model
    monkeypatch.setattr(
        train, "build_model", lambda *a, **k: models.append(build_model(*a, **k)) or models[-1]
    )
    trial = make_trial(head="bn", imbalance_ratio=20.0, epochs=2)
    result = train.run_trial(trial)
    (model,) = models
    data = build_dataset(trial)
    model.eval()
    with torch.no_grad():
        fc_input = model.head.pre(model.body(data.x_test)).double()  # eval-mode BN
        logits = model.head(model.body(data.x_test)).double()
    weight = model.head.fc.weight.double()
    taunorm = fc_input @ (weight / weight.norm(dim=1, keepdim=True)).T  # no bias
    prior = torch.tensor(data.class_counts, dtype=torch.float64) / sum(data.class_counts)
    adjusted = logits - prior.log()
    for name, scores in (("balanced_acc_taunorm", taunorm), ("balanced_acc_posthoc_la", adjusted)):
        assert result.metrics[name] == pytest.approx(balanced_accuracy(data, scores), abs=1e-12)
    # on a long tail both corrections move the decision away from the raw logits'
    assert result.metrics["balanced_acc_posthoc_la"] != result.metrics["balanced_acc"]
    assert result.metrics["balanced_acc_taunorm"] != result.metrics["balanced_acc"]


def balanced_accuracy(data: Dataset, scores: torch.Tensor) -> float:
    predicted = scores.argmax(dim=1)
    recalls = [
        (predicted[data.y_test == c] == c).double().mean().item()
        for c in range(data.num_classes)
        if (data.y_test == c).any()
    ]
    return sum(recalls) / len(recalls)


def test_a_class_without_training_images_has_no_prior_and_no_adjusted_metric():
    data = Dataset(
        x_train=torch.empty(0),
        y_train=torch.empty(0, dtype=torch.int64),
        x_test=torch.empty(4, 1),
        y_test=torch.tensor([0, 1, 2, 0]),
        num_classes=3,
        input_shape=(1,),
        class_counts=[5, 0, 3],
    )
    o = {
        "features": torch.rand(4, 1, 2),
        "logits": torch.randn(4, 1, 3),
        "fc_input": torch.randn(4, 1, 2),
        "fc_weight": torch.randn(3, 1, 2),
        "fold": torch.tensor([math.nan], dtype=torch.float64),
    }
    metrics, _, _ = M.evaluation_metrics(o, data)
    assert "balanced_acc_posthoc_la" not in metrics  # recorded as NaN
    assert "balanced_acc_taunorm" in metrics


def test_the_catalogue_declares_them_as_balanced_accuracies():
    reference = METRICS["balanced_acc"]
    for name in ("balanced_acc_taunorm", "balanced_acc_posthoc_la"):
        info = METRICS[name]
        assert (info.direction, info.scale, info.unit, info.default_margin) == (
            reference.direction,
            reference.scale,
            reference.unit,
            reference.default_margin,
        )
        assert info.chance(10) == reference.chance(10) and info.imputed
