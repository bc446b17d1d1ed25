"""Evaluation metrics of K models at once ("copies"): a lone trial is K = 1, a seed pack K.

The copies lie side by side along dimension 1: predictions (n, K), logits and probabilities
(n, K, C), units (n, K, d); labels are (n,), shared by the copies. Each metric is (K,) float64
(per-class recalls (K, C)) on the inputs' device: an accelerator computes every copy's
metrics without reading anything back until :func:`per_copy` reads them all at once. ``n`` is
the number of examples, ``C`` the number of classes, ``d`` the number of units. Accuracies
and recalls are fractions in [0, 1].

:func:`rank_correlation` alone takes one copy's vectors (numpy arrays, tensors or sequences):
ranking with ties has no batched form worth its code, and it is one call per copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bnstudy.training.losses import LA_TAU, log_prior

if TYPE_CHECKING:
    from bnstudy.data import Dataset

ArrayLike = Any  # numpy array, torch tensor or sequence

#: ``tau`` of the tau-normalised classifier (Kang et al. 2020): 1, every class's weight row
#: scaled to unit norm. Kang et al. choose tau on validation data; a fixed tau selects nothing.
TAU_NORM = 1.0


def evaluation_metrics(
    o: Mapping[str, torch.Tensor], data: Dataset
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Every evaluation metric of the copies' outputs ``o`` but ``fc_weight_norm_rank_corr``.

    ``o`` (on one device): ``features`` (n, K, d) and ``logits`` (n, K, C) of the test set,
    ``fc_input`` (n, K, f; the test set's input of the final FC ``head.fc``) and ``fc_weight``
    (C, K, f; its weight rows), ``fold`` (K,; the BN-fold check, NaN where it does not
    apply); where they apply: ``units``
    (n, K, u; the head's hidden units, see ``train._head_forward``) with, where only some
    copies have such units, ``has_units`` (K,) bool; ``gap_order`` and ``gap_pred`` (m, K:
    each copy's test images and its train-mode predictions on them); ``val_logits``
    (n_val, K, C); ``precise_test`` and ``precise_val`` (PreciseBN predictions (n, K) and
    (n_val, K); absent for a model without BN, which PreciseBN leaves as it is).

    Returns the metrics, (K,) float64 each (a metric that does not apply is left out, its
    recorded value NaN), the per-class test recalls (K, C) and whether each copy's test
    predictions collapsed (K,) bool.
    """
    if o["logits"].device.type == "mps":  # no float64 there: measured on the CPU instead
        o = {name: t.cpu() for name, t in o.items()}
    device, classes = o["logits"].device, data.num_classes
    y = data.y_test.to(device)
    out: dict[str, torch.Tensor] = {}
    if "units" in o:
        out["head_dead_frac"] = dead_unit_fraction(o["units"])
        out["head_inactive_frac"] = inactive_unit_fraction(o["units"])
        if "has_units" in o:  # NaN for the copies whose head has no such units
            for name in ("head_dead_frac", "head_inactive_frac"):
                out[name] = out[name].where(o["has_units"], math.nan)
    # Body features are post-ReLU (mlp) or averages of post-ReLU maps (cnn): 0 means inactive.
    out["feature_dead_frac"] = dead_unit_fraction(o["features"])
    out["feature_inactive_frac"] = inactive_unit_fraction(o["features"])

    logits = o["logits"]
    probs = logits.double().softmax(dim=2)
    y_pred = logits.argmax(dim=2)
    recalls = per_class_recall(y, y_pred, classes)
    out["test_acc"] = accuracy(y, y_pred)
    out["balanced_acc"] = balanced_accuracy(recalls)
    out["macro_f1"] = macro_f1(y, y_pred, classes)
    out["minority_recall"] = minority_recall(recalls, data.minority_classes)
    out["worst_class_recall"] = worst_class_recall(recalls)
    out["ece"] = expected_calibration_error(probs, y)
    out["nll"] = nll(logits, y)
    out["brier"] = brier(probs, y)
    out["mean_max_prob"] = mean_max_prob(probs)
    # Post-hoc corrections of the same trained classifier (no training): every trial has them.
    tau_pred = tau_normalised_logits(o["fc_input"], o["fc_weight"]).argmax(dim=2)
    out["balanced_acc_taunorm"] = balanced_accuracy(per_class_recall(y, tau_pred, classes))
    if min(data.class_counts, default=0) > 0:  # else no prior: its log is -inf (left out: NaN)
        adjusted = posthoc_logit_adjusted(logits, data.class_counts).argmax(dim=2)
        out["balanced_acc_posthoc_la"] = balanced_accuracy(per_class_recall(y, adjusted, classes))
    if "gap_order" in o:  # BN on batch statistics minus eval mode, on the same test images
        order = o["gap_order"]
        out["train_eval_gap"] = accuracy(y[order], o["gap_pred"]) - accuracy(
            y[order], y_pred.gather(0, order)
        )
    out["fold_max_abs_diff"] = o["fold"]

    y_val = data.y_val.to(device) if "val_logits" in o or "precise_val" in o else None
    if "val_logits" in o:
        val_pred = o["val_logits"].argmax(dim=2)
        out["val_acc"] = accuracy(y_val, val_pred)
        out["val_balanced_acc"] = balanced_accuracy(per_class_recall(y_val, val_pred, classes))
        out["val_nll"] = nll(o["val_logits"], y_val)
    if "precise_test" not in o:  # no BN: recomputing nothing leaves the same model
        out["balanced_acc_precise"] = out["balanced_acc"]
        if "val_balanced_acc" in out:
            out["val_balanced_acc_precise"] = out["val_balanced_acc"]
    else:
        precise_recalls = per_class_recall(y, o["precise_test"], classes)
        out["balanced_acc_precise"] = balanced_accuracy(precise_recalls)
        if "precise_val" in o:
            precise_recalls = per_class_recall(y_val, o["precise_val"], classes)
            out["val_balanced_acc_precise"] = balanced_accuracy(precise_recalls)
    return out, recalls, is_collapsed(y_pred, classes)


def per_copy(
    metrics: Mapping[str, torch.Tensor], recalls: torch.Tensor, collapsed: torch.Tensor
) -> list[tuple[dict[str, float], list[float], bool]]:
    """:func:`evaluation_metrics`' results as Python values, (metrics, recalls, collapsed)
    for each copy, read from the device in one transfer (each read stalls an accelerator)."""
    columns = [torch.stack(list(metrics.values()), dim=1), recalls, collapsed[:, None].double()]
    rows = torch.cat(columns, dim=1).tolist()  # the one transfer
    count = len(metrics)
    return [
        (dict(zip(metrics, row[:count], strict=True)), row[count:-1], row[-1] > 0) for row in rows
    ]


# -- predictions ------------------------------------------------------------------------


def accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Fraction of correct predictions. y_true: int (n,), or (n, K) with labels of each
    copy's own; y_pred: int (n, K). Returns (K,) in [0, 1]."""
    return (y_pred == y_true.reshape(len(y_true), -1)).double().mean(dim=0)


def per_class_recall(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Recall of each class. y_true: int (n,); y_pred: int (n, K). Returns (K, C); NaN for
    classes absent from y_true."""
    hits, _, sizes = _confusion(y_true, y_pred, num_classes)
    return hits / sizes  # 0/0 for an absent class


def balanced_accuracy(recalls: torch.Tensor) -> torch.Tensor:
    """Mean per-class recall over the classes present (recall not NaN). recalls: (K, C)."""
    return recalls.nanmean(dim=1)


def macro_f1(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Unweighted mean F1 over all C classes; a class with no true positives has F1 = 0.

    y_true: int (n,); y_pred: int (n, K). Returns (K,) in [0, 1].
    """
    hits, predicted, sizes = _confusion(y_true, y_pred, num_classes)
    # F1 = 2 tp / (2 tp + fp + fn), and 2 tp + fp + fn = predicted + size.
    return torch.where(hits > 0, 2 * hits / (predicted + sizes), 0.0).mean(dim=1)


def minority_recall(recalls: torch.Tensor, minority_classes: Sequence[int]) -> torch.Tensor:
    """Mean recall over the minority classes. recalls: (K, C). NaN when there are none."""
    return recalls[:, list(minority_classes)].mean(dim=1)  # the mean of none is NaN


def worst_class_recall(recalls: torch.Tensor) -> torch.Tensor:
    """Lowest per-class recall, ignoring NaN (absent classes). recalls: (K, C) -> (K,); NaN
    when every class is absent."""
    lowest = recalls.nan_to_num(nan=math.inf).amin(dim=1)
    return lowest.where(lowest.isfinite(), math.nan)


def is_collapsed(y_pred: torch.Tensor, num_classes: int, threshold: float = 0.95) -> torch.Tensor:
    """True when one class receives at least ``threshold`` of the predictions.
    y_pred: int (n, K). Returns (K,) bool."""
    largest = _one_hot(y_pred, num_classes).sum(dim=0).amax(dim=1)
    return largest >= threshold * len(y_pred)


def _confusion(
    y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels (n,), predictions (n, K) -> per copy and class the true positives and the
    predictions (K, C), and the class sizes (C,), all float64 (exact integers)."""
    truth = _one_hot(y_true, num_classes).double()  # (n, C)
    hits = (y_pred == y_true[:, None]).double().T @ truth
    predicted = _one_hot(y_pred, num_classes).sum(dim=0).double()
    return hits, predicted, truth.sum(dim=0)


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Labels (...) -> one-hot bool (..., classes). ``F.one_hot`` checks the labels' range by
    reading it back to the host on some devices (a sync on an accelerator); this reads nothing."""
    return labels.unsqueeze(-1) == torch.arange(classes, device=labels.device)


# -- probabilities ----------------------------------------------------------------------


def expected_calibration_error(
    probs: torch.Tensor, y_true: torch.Tensor, n_bins: int = 15
) -> torch.Tensor:
    """ECE over equal-width confidence bins (Guo et al. 2017).

    probs: (n, K, C) rows summing to 1; y_true: int (n,). Confidence is the max probability;
    bin b holds confidences in ``(b/n_bins, (b+1)/n_bins]``. Returns, per copy,
    ``sum_b |acc_b - conf_b| * n_b / n``, (K,) in [0, 1].
    """
    probs = probs.double()
    confidence = probs.amax(dim=2)  # (n, K)
    correct = (probs.argmax(dim=2) == y_true[:, None]).double()
    bins = ((confidence * n_bins).ceil().long() - 1).clamp(0, n_bins - 1)
    members = _one_hot(bins, n_bins).double()  # (n, K, bins)
    count = members.sum(dim=0)  # (K, bins)
    accuracy_b = (correct.unsqueeze(2) * members).sum(dim=0) / count
    confidence_b = (confidence.unsqueeze(2) * members).sum(dim=0) / count
    gap = (accuracy_b - confidence_b).abs() * (count / len(y_true))
    return torch.where(count > 0, gap, 0.0).sum(dim=1)  # an empty bin (0/0) adds nothing


def nll(logits: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the true class, in nats, computed in float64.
    logits: (n, K, C); y_true: int (n,). Returns (K,)."""
    log_probs = logits.double().log_softmax(dim=2)
    true_class = y_true.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    return -log_probs.gather(2, true_class).squeeze(2).mean(dim=0)


def brier(probs: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Multi-class Brier score: mean over examples of ``sum_k (p_k - [k == y])**2``, in [0, 2].

    probs: (n, K, C); y_true: int (n,). Returns (K,).
    """
    onehot = _one_hot(y_true, probs.shape[2])[:, None].double()  # (n, 1, C)
    return (probs.double() - onehot).square().sum(dim=2).mean(dim=0)


def mean_max_prob(probs: torch.Tensor) -> torch.Tensor:
    """Mean confidence (largest class probability). probs: (n, K, C). Returns (K,) in [0, 1]."""
    return probs.amax(dim=2).double().mean(dim=0)


# -- post-hoc classifiers ---------------------------------------------------------------


def tau_normalised_logits(
    fc_input: torch.Tensor, fc_weight: torch.Tensor, tau: float = TAU_NORM
) -> torch.Tensor:
    """The logits of the tau-normalised classifier (Kang et al. 2020, ICLR, "Decoupling
    representation and classifier"): ``x . w_j / ||w_j|| ** tau`` for class ``j``, bias
    dropped, in float64. fc_input: (n, K, f); fc_weight: the final FC's rows (C, K, f).
    Returns (n, K, C).

    Kang et al.'s ``tau_norm.py`` loads the FC's bias but scores with
    ``dotproduct_similarity(feat, pnorm(weights, p))``, a plain product: the bias is dropped,
    and so it is here. Whatever follows the FC is dropped with it (``logit_bn``'s BN on the
    logits: at tau = 1 that is the tau-norm of its eval-mode classifier ``diag(g) W`` whenever
    every scale ``g = gamma / sigma`` is positive, since a row's normalisation cancels it).
    """
    weight = fc_weight.double()
    normalised = weight / weight.norm(dim=2, keepdim=True).pow(tau)
    return torch.einsum("nkf,ckf->nkc", fc_input.double(), normalised)


def posthoc_logit_adjusted(
    logits: torch.Tensor, class_counts: Sequence[int], tau: float = LA_TAU
) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021, ICLR): ``logits - tau * log(prior)``, the
    prior the training set's class frequencies, in float64. logits: (n, K, C) -> (n, K, C)."""
    prior = log_prior(class_counts).to(logits.device)
    return logits.double() - tau * prior


# -- units ------------------------------------------------------------------------------


def dead_unit_fraction(units: torch.Tensor) -> torch.Tensor:
    """Fraction of units inactive (<= 0) on every input. units: (n, K, d) post-ReLU -> (K,)."""
    return units.le(0).all(dim=0).double().mean(dim=1)


def inactive_unit_fraction(units: torch.Tensor) -> torch.Tensor:
    """Mean over inputs of the fraction of units inactive (<= 0) on that input.
    units: (n, K, d) -> (K,)."""
    return units.le(0).double().mean(dim=(0, 2))


# -- logits and weights -----------------------------------------------------------------


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Each copy's largest absolute elementwise difference of two same-shape tensors (n, K, ...)
    (e.g. logits (n, K, C)). Returns (K,), computed in float64; NaN where either holds a NaN,
    0 when n = 0."""
    if a.shape != b.shape:
        raise ValueError(f"max_abs_difference: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if len(a) == 0:
        return torch.zeros(a.shape[1], dtype=torch.float64, device=a.device)
    difference = (a.double() - b.double()).abs()
    return difference.amax(dim=(0, *range(2, a.dim())))


def rank_correlation(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman correlation of two length-k vectors; ties get average ranks.

    Returns NaN when either vector is constant (e.g. counts of a balanced set). Used for
    the per-class FC weight norm against the training class counts.
    """
    rx, ry = _ranks(_np(x)), _ranks(_np(y))
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _np(a: ArrayLike) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, possibly on an accelerator
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-d array, ties sharing their average rank."""
    a = a.astype(np.float64)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2)[inverse]
