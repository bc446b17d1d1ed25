"""Per-trial metrics: pure functions from labels, predictions, probabilities or activations.

Inputs may be numpy arrays or torch tensors (any device); outputs are Python floats, bools
or lists. ``n`` is the number of examples, ``C`` the number of classes, ``d`` the number of
units. Accuracies and recalls are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ArrayLike = Any  # numpy array, torch tensor or sequence


def _np(a: ArrayLike) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, possibly on an accelerator
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of correct predictions. y_true, y_pred: int (n,). Returns a float in [0, 1]."""
    return float(np.mean(_np(y_true) == _np(y_pred)))


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> list[float]:
    """Recall of each class. y_true, y_pred: int (n,). Returns C floats; NaN for absent classes."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    recalls = []
    for c in range(num_classes):
        members = y_true == c
        recalls.append(float(np.mean(y_pred[members] == c)) if members.any() else math.nan)
    return recalls


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    """Mean per-class recall over the classes present in y_true. y_true, y_pred: int (n,)."""
    return float(np.nanmean(per_class_recall(y_true, y_pred, num_classes)))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    """Unweighted mean F1 over all C classes; a class with no true positives has F1 = 0.

    y_true, y_pred: int (n,). Returns a float in [0, 1].
    """
    y_true, y_pred = _np(y_true), _np(y_pred)
    scores = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(scores))


def minority_recall(recalls: Sequence[float], minority_classes: Sequence[int]) -> float:
    """Mean recall over the minority classes. recalls: C floats. NaN when there are none."""
    if len(minority_classes) == 0:
        return math.nan
    return float(np.mean([recalls[c] for c in minority_classes]))


def worst_class_recall(recalls: Sequence[float]) -> float:
    """Lowest per-class recall, ignoring NaN (absent classes). recalls: C floats."""
    return float(np.nanmin(recalls))


def expected_calibration_error(probs: ArrayLike, y_true: ArrayLike, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins (Guo et al. 2017).

    probs: (n, C) rows summing to 1; y_true: int (n,). Confidence is the max probability;
    bin b holds confidences in ``(b/n_bins, (b+1)/n_bins]``. Returns
    ``sum_b |acc_b - conf_b| * n_b / n``, a float in [0, 1].
    """
    probs, y_true = _np(probs).astype(np.float64), _np(y_true)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            ece += gap * members.mean()
    return float(ece)


def nll(logits: ArrayLike, y_true: ArrayLike) -> float:
    """Mean negative log-likelihood of the true class, in nats. logits: (n, C); y_true: int (n,)."""
    logits, y_true = _np(logits).astype(np.float64), _np(y_true)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(y_true)), y_true]))


def brier(probs: ArrayLike, y_true: ArrayLike) -> float:
    """Multi-class Brier score: mean over examples of ``sum_k (p_k - [k == y])**2``, in [0, 2].

    probs: (n, C); y_true: int (n,).
    """
    probs, y_true = _np(probs).astype(np.float64), _np(y_true)
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def mean_max_prob(probs: ArrayLike) -> float:
    """Mean confidence (largest class probability). probs: (n, C). Returns a float in [0, 1]."""
    return float(np.mean(_np(probs).max(axis=1)))


def dead_unit_fraction(activations: ArrayLike) -> float:
    """Fraction of units inactive (<= 0) on every input. activations: (n, d) post-ReLU."""
    return float(np.mean(np.all(_np(activations) <= 0, axis=0)))


def inactive_unit_fraction(activations: ArrayLike) -> float:
    """Mean over inputs of the fraction of units inactive (<= 0) on that input. (n, d) -> float."""
    return float(np.mean(_np(activations) <= 0))


def is_collapsed(y_pred: ArrayLike, threshold: float = 0.95) -> bool:
    """True when one class receives at least ``threshold`` of the predictions. y_pred: int (n,)."""
    y_pred = _np(y_pred)
    return bool(np.bincount(y_pred).max() >= threshold * len(y_pred))


def rank_correlation(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman correlation of two length-k vectors; ties get average ranks.

    Returns NaN when either vector is constant (e.g. counts of a balanced set). Used for
    the per-class FC weight norm against the training class counts.
    """
    rx, ry = _ranks(_np(x)), _ranks(_np(y))
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-d array, ties sharing their average rank."""
    a = a.astype(np.float64)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2)[inverse]


def max_abs_difference(a: ArrayLike, b: ArrayLike) -> float:
    """Largest absolute elementwise difference of two same-shape arrays (e.g. logits (n, C)).

    Computed in float64; NaN when either holds a NaN, 0 for empty arrays.
    """
    a, b = _np(a).astype(np.float64), _np(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"max_abs_difference: shapes differ, {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0
