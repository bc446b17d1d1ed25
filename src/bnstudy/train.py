"""One trial: build the data and model, train, evaluate, and return a :class:`TrialResult`.

Airbench-style: the data are tensors on the trial's device, batches are slices of a seeded
permutation (no DataLoader), and the host syncs once per epoch (to check the loss is finite).
Every random draw comes from a generator seeded by one of the trial's streams (``subset``,
``init/<module>``, ``order/<epoch>``, ``eval_order``), so the arms of a pairing block share
data, data order and the initial weights of every layer they have in common.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from bnstudy import metrics as M
from bnstudy.catalogue import METRICS
from bnstudy.data import Dataset, build_dataset
from bnstudy.models import Classifier, build_model
from bnstudy.protocol import Trial

#: Metrics recorded beyond the METRICS catalogue (every result has all of these keys).
EXTRA_METRICS = (
    "mean_max_prob",
    "train_eval_gap",
    "head_dead_frac",
    "head_inactive_frac",
    "feature_dead_frac",
    "feature_inactive_frac",
    "fc_weight_norm_rank_corr",
    "epochs_run",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class TrialResult:
    """The outcome of one trial.

    ``status`` is ``"ok"``, ``"diverged"`` (non-finite training loss), ``"collapsed"`` (one
    class predicted for >= 95% of test inputs; metrics still filled) or ``"failed"`` (an
    exception, recorded by the runner). ``metrics`` holds every key of
    :data:`bnstudy.protocol.METRICS` and :data:`EXTRA_METRICS` (accuracies as fractions,
    NaN where undefined); ``curves`` per-epoch series; ``per_class`` per-class lists.
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
            metrics=_nan_metrics(),
            curves={"train_loss": []},
            per_class={"class_counts": [], "recall": [], "fc_weight_norm": []},
            started_at=started_at,
            ended_at=_now(),
            device=device,
        )


def _nan_metrics() -> dict[str, float]:
    return {name: math.nan for name in (*METRICS, *EXTRA_METRICS)}


def batch_order(trial: Trial, n: int, epoch: int) -> torch.Tensor:
    """The permutation (int64, (n,), on the CPU) of the training set for one epoch.

    Depends only on the trial's pairing block, ``n`` and ``epoch``: every arm sees the same
    batches in the same order.
    """
    generator = torch.Generator().manual_seed(trial.stream_seed(f"order/{epoch}"))
    return torch.randperm(n, generator=generator)


def _optimizer(trial: Trial, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if trial.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=trial.lr, momentum=0.9, nesterov=True, weight_decay=trial.weight_decay
        )
    if trial.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=trial.lr, weight_decay=trial.weight_decay)
    raise ValueError(f"unknown optimizer {trial.optimizer!r}; allowed: sgd, adamw")


def run_trial(trial: Trial, device: str = "cpu") -> TrialResult:
    """Train ``trial``'s model on its dataset and evaluate it on the balanced test set.

    Exceptions propagate (the runner records them as ``"failed"``); a non-finite training
    loss ends training early with status ``"diverged"``.
    """
    started_at, start_s = _now(), time.perf_counter()
    data = build_dataset(trial)
    model = build_model(
        trial.architecture,
        trial.head,
        data.input_shape,
        data.num_classes,
        init_seed=lambda name: trial.stream_seed("init/" + name),
    ).to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    n = len(y_train)
    steps_per_epoch = n // trial.batch_size  # the incomplete last batch is dropped
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {trial.batch_size} exceeds the {n} training images")
    optimizer = _optimizer(trial, model)
    total_steps = steps_per_epoch * trial.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )

    epoch_losses: list[float] = []
    for epoch in range(trial.epochs):
        model.train()
        order = batch_order(trial, n, epoch).to(device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            index = order[step * trial.batch_size : (step + 1) * trial.batch_size]
            loss = F.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        epoch_losses.append(loss_sum.item() / steps_per_epoch)
        if not math.isfinite(epoch_losses[-1]):
            break

    metrics = _nan_metrics()
    metrics["train_loss"] = epoch_losses[-1]
    metrics["epochs_run"] = float(len(epoch_losses))
    per_class = {"class_counts": list(data.class_counts), "recall": []}
    per_class["fc_weight_norm"] = model.head.fc.weight.detach().norm(dim=1).tolist()
    status = "diverged"
    if math.isfinite(epoch_losses[-1]):
        recalls, collapsed = _evaluate(trial, model, data, device, metrics)
        per_class["recall"] = recalls
        status = "collapsed" if collapsed else "ok"
    metrics["wall_s"] = time.perf_counter() - start_s
    return TrialResult(
        status=status,
        error=None,
        metrics=metrics,
        curves={"train_loss": epoch_losses},
        per_class=per_class,
        started_at=started_at,
        ended_at=_now(),
        device=device,
    )


@torch.no_grad()
def _evaluate(
    trial: Trial, model: Classifier, data: Dataset, device: str, out: dict[str, float]
) -> tuple[list[float], bool]:
    """Fill ``out`` with the test-set metrics; return per-class recalls and collapse."""
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    model.eval()
    features = model.body(x_test)
    relus = [m for m in model.head.pre if isinstance(m, nn.ReLU)]
    head_units: list[torch.Tensor] = []
    if relus:  # the hidden ReLU layer feeding the final FC (through a BN in hidden_relu_bn)
        hook = relus[-1].register_forward_hook(lambda m, i, o: head_units.append(o))
    logits = model.head(features)
    if relus:
        hook.remove()
        out["head_dead_frac"] = M.dead_unit_fraction(head_units[0])
        out["head_inactive_frac"] = M.inactive_unit_fraction(head_units[0])
    # Body features are post-ReLU (mlp) or averages of post-ReLU maps (cnn): 0 means inactive.
    out["feature_dead_frac"] = M.dead_unit_fraction(features)
    out["feature_inactive_frac"] = M.inactive_unit_fraction(features)

    probs = torch.softmax(logits.double(), dim=1)
    y_pred = logits.argmax(dim=1)
    recalls = M.per_class_recall(y_test, y_pred, data.num_classes)
    out["test_acc"] = M.accuracy(y_test, y_pred)
    out["balanced_acc"] = M.balanced_accuracy(y_test, y_pred, data.num_classes)
    out["macro_f1"] = M.macro_f1(y_test, y_pred, data.num_classes)
    out["minority_recall"] = M.minority_recall(recalls, data.minority_classes)
    out["worst_class_recall"] = M.worst_class_recall(recalls)
    out["ece"] = M.expected_calibration_error(probs, y_test)
    out["nll"] = M.nll(logits, y_test)
    out["brier"] = M.brier(probs, y_test)
    out["mean_max_prob"] = M.mean_max_prob(probs)
    fc_norms = model.head.fc.weight.norm(dim=1)
    out["fc_weight_norm_rank_corr"] = M.rank_correlation(fc_norms, data.class_counts)
    out["train_eval_gap"] = _train_eval_gap(trial, model, x_test, y_test, y_pred)
    return recalls, M.is_collapsed(y_pred)


@torch.no_grad()
def _train_eval_gap(
    trial: Trial,
    model: Classifier,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    y_pred_eval: torch.Tensor,
) -> float:
    """Test accuracy with BN on batch statistics minus eval-mode accuracy, on the same images.

    Batches of the training batch size are drawn from a seeded shuffle of the test set (a
    class-sorted test set would give single-class batches); the incomplete last batch is
    dropped. A deep copy keeps the model's running statistics untouched.
    """
    n = len(y_test)
    batches = n // trial.batch_size
    if batches == 0:
        return math.nan
    generator = torch.Generator().manual_seed(trial.stream_seed("eval_order"))
    order = torch.randperm(n, generator=generator)[: batches * trial.batch_size].to(x_test.device)
    train_mode = copy.deepcopy(model).train()
    y_pred_train = torch.cat(
        [train_mode(x_test[index]).argmax(dim=1) for index in order.split(trial.batch_size)]
    )
    return M.accuracy(y_test[order], y_pred_train) - M.accuracy(y_test[order], y_pred_eval[order])
