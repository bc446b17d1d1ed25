"""Training options: training length in steps, schedules, warm-up, smoothing, clipping, samplers.

The real training loop is observed through torch's global hooks: an optimizer step pre-hook
sees the learning rate and the (clipped) gradients of every step, a module forward pre-hook
the input batch of every training forward pass.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

from bnstudy.data import build_dataset
from bnstudy.models import Classifier, build_model
from bnstudy.training.loop import (
    CURVE_EVERY_STEPS,
    batch_order,
    lr_factor,
    sample_indices,
    warmup_steps,
)
from bnstudy.training.train import run_trial


@pytest.fixture
def optimizer_steps():
    """Every optimiser step taken while the test runs: its lr and global gradient norm."""
    seen: list[dict[str, float]] = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None])
        )
        seen.append({"lr": optimizer.param_groups[0]["lr"], "grad_norm": norm.item()})

    handle = register_optimizer_step_pre_hook(hook)
    yield seen
    handle.remove()


@pytest.fixture
def training_batches():
    """The input of every forward pass of a Classifier in train mode while the test runs."""
    seen: list[torch.Tensor] = []

    def hook(module, args):
        if isinstance(module, Classifier) and module.training and torch.is_grad_enabled():
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield seen
    handle.remove()


# -- learning-rate schedules -------------------------------------------------------------


def test_cosine_without_warmup_is_the_first_release_formula(make_trial):
    trial, total = make_trial(), 93
    for step in range(total + 1):
        assert lr_factor(trial, step, total) == 0.5 * (1 + math.cos(math.pi * step / total))


def test_step_and_constant_schedules(make_trial):
    step_trial = make_trial(lr_schedule="step")
    factors = [lr_factor(step_trial, k, 100) for k in range(100)]
    assert factors[:50] == [1.0] * 50
    assert factors[50:75] == [pytest.approx(0.1)] * 25
    assert factors[75:] == [pytest.approx(0.01)] * 25
    constant = make_trial(lr_schedule="constant")
    assert [lr_factor(constant, k, 100) for k in range(100)] == [1.0] * 100


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_warmup_rises_linearly_from_zero_then_follows_the_schedule(make_trial, schedule):
    trial, total = make_trial(lr_schedule=schedule, warmup_frac=0.2), 100
    assert warmup_steps(trial, total) == 20
    factors = [lr_factor(trial, k, total) for k in range(total)]
    assert factors[:20] == pytest.approx([k / 20 for k in range(20)])
    assert factors[20] == 1.0  # the schedule starts where warm-up ends
    no_warmup = make_trial(lr_schedule=schedule)
    # after warm-up, the schedule runs over the remaining 80 steps
    assert factors[20:] == pytest.approx([lr_factor(no_warmup, k, 80) for k in range(80)])
    assert warmup_steps(make_trial(warmup_frac=0.001), 100) == 1  # asked for: at least one
    assert warmup_steps(make_trial(warmup_frac=0.99), 10) == 9  # never the whole run


def _ldam_lr(epoch: int, lr: float = 0.1) -> float:
    """Cao et al. 2019's learning rate of 0-based ``epoch``: LDAM-DRW's ``cifar_train.py``,
    ``adjust_learning_rate``, as written there."""
    epoch = epoch + 1
    if epoch <= 5:
        return lr * epoch / 5
    if epoch > 180:
        return lr * 0.0001
    if epoch > 160:
        return lr * 0.01
    return lr


def test_step_schedule_at_epoch_milestones_is_cao_et_als(make_trial):
    # CIFAR-10-LT at ratio 100: 12,406 images, 96 steps of batch 128 per epoch, 200 epochs.
    trial = make_trial(
        epochs=200,
        batch_size=128,
        lr=0.1,
        warmup_frac=0.025,
        lr_schedule="step",
        lr_milestones="160,180",
        lr_decay=0.01,
    )
    per_epoch = 12406 // 128
    total = 200 * per_epoch
    assert warmup_steps(trial, total) == 5 * per_epoch  # 5 epochs' steps, exactly
    factors = [lr_factor(trial, k, total) for k in range(total)]
    warmup, first, second = 5 * per_epoch, 160 * per_epoch, 180 * per_epoch
    assert factors[:warmup] == [k / warmup for k in range(warmup)]  # linear from 0
    assert factors[warmup:first] == [1.0] * (first - warmup)  # lr 0.1
    assert factors[first:second] == [0.01] * (second - first)  # x0.01 from epoch 160
    assert factors[second:] == [0.01**2] * (total - second)  # x0.01 again from epoch 180
    # after warm-up, every step's lr is the paper code's lr of its epoch
    for k in range(warmup, total):
        assert trial.lr * factors[k] == pytest.approx(_ldam_lr(k // per_epoch), rel=1e-12)
    # the same milestones hold whatever the steps per epoch (an epoch-based training length)
    total = 200 * 159  # ratio 10: 20,431 images
    assert lr_factor(trial, 160 * 159 - 1, total) == 1.0
    assert lr_factor(trial, 160 * 159, total) == 0.01


def test_milestones_need_a_training_length_in_epochs(make_trial):
    trial = make_trial(epochs=0, steps=100, lr_schedule="step", lr_milestones="1")
    with pytest.raises(ValueError, match="lr_milestones are epochs"):
        lr_factor(trial, 0, 100)


@pytest.mark.parametrize(
    "settings",
    [
        {},  # cosine over epochs, as in the first release
        {"steps": 30, "epochs": 0, "lr_schedule": "step", "warmup_frac": 0.1},
        {"steps": 30, "epochs": 0, "lr_schedule": "constant", "warmup_frac": 0.3},
        {"lr_schedule": "step", "lr_milestones": "1", "lr_decay": 0.01, "warmup_frac": 0.25},
    ],
)
def test_training_uses_the_scheduled_learning_rate_at_every_step(
    make_trial, optimizer_steps, settings
):
    trial = make_trial(**{"train_per_class": 20, "epochs": 2, **settings})
    result = run_trial(trial)
    total = trial.steps or 2 * (200 // 32)
    assert result.metrics["steps_run"] == total
    lrs = [step["lr"] for step in optimizer_steps]
    assert lrs == pytest.approx([trial.lr * lr_factor(trial, k, total) for k in range(total)])


# -- loss and gradients -------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_is_the_cross_entropy_of_smoothed_targets(make_trial, smoothing):
    """One step: the recorded loss is that of the first batch at the initial weights."""
    trial = make_trial(steps=1, epochs=0, label_smoothing=smoothing)
    result = run_trial(trial)
    data = build_dataset(trial)
    model = build_model(
        trial.architecture,
        trial.head,
        data.input_shape,
        data.num_classes,
        init_seed=lambda name: trial.stream_seed("init/" + name),
    ).train()
    index = sample_indices(trial, data.y_train, trial.batch_size, "order/0")
    with torch.no_grad():
        log_p = F.log_softmax(model(data.x_train[index]), dim=1)
    y = data.y_train[index]
    true_class = -log_p[torch.arange(len(y)), y]
    uniform = -log_p.mean(dim=1)  # the smoothed target spreads smoothing over all classes
    expected = ((1 - smoothing) * true_class + smoothing * uniform).mean().item()
    assert result.curves["train_loss"] == [pytest.approx(expected, rel=1e-5)]
    if smoothing:  # and not the plain cross-entropy of the same batch
        assert result.curves["train_loss"][0] != pytest.approx(true_class.mean().item(), rel=1e-4)


def test_gradient_clipping_bounds_the_global_gradient_norm(make_trial, optimizer_steps):
    run_trial(make_trial(epochs=1, train_per_class=30))
    unclipped = max(step["grad_norm"] for step in optimizer_steps)
    limit = unclipped / 10
    optimizer_steps.clear()
    result = run_trial(make_trial(epochs=1, train_per_class=30, grad_clip=limit))
    assert result.status == "ok"
    norms = [step["grad_norm"] for step in optimizer_steps]
    assert len(norms) == 300 // 32
    assert max(norms) <= limit * (1 + 1e-5)
    assert max(norms) == pytest.approx(limit, rel=1e-4)  # the bound was reached, not idle


# -- training length ----------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["instance", "class_balanced"])
def test_steps_train_exactly_n_steps_whatever_the_set_size(
    make_trial, optimizer_steps, training_batches, sampler
):
    steps = 130  # several passes over the imbalanced set, one and a bit over the balanced one
    for ratio in [1.0, 10.0]:
        optimizer_steps.clear()
        training_batches.clear()
        trial = make_trial(
            imbalance_ratio=ratio, steps=steps, epochs=0, batch_size=8, sampler=sampler
        )
        result = run_trial(trial)
        data = build_dataset(trial)
        per_pass = len(data.y_train) // 8
        assert len(optimizer_steps) == steps and result.metrics["steps_run"] == steps
        assert result.metrics["epochs_run"] == pytest.approx(steps / per_pass)
        # one curve point per CURVE_EVERY_STEPS steps, the last covering the remainder
        assert len(result.curves["train_loss"]) == math.ceil(steps / CURVE_EVERY_STEPS)
        # batch k of the run is batch k % per_pass of pass k // per_pass, from order/<pass>
        passes = [
            sample_indices(trial, data.y_train, per_pass * 8, f"order/{e}")
            for e in range(math.ceil(steps / per_pass))
        ]
        for k, batch in enumerate(training_batches):
            e, b = divmod(k, per_pass)
            assert torch.equal(batch, data.x_train[passes[e][b * 8 : (b + 1) * 8]]), (ratio, k)
        assert len(training_batches) == steps


def test_the_incomplete_last_batch_is_dropped_never_a_batch_of_one(make_trial, training_batches):
    trial = make_trial(train_per_class=30, imbalance_ratio=5.0, batch_size=4, epochs=1)
    assert len(build_dataset(trial).y_train) % 4 == 1  # 149 images: a batch of 1 would be left
    result = run_trial(trial)
    assert result.status == "ok"
    assert {len(batch) for batch in training_batches} == {4}
    assert len(training_batches) == 149 // 4


@pytest.mark.parametrize("head", ["bn", "logit_bn"])
def test_batch_size_8_trains_bn_heads(make_trial, head):
    result = run_trial(make_trial(head=head, batch_size=8, train_per_class=30, epochs=1))
    assert result.status in ("ok", "collapsed")
    assert result.metrics["steps_run"] == 300 // 8
    for name in ["balanced_acc", "train_eval_gap", "balanced_acc_precise", "val_balanced_acc"]:
        assert math.isfinite(result.metrics[name]), name


def test_batch_size_1_is_refused_for_a_head_with_batch_norm(make_trial):
    with pytest.raises(ValueError, match="at least 2 examples per batch"):
        run_trial(make_trial(head="bn", batch_size=1, train_per_class=5, epochs=1))


# -- samplers -----------------------------------------------------------------------------


def test_class_balanced_sampler_draws_classes_uniformly_on_an_imbalanced_set(make_trial):
    trial = make_trial(imbalance_ratio=100.0, train_per_class=50, sampler="class_balanced")
    y = build_dataset(trial).y_train
    present = torch.unique(y)
    index = sample_indices(trial, y, 20_000, "order/0")
    frequencies = torch.bincount(y[index], minlength=10)[present].double() / 20_000
    assert frequencies == pytest.approx([1 / len(present)] * len(present), abs=0.015)
    # instances of a class are drawn uniformly (with replacement): the head class's 50 images
    # are all used, each about equally often
    head_class = int(torch.argmax(torch.bincount(y)))
    members = index[y[index] == head_class]
    assert len(torch.unique(members)) == int((y == head_class).sum())
    # the instance sampler, by contrast, takes every image once per pass
    instance = sample_indices(make_trial(imbalance_ratio=100.0, train_per_class=50), y, 118, "x")
    assert sorted(instance.tolist()) == list(range(len(y)))


def test_samplers_give_every_arm_of_a_block_the_same_batches(make_trial):
    for sampler in ["instance", "class_balanced"]:
        plain = make_trial(head="plain", imbalance_ratio=10.0, sampler=sampler)
        bn = make_trial(head="bn", imbalance_ratio=10.0, sampler=sampler)
        y = build_dataset(plain).y_train
        for epoch in range(2):
            a = sample_indices(plain, y, 96, f"order/{epoch}")
            assert torch.equal(a, sample_indices(bn, y, 96, f"order/{epoch}"))
        assert not torch.equal(a, sample_indices(plain, y, 96, "order/0"))
    # the instance sampler is the first release's permutation
    trial = make_trial()
    y = build_dataset(trial).y_train
    assert torch.equal(sample_indices(trial, y, 992, "order/3"), batch_order(trial, 1000, 3)[:992])


def test_class_balanced_training_runs(make_trial):
    trial = make_trial(imbalance_ratio=10.0, sampler="class_balanced", epochs=2)
    result = run_trial(trial)
    assert result.status in ("ok", "collapsed") and result.metrics["steps_run"] == 2 * (
        len(build_dataset(trial).y_train) // 32
    )


def test_a_trial_without_a_training_length_is_refused(make_trial):
    with pytest.raises(ValueError, match="epochs >= 1 or steps >= 1"):
        run_trial(make_trial(epochs=0, steps=0, train_per_class=5))
