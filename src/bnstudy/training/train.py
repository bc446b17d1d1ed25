"""One trial: build the data and model, train, evaluate, and return a :class:`TrialResult`.

Training is :func:`bnstudy.training.loop.train_copies` with one copy laid out unpacked: the
mean cross-entropy of each batch (label smoothing included), global gradient clipping, and
training ends at a non-finite curve point (status ``"diverged"``). The loop's module says how
long a trial trains, how its batches are drawn, its learning rate and its curve.

Airbench-style: the data are tensors on the trial's device, batches are slices of a seeded
index tensor (no DataLoader), and the host syncs once per curve point (to check the loss is
finite). Every random draw comes from a generator seeded by one of the trial's streams
(``subset``, ``init/<module>``, ``order/<epoch>``, ``precise_bn``, ``eval_order``), so the arms
of a pairing block share data, data order and the initial weights of every layer they have in
common.

**Evaluation** (test set, eval mode, running statistics), and beside it: the validation split
(``val_*``, for model selection), PreciseBN (``balanced_acc_precise``: every BN's running
statistics recomputed as a cumulative average over :data:`PRECISE_BN_BATCHES` training
batches, on a copy), the post-hoc long-tail corrections of the same model
(``balanced_acc_taunorm``, ``balanced_acc_posthoc_la``; see :mod:`bnstudy.training.metrics`),
the fold check (``fold_max_abs_diff``) and the train/eval gap.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from bnstudy.data import Dataset, build_dataset
from bnstudy.models import Classifier, build_model, fold_bn_into_linear, hidden_relu
from bnstudy.spec.trial import Trial
from bnstudy.training import loop, losses, pretrain
from bnstudy.training import metrics as M
from bnstudy.training.context import TrialContext
from bnstudy.training.loop import batch_order as batch_order  # re-exported (tests, benchmarks)
from bnstudy.training.loop import optimisation, sample_indices
from bnstudy.training.trial_result import TrialResult
from bnstudy.training.trial_result import nan_metrics as _nan_metrics
from bnstudy.training.trial_result import now as _now

#: Training batches (of the training batch size) over which PreciseBN recomputes the BN
#: statistics; fewer when one pass has fewer. A fixed number, so every trial's
#: ``balanced_acc_precise`` rests on the same number of batches whatever its training length;
#: with the evaluation it needs, about 0.04 s of a 1 s quick-study CNN trial on an H200 and
#: 0.55 s of 8.5 s on one CPU thread (measured 2026-11).
PRECISE_BN_BATCHES = 50


def _check_batch_size(trial: Trial, n: int, model: Classifier) -> None:
    if n // trial.batch_size == 0:
        raise ValueError(f"batch_size {trial.batch_size} exceeds the {n} training images")
    if trial.batch_size < 2 and any(isinstance(m, nn.BatchNorm1d) for m in model.head.modules()):
        raise ValueError(
            f"batch_size {trial.batch_size} with head {trial.head!r}: BatchNorm in train mode "
            "needs at least 2 examples per batch"
        )


def start_model(trial: Trial, data: Dataset, device: str) -> tuple[Classifier, float]:
    """``trial``'s network as it starts training, on ``device``, and its pre-training stage's
    final loss (NaN without one): built from the trial's ``init/<module>`` streams, then the
    stage's body (cached by the parent, the same for the whole block) replaces the body's
    initial weights; the head stays as initialised. A trial function's ``ctx.model()``
    starts from it too."""
    model = build_model(
        trial.architecture,
        trial.head,
        data.input_shape,
        data.num_classes,
        init_seed=lambda name: trial.stream_seed("init/" + name),
        options=trial.settings(),
        architecture_options=trial.architecture_options,
    ).to(device)
    stage_loss = pretrain.load_body(model, trial, device) if trial.pretrain_stage else math.nan
    return model, stage_loss


def run_trial(
    trial: Trial, device: str = "cpu", data_options: Mapping[str, Any] | None = None
) -> TrialResult:
    """Train ``trial``'s model on its dataset and evaluate it on the balanced test set.

    ``data_options`` are the dataset's options from the protocol (``path`` for local files;
    the defaults when None). Exceptions propagate (the runner records them as ``"failed"``);
    a non-finite training loss ends training early with status ``"diverged"``.
    """
    started_at, start_s = _now(), time.perf_counter()
    data = build_dataset(trial, data_options)
    model, pretrain_loss = start_model(trial, data, device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    _check_batch_size(trial, len(y_train), model)
    setup = optimisation(trial, model, len(y_train))
    if trial.dropout > 0:
        # Dropout draws from torch's global generator: seed it from the trial's own stream so
        # a trial repeats exactly (only then, so that trials without dropout are unchanged).
        torch.manual_seed(trial.stream_seed("dropout"))
    criterion = losses.criterion(
        trial, data.class_counts, setup.total_steps, like=next(model.parameters())
    )
    hooks = loop.Hooks(
        loop.mean_loss(model, x_train, y_train, criterion),
        clip=loop.clip_grad_norm(trial.grad_clip),
    )
    samplers = [loop.sampler(trial, data.y_train)]
    trained = loop.train_copies(
        model, setup, samplers, trial.batch_size, hooks, precision=trial.precision
    )

    metrics = _nan_metrics()
    metrics["pretrain_train_loss"] = pretrain_loss
    fc_norms = model.head.fc.weight.detach().norm(dim=1).tolist()
    evaluated = None
    if trained.stopped_at[0] is None:
        evaluated = _evaluate(trial, model, data, x_train, device, metrics)
    return copy_result(
        data,
        metrics,
        curve=trained.curves[0],
        steps_run=trained.steps_run,
        steps_per_epoch=setup.steps_per_epoch,
        fc_norms=fc_norms,
        evaluated=evaluated,
        times=(started_at, time.perf_counter() - start_s, _now()),
        device=device,
    )


def builtin_trial(trial: Trial, ctx: TrialContext) -> TrialResult:
    """bnstudy's built-in trial as a trial function (:mod:`bnstudy.training.context`): what
    runs when a protocol names no ``trial:``. Its BN diagnostics (PreciseBN, the BN fold
    check, the dead-unit metrics) are its own evaluation's, not assumptions about every
    network. A protocol that names it (``trial: bnstudy.training.train:builtin_trial``) trains
    the same way, unpacked, but not the same trials: ``trial:`` enters every trial's id and
    pairing block (``trial_function``), so its random streams, and so its numbers, differ
    from the same protocol without ``trial:``. A function of your own may call it and add to
    its result."""
    return run_trial(trial, ctx.device, ctx.data_options)


def copy_result(
    data: Dataset,
    metrics: dict[str, float],
    *,
    curve: list[float],
    steps_run: int,
    steps_per_epoch: int,
    fc_norms: list[float],
    evaluated: tuple[list[float], bool] | None,
    times: tuple[dt.datetime, float, dt.datetime],
    device: str,
) -> TrialResult:
    """The result of one trained model, alone or a copy of a pack.

    ``metrics``: every metric, NaN but those measured (its evaluation's, where it was
    evaluated); ``curve`` its training loss points; ``fc_norms`` its FC weight norms per class
    (when it stopped, if it diverged); ``evaluated`` its per-class test recalls and whether it
    collapsed, None for a diverged model (not evaluated); ``times`` (started at, wall seconds,
    ended at). Fills in the training metrics and the FC norms' rank correlation.
    """
    started_at, wall_s, ended_at = times
    per_class = {"class_counts": list(data.class_counts), "recall": [], "fc_weight_norm": fc_norms}
    status = "diverged"
    if evaluated is not None:
        per_class["recall"], collapsed = evaluated
        metrics["fc_weight_norm_rank_corr"] = M.rank_correlation(fc_norms, data.class_counts)
        status = "collapsed" if collapsed else "ok"
    metrics["train_loss"] = curve[-1]
    metrics["steps_run"] = float(steps_run)
    metrics["epochs_run"] = steps_run / steps_per_epoch
    metrics["wall_s"] = wall_s
    return TrialResult(
        status=status,
        error=None,
        metrics=metrics,
        curves={"train_loss": curve},
        per_class=per_class,
        started_at=started_at,
        ended_at=ended_at,
        device=device,
    )


# -- evaluation -------------------------------------------------------------------------


@torch.no_grad()
def _evaluate(
    trial: Trial,
    model: Classifier,
    data: Dataset,
    x_train: torch.Tensor,
    device: str,
    out: dict[str, float],
) -> tuple[list[float], bool]:
    """Fill ``out`` with the evaluation metrics but ``fc_weight_norm_rank_corr`` (the caller
    has the FC norms); return per-class test recalls and collapse.

    The metrics are :func:`bnstudy.training.metrics.evaluation_metrics` of the model as one copy
    (the layout of a seed pack with K = 1).
    """
    with loop.autocast(trial.precision, device):
        outputs = _eval_outputs(trial, model, data, x_train, device)
    outputs = loop.as_float32(outputs)  # the metrics in float32 whatever the precision
    # The copy dimension: (n, ...) -> (n, 1, ...), and the fold check () -> (1,).
    one_copy = {name: t.unsqueeze(1) if t.dim() else t.view(1) for name, t in outputs.items()}
    [(metrics, recalls, collapsed)] = M.per_copy(*M.evaluation_metrics(one_copy, data))
    out.update(metrics)
    return recalls, collapsed


@torch.no_grad()
def _eval_outputs(
    trial: Trial, model: Classifier, data: Dataset, x_train: torch.Tensor, device: str
) -> dict[str, torch.Tensor]:
    """The forward passes of the evaluation, on the device: the outputs that
    :func:`bnstudy.training.metrics.evaluation_metrics` reads, without its copy dimension.

    Each output is computed once and shared by the metrics that read it (the test features
    and logits by the accuracy, calibration, dead-unit and fold metrics). When the body has
    no BN, PreciseBN changes the head alone, so its predictions reuse the test and validation
    features instead of running the body again: the same computation on the same inputs,
    hence the same numbers.
    """
    x_test = data.x_test.to(device)
    model.eval()
    features = model.body(x_test)
    logits, units, fc_input = _head_forward(model.head, features)
    # The final FC's input and weight rows: the tau-normalised classifier's (post hoc).
    outputs = {"features": features, "logits": logits, "fc_input": fc_input}
    outputs["fc_weight"] = model.head.fc.weight.detach()
    if units is not None:
        outputs["units"] = units
    # In this order: with dropout, the train-mode passes (the gap's, then PreciseBN's) draw
    # from torch's global generator, and so does the folded FC's construction in between.
    gap = _train_mode_predictions(trial, model, x_test)
    if gap is not None:
        outputs["gap_order"], outputs["gap_pred"] = gap
    outputs["fold"] = _fold_max_abs_diff(model.head, features, logits)

    x_val, y_val = getattr(data, "x_val", None), getattr(data, "y_val", None)
    inputs = {"test": (x_test, features)}  # split -> (images, eval-mode body features)
    if x_val is not None and y_val is not None and len(y_val) > 0:
        x_val = x_val.to(device)
        inputs["val"] = (x_val, model.body(x_val))
        outputs["val_logits"] = model.head(inputs["val"][1])

    precise = precise_bn(trial, model, x_train, data.y_train)
    if precise is not None:
        whole = any(_tracks_stats(m) for m in model.body.modules())
        for split, (x, body_out) in inputs.items():
            logits_precise = precise(x) if whole else precise.head(body_out)
            outputs[f"precise_{split}"] = logits_precise.argmax(dim=1)
    return outputs


def _head_forward(
    head: nn.Module, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The head's logits, the units that count for the dead-unit metrics (or None), and the
    input of ``head.fc``.

    Those are the hidden ReLU units feeding the final FC: the output of the head's last
    ``nn.ReLU`` where it has one (in ``hidden_relu_bn`` a BN sits between that ReLU and
    ``fc``; its output is no ReLU output). A head without an ``nn.ReLU`` module (a custom head
    may apply ``torch.relu``) has such units when the input of ``head.fc`` is something other
    than the body's features and is non-negative on every input; otherwise (``plain``, a norm
    before ``fc``, ``logit_bn``) there are none, and the metrics stay NaN.
    """
    logits, seen = _observed_head_forward(head, features)
    fc_input = seen["fc_input"]
    if "relu" in seen:
        return logits, seen["relu"], fc_input
    is_features = fc_input.shape == features.shape and fc_input.data_ptr() == features.data_ptr()
    if is_features or bool((fc_input < 0).any()):
        return logits, None, fc_input
    return logits, fc_input, fc_input


def _observed_head_forward(
    head: nn.Module, features: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The head's logits, and what its parts saw on the way: the input of ``head.fc``
    (``fc_input``) and the output of its last ``nn.ReLU`` (``relu``, where it has one and
    that output is a batch of unit vectors, ``(n, units)``: a ReLU on feature maps, in a head
    that convolves before it flattens, has no hidden units in this sense)."""
    seen: dict[str, torch.Tensor] = {}

    def relu_units(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if output.dim() == 2:
            seen["relu"] = output

    hooks = [head.fc.register_forward_pre_hook(lambda m, args: seen.update(fc_input=args[0]))]
    relu = hidden_relu(head)
    if relu is not None:
        hooks.append(relu.register_forward_hook(relu_units))
    try:
        logits = head(features)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, seen


@torch.no_grad()
def _fold_max_abs_diff(
    head: nn.Module, features: torch.Tensor, logits: torch.Tensor
) -> torch.Tensor:
    """Max |logit difference| after folding a BN directly before ``head.fc`` into it; else NaN
    (a float64 scalar tensor).

    Applies to heads whose ``pre`` is an ``nn.Sequential`` ending in a ``BatchNorm1d`` with
    running statistics (``bn``, ``bn_noaffine``, ``bnneck``, ``hidden_relu_bn``). The fold is
    exact in real arithmetic, so this measures float32 rounding (or a fold bug).
    """
    pre = getattr(head, "pre", None)
    bn = pre[-1] if isinstance(pre, nn.Sequential) and len(pre) > 0 else None
    if logits.device.type == "mps":  # no float64 there: the check runs on the CPU
        features, logits = features.cpu(), logits.cpu()
    if not (isinstance(bn, nn.BatchNorm1d) and bn.track_running_stats):
        return torch.tensor(math.nan, dtype=torch.float64, device=logits.device)
    folded = copy.deepcopy(head).to(logits.device)
    bn = folded.pre[-1]
    folded.fc = fold_bn_into_linear(bn, folded.fc)
    folded.pre[-1] = nn.Identity()
    return M.max_abs_difference(folded(features).unsqueeze(1), logits.unsqueeze(1))[0]


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Reset every BN of ``model`` that tracks running statistics and recompute them as the
    cumulative average over ``batches`` (``model`` left in train mode), as ``momentum=None``
    does: here with its factor 1/i set before batch i, since BN would compute it by reading
    ``num_batches_tracked`` back from the device (a host sync per layer and batch on a GPU)."""
    norms = [module for module in model.modules() if _tracks_stats(module)]
    for module in norms:
        module.reset_running_stats()
    model.train()
    for i, x in enumerate(batches, start=1):
        for module in norms:
            module.momentum = 1.0 / i
        model(x)
    for module in norms:
        module.momentum = None


def _tracks_stats(module: nn.Module) -> bool:
    """A BN layer with running statistics (what PreciseBN recomputes)."""
    return isinstance(module, _BATCH_NORMS) and module.track_running_stats


@torch.no_grad()
def precise_bn(
    trial: Trial, model: Classifier, x_train: torch.Tensor, y_train: torch.Tensor
) -> Classifier | None:
    """A copy of ``model`` in eval mode with PreciseBN statistics; None when it has no BN.

    Every BN tracking running statistics is reset and recomputed as a cumulative average
    (:func:`recompute_bn_statistics`) over :data:`PRECISE_BN_BATCHES` training batches of the
    training batch size, drawn by the trial's sampler from the stream ``precise_bn``; by the
    ``instance`` sampler where the trial's is ``class_sorted``, whose single-class batches
    would give within-class statistics (:func:`~bnstudy.training.loop.statistics_sampler`).
    """
    if not any(_tracks_stats(m) for m in model.modules()):
        return None
    precise = copy.deepcopy(model)
    batches = min(PRECISE_BN_BATCHES, len(y_train) // trial.batch_size)
    count, kind = batches * trial.batch_size, loop.statistics_sampler(trial)
    order = sample_indices(trial, y_train, count, "precise_bn", kind)
    batches_x = (x_train[index] for index in order.to(x_train.device).split(trial.batch_size))
    recompute_bn_statistics(precise, batches_x)
    return precise.eval()


@torch.no_grad()
def _train_mode_predictions(
    trial: Trial, model: Classifier, x_test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The train/eval gap's draws: (order, train-mode predictions on ``x_test[order]``).

    BN runs on batch statistics: batches of the training batch size from a seeded shuffle of
    the test set (a class-sorted test set would give single-class batches); the incomplete
    last batch is dropped. None when the test set is smaller than a batch. A deep copy keeps
    the model's running statistics untouched.
    """
    n = len(x_test)
    batches = n // trial.batch_size
    if batches == 0:
        return None
    generator = torch.Generator().manual_seed(trial.stream_seed("eval_order"))
    order = torch.randperm(n, generator=generator)[: batches * trial.batch_size].to(x_test.device)
    train_mode = copy.deepcopy(model).train()
    predictions = [
        train_mode(x_test[index]).argmax(dim=1) for index in order.split(trial.batch_size)
    ]
    return order, torch.cat(predictions)
