"""The metric definitions on hand-computed cases, each as one copy (K = 1) unless it says."""

import math

import pytest
import torch

from bnstudy.training import metrics as M

Y_TRUE = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
Y_PRED = torch.tensor([0, 0, 0, 1, 1, 2, 2, 0])


def one_copy(values) -> torch.Tensor:
    """Values of one model, (n, ...) -> (n, 1, ...): the copies' layout with K = 1."""
    return torch.as_tensor(values).unsqueeze(1)


def test_accuracy_and_per_class_recall():
    assert M.accuracy(Y_TRUE, one_copy(Y_PRED)).tolist() == pytest.approx([5 / 8])
    recalls = M.per_class_recall(Y_TRUE, one_copy(Y_PRED), 3)
    assert recalls.tolist() == [pytest.approx([3 / 4, 1 / 2, 1 / 2])]
    # two copies side by side; labels shared by the copies, or each copy's own
    predictions = torch.stack([Y_PRED, Y_TRUE], dim=1)
    assert M.accuracy(Y_TRUE, predictions).tolist() == pytest.approx([5 / 8, 1.0])
    labels = torch.stack([Y_PRED, Y_PRED], dim=1)
    assert M.accuracy(labels, predictions).tolist() == pytest.approx([1.0, 5 / 8])


def test_balanced_accuracy_is_mean_recall_ignoring_absent_classes():
    recalls = M.per_class_recall(Y_TRUE, one_copy(Y_PRED), 3)
    assert M.balanced_accuracy(recalls).item() == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    recalls = M.per_class_recall(torch.tensor([0, 0]), one_copy([0, 1]), 3)
    assert recalls[0, 0] == 0.5 and math.isnan(recalls[0, 1])
    assert M.balanced_accuracy(recalls).item() == pytest.approx(0.5)


def test_macro_f1_by_hand():
    # class 0: tp 3, fp 1, fn 1 -> 6/8; class 1: tp 1, fp 1, fn 1 -> 2/4; class 2: same -> 2/4
    f1 = M.macro_f1(Y_TRUE, one_copy(Y_PRED), 3)
    assert f1.item() == pytest.approx((6 / 8 + 0.5 + 0.5) / 3)
    # a class never predicted correctly scores 0
    f1 = M.macro_f1(torch.tensor([0, 1]), one_copy([0, 0]), 2)
    assert f1.item() == pytest.approx((2 / 3 + 0) / 2)


def test_minority_and_worst_class_recall():
    recalls = torch.tensor([[0.9, 0.5, 0.2, math.nan]], dtype=torch.float64)
    assert M.minority_recall(recalls, [1, 2]).item() == pytest.approx(0.35)
    assert math.isnan(M.minority_recall(recalls, []).item())
    assert M.worst_class_recall(recalls).item() == pytest.approx(0.2)
    assert math.isnan(M.worst_class_recall(torch.full((1, 3), math.nan)).item())  # none present


def test_expected_calibration_error_by_hand():
    probs = one_copy([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y_true = torch.tensor([0, 1, 0, 1])
    # bin (0.867, 0.933]: two at conf 0.9, acc 0.5 -> |0.5 - 0.9| * 2/4 = 0.2
    # bin (0.533, 0.6]: conf 0.6, acc 1 -> 0.4 * 1/4 = 0.1
    # bin (0.667, 0.733]: conf 0.7, acc 1 -> 0.3 * 1/4 = 0.075
    assert M.expected_calibration_error(probs, y_true).item() == pytest.approx(0.375)
    perfect = one_copy(torch.eye(3))
    assert M.expected_calibration_error(perfect, torch.arange(3)).item() == pytest.approx(0.0)


def test_nll_brier_and_confidence_by_hand():
    logits = one_copy([[0.0, 0.0], [math.log(3.0), 0.0]])
    y_true = torch.tensor([0, 1])
    # probabilities [.5, .5] and [.75, .25]
    assert M.nll(logits, y_true).item() == pytest.approx((math.log(2) + math.log(4)) / 2)
    probs = torch.softmax(logits, 2)
    brier = (0.25 + 0.25 + 0.75**2 + 0.75**2) / 2
    assert M.brier(probs, y_true).item() == pytest.approx(brier)
    assert M.mean_max_prob(probs).item() == pytest.approx((0.5 + 0.75) / 2)


def test_nll_is_stable_for_huge_logits():
    assert M.nll(one_copy([[1000.0, 0.0]]), torch.tensor([1])).item() == pytest.approx(1000.0)


def test_dead_and_inactive_unit_fractions():
    activations = one_copy([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1.0]])
    assert M.dead_unit_fraction(activations).item() == pytest.approx(1 / 4)  # unit 0
    assert M.inactive_unit_fraction(activations).item() == pytest.approx(4 / 8)


def test_is_collapsed_at_95_percent():
    assert M.is_collapsed(one_copy([3] * 19 + [1]), 4).tolist() == [True]
    assert M.is_collapsed(one_copy([3] * 18 + [1, 2]), 4).tolist() == [False]


def test_rank_correlation():
    assert M.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks [1, 2.5, 2.5, 4], y ranks [4, 2.5, 2.5, 1]
    assert M.rank_correlation([1, 2, 2, 3], [9, 5, 5, 1]) == pytest.approx(-1.0)
    assert math.isnan(M.rank_correlation([1.0, 2.0, 3.0], [5, 5, 5]))


def test_max_abs_difference():
    a = one_copy([[1.0, -2.0], [0.5, 0.0]])
    b = one_copy(torch.tensor([[1.0, -2.5], [0.5, 0.25]], dtype=torch.float64))
    assert M.max_abs_difference(a, b).tolist() == pytest.approx([0.5])
    assert M.max_abs_difference(a, a).tolist() == [0.0]
    assert math.isnan(M.max_abs_difference(one_copy([1.0, math.nan]), one_copy([1.0, 2.0])))
    assert M.max_abs_difference(torch.zeros(0, 1, 3), torch.zeros(0, 1, 3)).tolist() == [0.0]
    with pytest.raises(ValueError, match="shapes differ"):
        M.max_abs_difference(torch.zeros(2, 1), torch.zeros(3, 1))
