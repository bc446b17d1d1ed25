"""The training loss of a trial (the ``loss`` factor): cross-entropy, or a long-tail remedy.

One :class:`Criterion` per trial (or pack: its copies share their class counts), built by
:func:`criterion` from the trial's training set; the loop (:mod:`bnstudy.training.loop`)
calls it at every step, a trial alone through :meth:`Criterion.mean`, a pack through
:meth:`Criterion.per_copy_mean` (the same loss, each copy's on its own batch).

- ``ce`` (the default, left out of trial ids): the mean cross-entropy, as the first release.
- ``cb_reweight``: class-balanced re-weighting (Cui et al. 2019, CVPR): class ``c`` weighs
  ``(1 - beta) / (1 - beta ** n_c)``, one over its *effective number of samples*, with
  ``beta`` = :data:`CB_BETA` and ``n_c`` its training count; the weights are normalised to
  sum to the number of classes ``C``. Written as Cao et al.'s code writes it (LDAM-DRW,
  ``cifar_train.py``, ``train_rule == 'Reweight'``): the weighted mean of torch's
  ``cross_entropy(weight=...)``, ``sum_i w_{y_i} l_i / sum_i w_{y_i}``. (Cui et al.'s own
  TensorFlow code divides by the batch size instead: the two differ by a factor per batch.)
- ``drw``: deferred re-weighting (Cao et al. 2019, NeurIPS, the DRW of LDAM-DRW with plain
  cross-entropy): unweighted until :data:`DRW_START` (80%) of the training steps, then the
  ``cb_reweight`` weights. Cao et al. switch at epoch 160 of 200 (``idx = epoch // 160``):
  80%; here the first weighted step is ``ceil(0.8 * total_steps)`` (:func:`drw_start`),
  the first step of epoch ``0.8 E`` when ``E`` epochs are a multiple of 5.
- ``logit_adjusted``: the logit-adjusted loss of Menon et al. 2021 (ICLR): cross-entropy on
  ``logits + tau * log(prior)``, ``tau`` = :data:`LA_TAU`, the prior the class frequencies
  of the training set (:func:`log_prior`). Evaluation reads the raw logits: that is the
  method (the adjustment only trains the network to leave room for the rare classes).

**Label smoothing** composes with them as torch's ``cross_entropy`` composes it with class
weights: with smoothing ``eps``, ``C`` classes and ``p`` the softmax of the (adjusted)
logits, example ``i`` contributes ``(1 - eps) w_{y_i} (-log p_{i,y_i}) + (eps / C)
sum_c w_c (-log p_{i,c})`` and the batch's loss is their sum over ``sum_i w_{y_i}`` (all
weights 1 without re-weighting: the plain mean). ``tests/training/test_losses.py`` checks
this against a hand computation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from bnstudy.spec.trial import Trial

#: The levels of the ``loss`` factor (``spec.factors.Factors.loss`` lists the same).
LOSSES = ("ce", "cb_reweight", "drw", "logit_adjusted")
#: ``beta`` of the effective number of samples (Cui et al.'s and Cao et al.'s CIFAR-LT value).
CB_BETA = 0.9999
#: The fraction of the training steps ``drw`` trains unweighted (Cao et al.: 160 of 200 epochs).
DRW_START = Fraction(4, 5)
#: ``tau`` of the logit adjustment, in training (``logit_adjusted``) and post hoc (the metric
#: ``balanced_acc_posthoc_la``): Menon et al.'s default, tau = 1.
LA_TAU = 1.0


def class_balanced_weights(class_counts: Sequence[int], beta: float = CB_BETA) -> torch.Tensor:
    """Cui et al.'s class weights, float64 (C,): ``(1 - beta) / (1 - beta ** n_c)`` per class,
    normalised to sum to ``C``. Every count must be at least 1."""
    counts = _positive(class_counts, "class-balanced weights (loss cb_reweight, drw)")
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return weights / weights.sum() * len(counts)


def log_prior(class_counts: Sequence[int]) -> torch.Tensor:
    """The log class prior of a training set, float64 (C,): ``log(n_c / sum n)``. Every count
    must be at least 1 (the log of an empty class's prior is -inf)."""
    counts = _positive(class_counts, "the class prior (logit adjustment)")
    return torch.log(counts / counts.sum())


def _positive(class_counts: Sequence[int], what: str) -> torch.Tensor:
    counts = torch.tensor(list(class_counts), dtype=torch.float64)
    empty = [c for c, n in enumerate(class_counts) if n < 1]
    if empty:
        raise ValueError(f"{what}: class {empty[0]} has no training images; every class needs one")
    return counts


def drw_start(total_steps: int) -> int:
    """The first (0-based) step of ``drw`` that is re-weighted: ``ceil(0.8 * total_steps)``,
    in exact arithmetic (200 epochs of ``s`` steps: step ``160 s``, Cao et al.'s epoch 160)."""
    return math.ceil(DRW_START * total_steps)


@dataclasses.dataclass(frozen=True, eq=False)
class Criterion:
    """A batch's loss: cross-entropy with label smoothing, class weights from step
    ``weighted_from`` on (None: never), and an offset added to every example's logits (None:
    none). Its tensors are on the model's device, in its dtype."""

    label_smoothing: float = 0.0
    #: Class weights (C,), used at steps ``>= weighted_from``.
    class_weight: torch.Tensor | None = None
    weighted_from: int = 0
    #: Added to the logits before the loss (C,): ``tau * log(prior)`` for ``logit_adjusted``.
    logit_offset: torch.Tensor | None = None

    def weight_at(self, step: int) -> torch.Tensor | None:
        """The class weights of optimiser step ``step`` (0-based), or None (unweighted)."""
        return self.class_weight if step >= self.weighted_from else None

    def _adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.logit_offset is None else logits + self.logit_offset

    def mean(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """One model's loss on its batch: logits (B, C), labels (B,) -> a 0-d tensor."""
        return F.cross_entropy(
            self._adjusted(logits),
            y,
            weight=self.weight_at(step),
            label_smoothing=self.label_smoothing,
        )

    def per_copy_mean(self, logits: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """Each copy's :meth:`mean` on its own batch: packed logits (B, K * C) and labels
        (B, K) -> (K,)."""
        batch, copies = y.shape
        weight = self.weight_at(step)
        per_example = F.cross_entropy(
            self._adjusted(logits.reshape(batch * copies, -1)),
            y.reshape(-1),
            weight=weight,
            reduction="none",
            label_smoothing=self.label_smoothing,
        ).view(batch, copies)
        if weight is None:
            return per_example.mean(dim=0)
        # torch's weighted mean, per copy: over the weights of the copy's own labels.
        return per_example.sum(dim=0) / weight[y].sum(dim=0)


def criterion(
    trial: Trial, class_counts: Sequence[int], total_steps: int, like: torch.Tensor
) -> Criterion:
    """The loss ``trial.loss`` names, for a training set of ``class_counts`` trained for
    ``total_steps`` steps, its tensors on the device and in the dtype of ``like`` (a
    parameter of the model)."""

    def tensor(values: torch.Tensor) -> torch.Tensor:
        return values.to(device=like.device, dtype=like.dtype)

    smoothing = trial.label_smoothing
    if trial.loss == "ce":
        return Criterion(smoothing)
    if trial.loss in ("cb_reweight", "drw"):
        weights = tensor(class_balanced_weights(class_counts))
        start = drw_start(total_steps) if trial.loss == "drw" else 0
        return Criterion(smoothing, class_weight=weights, weighted_from=start)
    if trial.loss == "logit_adjusted":
        return Criterion(smoothing, logit_offset=tensor(LA_TAU * log_prior(class_counts)))
    raise ValueError(f"unknown loss {trial.loss!r}; allowed: {', '.join(LOSSES)}")
