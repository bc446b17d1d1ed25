"""Seed packing: trials that differ only in their seed train as one packed model.

Small models leave a GPU mostly idle, and so do the CIFAR ResNets and VGG-11 at their
usual batch sizes; K copies packed into one network (grouped convolutions, batched matmuls,
per-copy BN statistics; see :mod:`bnstudy.models.packed`) cost far less per step than K
models trained one at a time. Packing is an execution detail: :func:`run_pack` returns,
for each trial, the :class:`~bnstudy.training.trial_result.TrialResult` that
:func:`bnstudy.training.train.run_trial` gives it, up to float rounding.

**Each copy on its own random streams.** Copy ``k`` is trial ``k``: its data subset is
``build_dataset(trial_k)``, its initial weights those of ``build_model`` with its
``init/<module>`` streams (the K models are built as ``run_trial`` builds them, then packed),
its batches those of its ``order/<epoch>`` streams and sampler, and its evaluation draws
(``precise_bn``, ``eval_order``) its own. The learning-rate schedule is shared (it depends
only on settings the trials share). Training is the loop every trial uses
(:func:`bnstudy.training.loop.train_copies`), its batches (B, K) and its losses (K,), each
copy's its trial's loss (:mod:`bnstudy.training.losses`; the copies' class counts, hence
class weights and priors, are equal): the loss backpropagated is the sum of the copies'
losses, so each copy's gradient is that of its own loss; gradient clipping is per copy.

**Divergence.** No operation mixes copies, so a copy whose loss turns non-finite cannot
disturb the others. Like ``run_trial``, the pack looks at the losses at each curve point (one
host sync); a copy whose curve point is non-finite stops there, as its unpacked trial would:
its ``diverged`` result is recorded (training loss, steps run, FC weight norms at that
moment), then its parameters, BN statistics and optimizer state are zeroed and its loss is
given weight 0. A zero network computes finite zeros with zero gradients (and zero updates
under SGD and AdamW, weight decay included), so the copy idles without NaN until the pack
ends. When every copy has stopped, the pack stops.

**Evaluation** mirrors ``train._evaluate`` metric for metric, each copy on its own draws:
every forward pass (test, validation, PreciseBN, the train-mode predictions of the train/eval
gap, the BN-fold check) runs packed on the device, and so do the metrics: those of
:func:`bnstudy.training.metrics.evaluation_metrics`, which ``run_trial`` applies to its model as one
copy, here to all copies at once; they come to the CPU in one transfer.

**Cost per copy.** On a GPU a small pack is launch-bound: each operator and each read back to
the host costs host time whatever its size, so the pack keeps what grows with K to what each
copy's random streams need (its data subset, initial weights, and the index draws of each
epoch, of PreciseBN and of the train/eval gap, all on the CPU). The training step, the
evaluation and its metrics are the same operators for any K (the evaluation's forward passes
run in chunks of :data:`EVAL_CHUNK` image-copies), with one read per curve point and one for
the evaluation. ``benchmarks/count_pack_ops.py`` counts them.

**Precision.** In float64 on the CPU a pack equals its trials run alone to about 1e-12
(curves, metrics, every parameter and BN statistic; ``tests/test_packing.py``). In float32 the
packed kernels (grouped convolutions, batched matmuls) round differently from the unpacked
ones, and training amplifies that as it amplifies any rounding: on an H200 the final training
loss and balanced accuracy of a packed trial differed from the same trial alone about as
much as two runs alone differ from each other there (GPU kernels are not deterministic).

**Time.** Every result carries the pack's ``started_at``/``ended_at``; ``wall_s`` is the
pack's wall time divided by K (each trial's share of the device time).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnstudy.data import Dataset, build_dataset
from bnstudy.models import build_model
from bnstudy.models.packed import PackedLinear, copy_view, pack_inputs, pack_models
from bnstudy.spec.trial import Trial
from bnstudy.training import loop, losses
from bnstudy.training import metrics as M
from bnstudy.training.loop import optimisation
from bnstudy.training.packable import PACKABLE_ARCHITECTURES, packable
from bnstudy.training.train import (
    PRECISE_BN_BATCHES,
    TrialResult,
    _check_batch_size,
    _nan_metrics,
    _now,
    _observed_head_forward,
    _tracks_stats,
    copy_result,
    recompute_bn_statistics,
)

#: Image-copies per packed evaluation forward (bounds memory at large K); evaluation in eval
#: mode is per example, so chunking changes nothing but the memory used.
EVAL_CHUNK = 8192


def check_pack(trials: Sequence[Trial]) -> None:
    """Raise ``ValueError`` unless ``trials`` can train as one pack.

    They must be at least one, all :func:`packable`, and equal in every setting but ``seed``.
    """
    if not trials:
        raise ValueError("run_pack: no trials given")
    first = dataclasses.replace(trials[0], seed=0)
    for trial in trials:
        if not packable(trial):
            raise ValueError(
                f"run_pack: architecture {trial.architecture!r} with head {trial.head!r} "
                f"(dropout {trial.dropout:g}) is not packable; packable architectures: "
                f"{', '.join(PACKABLE_ARCHITECTURES)}, without head dropout"
            )
        if dataclasses.replace(trial, seed=0) != first:
            differ = [
                f.name
                for f in dataclasses.fields(trial)
                if f.name != "seed" and getattr(trial, f.name) != getattr(first, f.name)
            ]
            raise ValueError(f"run_pack: trials differ in {', '.join(differ)}, not only seed")


def run_pack(
    trials: Sequence[Trial], device: str = "cpu", data_options: Mapping[str, Any] | None = None
) -> list[TrialResult]:
    """Train ``trials`` (equal but for their seeds) as one packed model; one result each.

    The results are, in order, those of ``run_trial(trial, device, data_options)`` for each
    trial (see the module docstring). Models are built in the default dtype (float32, or
    float64 under ``torch.set_default_dtype``) and the data cast to it. Raises ``ValueError``
    for trials that cannot be packed (see :func:`check_pack`); any exception fails the whole
    pack, and the runner records each of its trials as failed.
    """
    started_at, start_s = _now(), time.perf_counter()
    check_pack(trials)
    trial, copies = trials[0], len(trials)
    datas = [build_dataset(t, data_options) for t in trials]
    models = [
        build_model(
            t.architecture,
            t.head,
            d.input_shape,
            d.num_classes,
            init_seed=lambda name, t=t: t.stream_seed("init/" + name),
            options=t.settings(),
            architecture_options=t.architecture_options,
        )
        for t, d in zip(trials, datas, strict=True)
    ]
    _check_same_splits(datas)
    n = len(datas[0].y_train)
    _check_batch_size(trial, n, models[0])
    model = pack_models(models).to(device)
    dtype = next(model.parameters()).dtype
    # (K, n, *input_shape) and (K, n): copy k's training set is x_train[k].
    x_train = torch.stack([d.x_train for d in datas]).to(device, dtype)
    y_train = torch.stack([d.y_train for d in datas]).to(device)
    setup = optimisation(trial, model, n)
    fc_norms: list[list[float] | None] = [None] * copies  # of each copy that stopped
    # The copies' class counts are equal (_check_same_splits): so is their loss.
    criterion = losses.criterion(trial, datas[0].class_counts, setup.total_steps, like=x_train)
    hooks = _pack_hooks(trial, model, x_train, y_train, setup.optimizer, fc_norms, criterion)
    samplers = [loop.sampler(t, d.y_train) for t, d in zip(trials, datas, strict=True)]
    trained = loop.train_copies(
        model, setup, samplers, trial.batch_size, hooks, packed=True, precision=trial.precision
    )

    live = [s is None for s in trained.stopped_at]
    final_norms = model.head.fc.weight.detach().norm(dim=2).tolist()  # (K, C)
    fc_norms = [final_norms[k] if live[k] else fc_norms[k] for k in range(copies)]
    evaluated = _evaluate_pack(trials, model, datas, x_train) if any(live) else []
    times = (started_at, (time.perf_counter() - start_s) / copies, _now())
    results = []
    for k in range(copies):
        metrics, outcome = _nan_metrics(), None
        if live[k]:
            measured, recalls, collapsed = evaluated[k]
            metrics.update(measured)
            outcome = (recalls, collapsed)
        results.append(
            copy_result(
                datas[0],
                metrics,
                curve=trained.curves[k],
                steps_run=trained.stopped_at[k] or trained.steps_run,
                steps_per_epoch=setup.steps_per_epoch,
                fc_norms=fc_norms[k],
                evaluated=outcome,
                times=times,
                device=device,
            )
        )
    return results


def _check_same_splits(datas: Sequence[Dataset]) -> None:
    """The copies share the evaluation splits and the training-set size; check it."""
    first = datas[0]
    for data in datas[1:]:
        if len(data.y_train) != len(first.y_train) or data.class_counts != first.class_counts:
            raise ValueError("run_pack: the copies' training sets differ in size")
        if not (_equal(data.x_test, first.x_test) and _equal(data.y_test, first.y_test)):
            raise ValueError("run_pack: the copies' test sets differ")
        if not (_equal(data.x_val, first.x_val) and _equal(data.y_val, first.y_val)):
            raise ValueError("run_pack: the copies' validation sets differ")


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``torch.equal``, at no cost for the one shared tensor that ``build_dataset`` gives every
    trial (its cached evaluation splits), whose comparison cost 1 to 3 ms a copy."""
    return a is b or torch.equal(a, b)


# -- training ---------------------------------------------------------------------------


def _pack_hooks(
    trial: Trial,
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    fc_norms: list[list[float] | None],
    criterion: losses.Criterion,
) -> loop.Hooks:
    """The pack's side of the loop: each copy's loss (``criterion``'s) on its own batch,
    summed with weights 0 for a stopped copy; clipping per copy; a stopping copy's FC weight
    norms kept in ``fc_norms`` before it is zeroed (see "Divergence")."""
    copies, device = len(x_train), x_train.device
    every_copy = torch.arange(copies, device=device)
    weight = torch.ones(copies, device=device, dtype=x_train.dtype)  # 0: a stopped copy

    def loss(index: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        # A batch of indices (B, K) gathers x_train[every_copy, index], (B, K, *input_shape).
        logits = model(pack_inputs(x_train[every_copy, index]))
        if logits.dtype == torch.bfloat16:  # the loss in float32 whatever the precision
            logits = logits.float()
        per_copy = criterion.per_copy_mean(logits, y_train[every_copy, index], step)
        return per_copy, (per_copy * weight).sum()

    def stop(k: int) -> None:
        fc_norms[k] = model.head.fc.weight[k].detach().norm(dim=1).tolist()
        _stop_copy(model, optimizer, copies, k)
        weight[k] = 0

    clip = None
    if trial.grad_clip > 0:
        clip = functools.partial(_clip_grad_norm_per_copy, copies=copies, max_norm=trial.grad_clip)
    return loop.Hooks(loss, clip=clip, stop=stop)


@torch.no_grad()
def _clip_grad_norm_per_copy(params: list[torch.Tensor], copies: int, max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_`` applied to each copy's gradients on their own."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.view(copies, -1).norm(dim=1) for g in grads])  # (P, K)
    coef = (max_norm / (norms.norm(dim=0) + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.view(copies, -1).mul_(coef[:, None])


@torch.no_grad()
def _stop_copy(model: nn.Module, optimizer: torch.optim.Optimizer, copies: int, k: int) -> None:
    """Zero copy ``k``'s parameters, buffers and optimizer state (see "Divergence")."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for state in optimizer.state.values() for v in state.values()]
    for tensor in tensors:
        if torch.is_tensor(tensor) and tensor.dim() > 0:  # 0-d: shared counters
            copy_view(tensor, copies, k).zero_()


# -- evaluation -------------------------------------------------------------------------


@torch.no_grad()
def _shared_forward(module: nn.Module, x: torch.Tensor, copies: int) -> torch.Tensor:
    """Every copy of a packed ``module`` on the same inputs x (N, ...) -> (N, K * out)."""
    rows = max(1, EVAL_CHUNK // copies)
    outputs = []
    for chunk in x.split(rows):
        per_copy = chunk.unsqueeze(1).expand(-1, copies, *chunk.shape[1:])
        outputs.append(module(pack_inputs(per_copy)))
    return torch.cat(outputs)


@torch.no_grad()
def _head_forward_pack(
    head: nn.Module, features: torch.Tensor, copies: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """``train._head_forward`` for every copy: logits (N, K, C), units (N, K, u) with
    whether each copy has such units (K,), or None, None, and the input of ``head.fc``
    (N, K, f).

    The units are the output of the head's last ``nn.ReLU`` where it has one; else the input
    of ``head.fc`` where that is not the features and, for that copy, never negative.
    """
    logits, seen = _observed_head_forward(head, features)
    n = len(features)
    logits = logits.view(n, copies, -1)
    raw = seen["fc_input"]
    fc_input = raw.view(n, copies, -1)
    if "relu" in seen:
        units = seen["relu"].view(n, copies, -1)
        return logits, units, torch.ones(copies, dtype=torch.bool, device=units.device), fc_input
    if raw.shape == features.shape and raw.data_ptr() == features.data_ptr():
        return logits, None, None, fc_input
    return logits, fc_input, fc_input.lt(0).any(dim=2).any(dim=0).logical_not(), fc_input


@torch.no_grad()
def _fold_max_abs_diff_pack(
    head: nn.Module, features: torch.Tensor, logits: torch.Tensor, copies: int
) -> torch.Tensor:
    """``train._fold_max_abs_diff`` for every copy: (K,) float64, NaN where it does not apply.

    Each copy's BN is folded into its ``fc`` as :func:`bnstudy.models.fold_bn_into_linear`
    folds it (in float64, cast back), all copies at once.
    """
    pre = getattr(head, "pre", None)
    nan = torch.full((copies,), math.nan, dtype=torch.float64, device=logits.device)
    if not (isinstance(pre, nn.Sequential) and len(pre) > 0):
        return nan
    bn = pre[-1]
    if not (isinstance(bn, nn.BatchNorm1d) and bn.track_running_stats):
        return nan
    mean = bn.running_mean.double().view(copies, -1)
    sigma = torch.sqrt(bn.running_var.double().view(copies, -1) + bn.eps)
    gamma = bn.weight.double().view(copies, -1) if bn.weight is not None else 1.0
    beta = bn.bias.double().view(copies, -1) if bn.bias is not None else 0.0
    weight = head.fc.weight.double()  # (K, C, d)
    bias = head.fc.bias.double() if head.fc.bias is not None else 0.0
    scale = gamma / sigma  # (K, d)
    shift = (weight @ (beta - scale * mean).unsqueeze(2)).squeeze(2)  # (K, C)
    folded = copy.deepcopy(head)
    folded.pre[-1] = nn.Identity()
    folded.fc = PackedLinear(copies, head.fc.in_features, head.fc.out_features).to(weight.device)
    folded.fc.weight.copy_(weight * scale.unsqueeze(1))
    folded.fc.bias.copy_(bias + shift)
    return M.max_abs_difference(folded(features).view(logits.shape), logits)


@torch.no_grad()
def _precise_bn_pack(
    trials: Sequence[Trial], model: nn.Module, x_train: torch.Tensor, datas: Sequence[Dataset]
) -> nn.Module | None:
    """``train.precise_bn`` for every copy at once: a packed copy in eval mode, or None."""
    if not any(_tracks_stats(m) for m in model.modules()):
        return None
    trial = trials[0]
    precise = copy.deepcopy(model)
    batches = min(PRECISE_BN_BATCHES, len(datas[0].y_train) // trial.batch_size)
    # class_sorted copies draw mixed-class batches here, as train.precise_bn does.
    samplers = [
        loop.sampler(t, d.y_train, loop.statistics_sampler(t))
        for t, d in zip(trials, datas, strict=True)
    ]
    count = batches * trial.batch_size
    order = loop.draw(samplers, count, "precise_bn", packed=True).to(x_train.device)
    every_copy = torch.arange(len(trials), device=x_train.device)
    batches_x = (
        pack_inputs(x_train[every_copy, index])
        for index in order.split(trial.batch_size)  # (batch, K) each
    )
    recompute_bn_statistics(precise, batches_x)
    return precise.eval()


@torch.no_grad()
def _train_mode_predictions(
    trials: Sequence[Trial], model: nn.Module, x_test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``train._train_mode_predictions`` for every copy: (order, predictions), each (m, K).

    Column k: copy k's ``eval_order`` shuffle of the test set (whole batches only) and its
    train-mode predictions on those images. None when the test set is smaller than a batch.
    """
    n, batch = len(x_test), trials[0].batch_size
    batches = n // batch
    if batches == 0:
        return None
    orders = []
    for trial in trials:
        generator = torch.Generator().manual_seed(trial.stream_seed("eval_order"))
        orders.append(torch.randperm(n, generator=generator)[: batches * batch])
    order = torch.stack(orders, dim=1).to(x_test.device)
    train_mode = copy.deepcopy(model).train()
    predictions = [
        train_mode(pack_inputs(x_test[index])).view(batch, len(trials), -1).argmax(dim=2)
        for index in order.split(batch)
    ]
    return order, torch.cat(predictions)


@torch.no_grad()
def _evaluate_pack(
    trials: Sequence[Trial], model: nn.Module, datas: Sequence[Dataset], x_train: torch.Tensor
) -> list[tuple[dict[str, float], list[float], bool]]:
    """``train._evaluate`` for every copy (the caller keeps the live ones): its metrics but
    ``fc_weight_norm_rank_corr``, its per-class test recalls and whether it collapsed.

    Forward passes and metrics run on the device for all copies at once, and the metrics come
    to the CPU in one transfer: work per copy here would grow the pack's time with K.
    """
    with loop.autocast(trials[0].precision, x_train.device):
        outputs = _eval_outputs_pack(trials, model, datas, x_train)
    outputs = loop.as_float32(outputs)  # the metrics in float32 whatever the precision
    return M.per_copy(*M.evaluation_metrics(outputs, datas[0]))


@torch.no_grad()
def _eval_outputs_pack(
    trials: Sequence[Trial], model: nn.Module, datas: Sequence[Dataset], x_train: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``train._eval_outputs`` for every copy, each on its own draws: what
    :func:`bnstudy.training.metrics.evaluation_metrics` reads, on the device, the copies along
    dimension 1 ((N, K, ...); ``fold`` and ``has_units``: (K,))."""
    copies, data = len(trials), datas[0]
    device, dtype = x_train.device, x_train.dtype
    x_test = data.x_test.to(device, dtype)
    model.eval()
    features = _shared_forward(model.body, x_test, copies)  # (N, K * d)
    logits, units, has_units, fc_input = _head_forward_pack(model.head, features, copies)
    outputs = {
        "features": features.view(len(x_test), copies, -1),
        "logits": logits,
        "fc_input": fc_input,
        "fc_weight": model.head.fc.weight.detach().transpose(0, 1),  # (K, C, f) -> (C, K, f)
        "fold": _fold_max_abs_diff_pack(model.head, features, logits, copies),
    }
    if units is not None:
        outputs["units"], outputs["has_units"] = units, has_units
    x_val, y_val = getattr(data, "x_val", None), getattr(data, "y_val", None)
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        x_val = x_val.to(device, dtype)
        outputs["val_logits"] = _shared_forward(model, x_val, copies).view(len(x_val), copies, -1)
    precise = _precise_bn_pack(trials, model, x_train, datas)
    if precise is not None:
        precise_test = _shared_forward(precise, x_test, copies).view(len(x_test), copies, -1)
        outputs["precise_test"] = precise_test.argmax(dim=2)
        if has_val:
            precise_val = _shared_forward(precise, x_val, copies).view(len(x_val), copies, -1)
            outputs["precise_val"] = precise_val.argmax(dim=2)
    gap = _train_mode_predictions(trials, model, x_test)
    if gap is not None:
        outputs["gap_order"], outputs["gap_pred"] = gap
    return outputs
