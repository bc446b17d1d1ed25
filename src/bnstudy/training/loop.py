"""The one training loop, for a trial alone, a seed pack of K copies and a pre-training stage.

:func:`train_copies` steps a model (one network, or K copies packed into one; see
:mod:`bnstudy.models.packed`) through its :class:`Optimisation`: each step a batch of indices
per copy, a forward and backward pass, clipping, an optimiser and a schedule step, and every
curve point one read of the copies' mean losses. What differs between its three callers it
takes as :class:`Hooks`: how the batch's loss is formed per copy (``train.run_trial``: the
trial's loss, by default the mean cross-entropy; ``packing.run_pack``: each copy's, summed
with weights), how gradients are clipped (globally, or per copy), what happens to a copy
whose curve turns non-finite (a trial stops; a pack zeroes that copy and trains on) and what
each step adds (``pretrain.train_body``: a window of losses and a check at every step). A
trial is a pack of one copy laid out unpacked; pre-training is a trial with another head and
dataset.

Airbench-style: the data are tensors on the device, batches are slices of a seeded index
tensor (no DataLoader), and the host syncs once per curve point. Every random draw comes from
a generator seeded by one of the trial's streams (``order/<epoch>`` here), so the arms of a
pairing block see the same batches.

**Training length.** ``epochs: E`` trains ``E`` passes of ``n // batch_size`` steps (the
incomplete last batch of a pass is dropped, so no batch is ever smaller than ``batch_size``;
in particular never a batch of 1, on which BN in train mode fails). ``steps: N`` trains exactly
``N`` optimiser steps whatever ``n``: pass ``e`` is drawn from the stream ``order/<e>`` as with
epochs and the batches run on across pass boundaries, the last pass cut short.

**Curves.** ``train_loss`` is the mean training loss (label smoothing included) over
consecutive steps: one point per pass with ``epochs``, one point per :data:`CURVE_EVERY_STEPS`
steps with ``steps`` (the last point covering the remainder), so curves of trials with the
same ``steps`` line up whatever their training-set size. ``steps_run`` and ``epochs_run``
(``steps_run`` over the steps of one pass) say how far training got.

**Samplers.** ``instance``: each pass is a seeded permutation of the training set.
``class_balanced``: each of the pass's ``n // batch_size * batch_size`` draws picks a class
uniformly among the classes present, then an instance of that class uniformly, with
replacement, from the same ``order/<epoch>`` generator. ``class_sorted`` (the setting of a
network that "would not learn" with BN: batches filled from few classes): the training
indices grouped by class (the order within a class random, the order of the classes random),
cut into consecutive batches of ``batch_size`` (the incomplete last one dropped) and the
batches' order shuffled, all from the same generator; so a batch holds one class, two where
a class boundary falls inside it, and every index at most once per pass.

**Loss.** The batch's loss is the trial's :class:`~bnstudy.training.losses.Criterion` (the
``loss`` factor: cross-entropy or a long-tail remedy, label smoothing included), evaluated at
the optimiser step (deferred re-weighting switches its class weights at 80% of the steps).

**Learning rate.** ``lr`` times :func:`lr_factor`: a linear warm-up from 0 over
``warmup_frac`` of the steps, then ``cosine`` (to 0), ``step`` (x ``lr_decay`` at each of the
epochs ``lr_milestones``; without milestones x0.1 at 50% and 75% of the steps after warm-up)
or ``constant``.

**Precision.** ``precision: bf16`` runs the forward passes (each step's, and the evaluation's)
under ``torch.autocast`` in bfloat16 on the trial's device type (:func:`autocast`); the
losses are computed in float32 from float32 logits, the backward pass and the optimiser step
outside autocast on the float32 parameters, and the evaluation's outputs are cast to float32
before any metric (:func:`as_float32`). ``fp32`` (the default) runs as it always did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from bnstudy.spec.trial import Trial
from bnstudy.training.losses import Criterion
from bnstudy.training.optimizers import build_optimizer

#: With ``steps``, one ``train_loss`` curve point (and one host sync) per this many steps.
CURVE_EVERY_STEPS = 100

#: A copy's batch-index source: ``(count, stream) ->`` ``count`` training-set indices (int64,
#: on the CPU) drawn from the random stream ``stream`` (see :func:`sampler`).
Sampler = Callable[[int, str], torch.Tensor]
#: The values of the ``sampler`` setting (``spec.factors.Factors.sampler`` lists the same).
SAMPLERS = ("instance", "class_balanced", "class_sorted")


# -- batches ----------------------------------------------------------------------------


def batch_order(trial: Trial, n: int, epoch: int) -> torch.Tensor:
    """The permutation (int64, (n,), on the CPU) of the training set for one epoch.

    Depends only on the trial's pairing block, ``n`` and ``epoch``: every arm sees the same
    batches in the same order.
    """
    generator = torch.Generator().manual_seed(trial.stream_seed(f"order/{epoch}"))
    return torch.randperm(n, generator=generator)


def sample_indices(
    trial: Trial, y_train: torch.Tensor, count: int, stream: str, kind: str | None = None
) -> torch.Tensor:
    """``count`` training-set indices (int64, on the CPU) drawn by the trial's sampler
    (``kind`` when given: :func:`statistics_sampler`).

    ``instance``: the first ``count`` of a permutation (``count <= n``); ``class_balanced``:
    a class uniformly among those present in ``y_train``, then one of its instances uniformly,
    with replacement; ``class_sorted``: the first ``count`` (whole batches of
    ``trial.batch_size``) of the class-sorted batches in shuffled order (see the module
    docstring). The generator is seeded by ``stream`` alone (no head in it), so every arm of
    a pairing block draws the same indices.
    """
    kind = kind or trial.sampler
    generator = torch.Generator().manual_seed(trial.stream_seed(stream))
    if kind == "instance":
        return torch.randperm(len(y_train), generator=generator)[:count]
    if kind == "class_balanced":
        return _class_balanced_draw(y_train.cpu(), count, generator)
    if kind == "class_sorted":
        return _class_sorted_draw(y_train.cpu(), count, trial.batch_size, generator)
    raise ValueError(f"unknown sampler {kind!r}; allowed: {', '.join(SAMPLERS)}")


def statistics_sampler(trial: Trial) -> str:
    """The sampler that draws the batches PreciseBN averages BN statistics over: the trial's,
    but ``instance`` for ``class_sorted``. PreciseBN estimates the statistics of the training
    set's features, which eval mode applies to every input: a ``class_sorted`` batch holds one
    class (two at a boundary), so its mean and variance are that class's, and their average
    over a few dozen such batches misses the spread between the classes and weights the
    classes by which ones were drawn; ``balanced_acc_precise`` would read that bias, not the
    network. ``class_balanced`` keeps its own: its batches mix the classes."""
    return "instance" if trial.sampler == "class_sorted" else trial.sampler


def _class_balanced_draw(
    y_train: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    by_class = torch.argsort(y_train, stable=True)
    classes, sizes = torch.unique(y_train, return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    pick = torch.randint(len(classes), (count,), generator=generator)
    offset = (torch.rand(count, generator=generator, dtype=torch.float64) * sizes[pick]).long()
    offset = torch.minimum(offset, sizes[pick] - 1)  # rand < 1, but never trust the rounding
    return by_class[starts[pick] + offset]


def _class_sorted_draw(
    y_train: torch.Tensor, count: int, batch_size: int, generator: torch.Generator
) -> torch.Tensor:
    batches = len(y_train) // batch_size
    if count % batch_size or count > batches * batch_size:
        raise ValueError(
            f"class_sorted draws whole batches of {batch_size} from {len(y_train)} images: "
            f"{count} indices are not"
        )
    shuffled = torch.randperm(len(y_train), generator=generator)  # the order within a class
    classes = torch.unique(y_train)  # sorted
    class_order = torch.randperm(len(classes), generator=generator)
    place = torch.empty_like(class_order)
    place[class_order] = torch.arange(len(classes))  # class index -> its place in the pass
    key = place[torch.searchsorted(classes, y_train[shuffled])]
    grouped = shuffled[torch.argsort(key, stable=True)]  # stable: keeps the random order within
    batch_order = torch.randperm(batches, generator=generator)
    in_batches = grouped[: batches * batch_size].view(batches, batch_size)
    return in_batches[batch_order].reshape(-1)[:count]


def sampler(trial: Trial, y_train: torch.Tensor, kind: str | None = None) -> Sampler:
    """The batch-index source of a copy: ``trial``'s sampler (or ``kind``) over its training
    labels."""
    return functools.partial(sample_indices, trial, y_train, kind=kind)


def draw(samplers: Sequence[Sampler], count: int, stream: str, packed: bool) -> torch.Tensor:
    """``count`` indices per copy from ``stream`` (on the CPU): (count,) for one model laid out
    unpacked (one sampler), (count, K) for a pack (column k: copy k's)."""
    indices = [sample(count, stream) for sample in samplers]
    return torch.stack(indices, dim=1) if packed else indices[0]


# -- precision --------------------------------------------------------------------------

#: The values of the ``precision`` setting, and the autocast dtype of each (None: none).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """The context the forward passes of a trial at ``precision`` run in on ``device``:
    ``torch.autocast`` to bfloat16 on the device's type for ``bf16``, nothing for ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def as_float32(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``outputs`` with every bfloat16 tensor cast to float32 (the others as they are)."""
    return {name: t.float() if t.dtype == torch.bfloat16 else t for name, t in outputs.items()}


# -- optimisation -----------------------------------------------------------------------


def _optimizer(trial: Trial, model: nn.Module) -> torch.optim.Optimizer:
    """The trial's optimiser by name (:mod:`bnstudy.training.optimizers`: ``sgd``, ``adamw``
    or one a plugin registered) over the parameters that train."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(trial.optimizer, params, lr=trial.lr, weight_decay=trial.weight_decay)


def warmup_steps(trial: Trial, total_steps: int) -> int:
    """Steps of linear warm-up: ``warmup_frac`` of ``total_steps``, at least 1 when asked for."""
    if trial.warmup_frac <= 0:
        return 0
    return min(max(1, round(trial.warmup_frac * total_steps)), total_steps - 1)


def lr_factor(trial: Trial, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of ``trial.lr``.

    Warm-up: ``step / W`` for the first ``W`` = :func:`warmup_steps` steps. After it, with
    ``p = (step - W) / (total_steps - W)``: ``cosine`` ``(1 + cos(pi p)) / 2``; ``constant`` 1;
    ``step`` ``lr_decay ** k``, ``k`` the milestones reached: with ``lr_milestones`` the epochs
    ``m`` with ``step >= m * S`` (``S = total_steps // epochs``, the steps of one pass: the
    step's 0-based epoch is at least ``m``), else ``p >= 0.5`` and ``p >= 0.75``.

    Cao et al. 2019 (LDAM-DRW, ``cifar_train.py``, ``adjust_learning_rate``) set ``lr * 0.01``
    after epoch 160 and ``lr * 0.0001`` after epoch 180 (1-based epochs ``> 160``, ``> 180``):
    ``lr_milestones: [160, 180]``, ``lr_decay: 0.01`` here. Their warm-up is per epoch
    (``lr * e / 5`` in 1-based epoch ``e <= 5``); this one rises per step.
    """
    warmup = warmup_steps(trial, total_steps)
    if step < warmup:
        return step / warmup
    if trial.lr_schedule == "cosine":
        # Written as pi * k / T (not pi * (k / T)): the float rounding of the first release.
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total_steps - warmup)))
    if trial.lr_schedule == "step":
        if trial.lr_milestones:
            steps_per_epoch = total_steps // trial.epochs if trial.epochs else 0
            if steps_per_epoch < 1:
                raise ValueError("lr_milestones are epochs: the trial needs epochs >= 1")
            epoch = step // steps_per_epoch
            reached = sum(epoch >= int(m) for m in trial.lr_milestones.split(","))
        else:
            progress = (step - warmup) / (total_steps - warmup)
            reached = (progress >= 0.5) + (progress >= 0.75)
        return trial.lr_decay**reached
    if trial.lr_schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {trial.lr_schedule!r}; allowed: cosine, step, constant")


class Optimisation(NamedTuple):
    """How long a trial trains, how often its curve is logged, and what steps it: the same
    for a trial alone, each copy of a pack and a pre-training stage."""

    steps_per_epoch: int
    total_steps: int
    curve_every: int
    optimizer: torch.optim.Optimizer
    params: list[torch.Tensor]
    schedule: torch.optim.lr_scheduler.LambdaLR


def optimisation(trial: Trial, model: nn.Module, n: int) -> Optimisation:
    """The training length (``steps``, else ``epochs`` of ``n`` images in whole batches: the
    incomplete last batch is dropped), the optimizer and its learning-rate schedule."""
    steps_per_epoch = n // trial.batch_size
    total_steps = trial.steps or steps_per_epoch * trial.epochs
    if total_steps < 1:
        raise ValueError("a trial needs epochs >= 1 or steps >= 1; got neither")
    optimizer = _optimizer(trial, model)
    return Optimisation(
        steps_per_epoch,
        total_steps,
        CURVE_EVERY_STEPS if trial.steps else steps_per_epoch,
        optimizer,
        [p for group in optimizer.param_groups for p in group["params"]],
        torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(trial, step, total_steps)
        ),
    )


# -- the loop ---------------------------------------------------------------------------

#: A batch's indices ((B,), or (B, K) for a pack) and the (0-based) optimiser step -> (each
#: copy's mean loss: () or (K,), the scalar to backpropagate).
LossFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class Hooks:
    """What a caller adds to the loop, step by step (see the module docstring)."""

    #: The batch's losses from its indices and the optimiser step.
    loss: LossFn
    #: Clips the gradients of the optimised parameters in place; None: no clipping.
    clip: Callable[[list[torch.Tensor]], None] | None = None
    #: ``stop(k)``: copy k's curve point came out non-finite; it stops there (the loop ends
    #: once every copy has stopped).
    stop: Callable[[int], None] | None = None
    #: ``step(step, loss)`` after each optimiser step (0-based ``step``, the loss of ``loss``).
    step: Callable[[int, torch.Tensor], None] | None = None


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: Criterion) -> LossFn:
    """The loss of one model laid out unpacked: ``criterion``'s mean on the batch (in float32
    whatever the precision of the forward pass)."""

    def loss(index: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x[index])
        if logits.dtype == torch.bfloat16:
            logits = logits.float()
        mean = criterion.mean(logits, y[index], step)
        return mean, mean

    return loss


def clip_grad_norm(max_norm: float) -> Callable[[list[torch.Tensor]], None] | None:
    """``nn.utils.clip_grad_norm_`` at ``max_norm``; None (no clipping) unless positive."""
    if max_norm <= 0:
        return None
    return lambda params: nn.utils.clip_grad_norm_(params, max_norm)


class Trained(NamedTuple):
    """What the loop gives back: each copy's curve (its ``train_loss`` points), the steps it
    ran when it stopped (None: it trained to the end), and the steps the loop ran."""

    curves: list[list[float]]
    stopped_at: list[int | None]
    steps_run: int


def train_copies(
    model: nn.Module,
    setup: Optimisation,
    samplers: Sequence[Sampler],
    batch_size: int,
    hooks: Hooks,
    packed: bool = False,
    precision: str = "fp32",
) -> Trained:
    """Train ``model``, one copy per sampler, for ``setup.total_steps`` steps or until every
    copy has stopped; ``packed``: the copies are packed (indices (B, K), losses (K,)), else
    ``model`` is one network (one sampler; indices (B,), a 0-d loss). ``hooks.loss`` runs
    under :func:`autocast` at ``precision``; the backward pass and the step outside it.

    Pass ``e``'s batches are :func:`draw` from the stream ``order/<e>``, moved to the device
    of ``model``'s parameters; the curves' loss sums stay there, read once per curve point.
    """
    copies, param = len(samplers), next(model.parameters())
    curves: list[list[float]] = [[] for _ in range(copies)]
    stopped_at: list[int | None] = [None] * copies
    shape = (copies,) if packed else ()
    loss_sum = torch.zeros(shape, device=param.device, dtype=param.dtype)
    steps_run = logged = 0
    forward = functools.partial(autocast, precision, param.device)
    model.train()
    for step in range(setup.total_steps):
        epoch, within = divmod(step, setup.steps_per_epoch)
        if within == 0:
            count = setup.steps_per_epoch * batch_size
            order = draw(samplers, count, f"order/{epoch}", packed).to(param.device)
        with forward():
            loss, objective = hooks.loss(
                order[within * batch_size : (within + 1) * batch_size], step
            )
        setup.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if hooks.clip is not None:
            hooks.clip(setup.params)
        setup.optimizer.step()
        setup.schedule.step()
        loss_sum += loss.detach()
        steps_run = step + 1
        if hooks.step is not None:
            hooks.step(step, loss)
        if steps_run % setup.curve_every == 0 or steps_run == setup.total_steps:
            sums = loss_sum.tolist()  # the one host sync
            for k, total in enumerate(sums if packed else [sums]):
                if stopped_at[k] is None:
                    curves[k].append(total / (steps_run - logged))
                    if not math.isfinite(curves[k][-1]):
                        stopped_at[k] = steps_run
                        if hooks.stop is not None:
                            hooks.stop(k)
            loss_sum, logged = torch.zeros_like(loss_sum), steps_run
            if all(s is not None for s in stopped_at):
                break
    return Trained(curves, stopped_at, steps_run)
