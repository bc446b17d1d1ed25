import math

import numpy as np
import pytest
import torch

from bnstudy import metrics as M

Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 2, 2, 0]


def test_accuracy_and_per_class_recall():
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)
    assert M.per_class_recall(Y_TRUE, Y_PRED, 3) == pytest.approx([3 / 4, 1 / 2, 1 / 2])


def test_balanced_accuracy_is_mean_recall_ignoring_absent_classes():
    assert M.balanced_accuracy(Y_TRUE, Y_PRED, 3) == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    recalls = M.per_class_recall([0, 0], [0, 1], 3)
    assert recalls[0] == 0.5 and math.isnan(recalls[1])
    assert M.balanced_accuracy([0, 0], [0, 1], 3) == pytest.approx(0.5)


def test_macro_f1_by_hand():
    # class 0: tp 3, fp 1, fn 1 -> 6/8; class 1: tp 1, fp 1, fn 1 -> 2/4; class 2: same -> 2/4
    assert M.macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((6 / 8 + 0.5 + 0.5) / 3)
    # a class never predicted correctly scores 0
    assert M.macro_f1([0, 1], [0, 0], 2) == pytest.approx((2 / 3 + 0) / 2)


def test_minority_and_worst_class_recall():
    recalls = [0.9, 0.5, 0.2, math.nan]
    assert M.minority_recall(recalls, [1, 2]) == pytest.approx(0.35)
    assert math.isnan(M.minority_recall(recalls, []))
    assert M.worst_class_recall(recalls) == pytest.approx(0.2)


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y_true = [0, 1, 0, 1]
    # bin (0.867, 0.933]: two at conf 0.9, acc 0.5 -> |0.5 - 0.9| * 2/4 = 0.2
    # bin (0.533, 0.6]: conf 0.6, acc 1 -> 0.4 * 1/4 = 0.1
    # bin (0.667, 0.733]: conf 0.7, acc 1 -> 0.3 * 1/4 = 0.075
    assert M.expected_calibration_error(probs, y_true) == pytest.approx(0.375)
    perfect = np.eye(3)
    assert M.expected_calibration_error(perfect, [0, 1, 2]) == pytest.approx(0.0)


def test_nll_brier_and_confidence_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    y_true = torch.tensor([0, 1])
    # probabilities [.5, .5] and [.75, .25]
    assert M.nll(logits, y_true) == pytest.approx((math.log(2) + math.log(4)) / 2)
    probs = torch.softmax(logits, 1)
    assert M.brier(probs, y_true) == pytest.approx((0.25 + 0.25 + 0.75**2 + 0.75**2) / 2)
    assert M.mean_max_prob(probs) == pytest.approx((0.5 + 0.75) / 2)


def test_nll_is_stable_for_huge_logits():
    assert M.nll([[1000.0, 0.0]], [1]) == pytest.approx(1000.0)


def test_dead_and_inactive_unit_fractions():
    activations = np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1.0]])
    assert M.dead_unit_fraction(activations) == pytest.approx(1 / 4)  # unit 0
    assert M.inactive_unit_fraction(activations) == pytest.approx(4 / 8)


def test_is_collapsed_at_95_percent():
    assert M.is_collapsed(torch.tensor([3] * 19 + [1]))
    assert not M.is_collapsed([3] * 18 + [1, 2])


def test_rank_correlation():
    assert M.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks [1, 2.5, 2.5, 4], y ranks [4, 2.5, 2.5, 1]
    assert M.rank_correlation([1, 2, 2, 3], [9, 5, 5, 1]) == pytest.approx(-1.0)
    assert math.isnan(M.rank_correlation([1.0, 2.0, 3.0], [5, 5, 5]))


def test_max_abs_difference():
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    b = np.array([[1.0, -2.5], [0.5, 0.25]])
    assert M.max_abs_difference(a, b) == pytest.approx(0.5)
    assert M.max_abs_difference(a, a) == 0.0
    assert math.isnan(M.max_abs_difference([1.0, math.nan], [1.0, 2.0]))
    assert M.max_abs_difference(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        M.max_abs_difference(np.zeros(2), np.zeros(3))
