"""bnstudy.training.loop: the one training loop, seen through its hooks.

What it gives a trial, a pack and a pre-training stage is checked end to end elsewhere
(``test_train*.py``, ``test_packing.py``, ``test_pretrain.py``); here the loop's own contract
on a two-parameter model: curve points, steps, the per-step hook, stopping copies.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnstudy.training import loop


def _setup(make_trial, steps: int, n: int = 64, batch_size: int = 8):
    trial, other = (
        make_trial(seed=seed, epochs=0, steps=steps, batch_size=batch_size, lr=0.01)
        for seed in (0, 1)
    )
    model = nn.Linear(2, 1, bias=False)  # one weight per copy: the model "packs" two copies
    labels = torch.zeros(n, dtype=torch.long)
    samplers = [loop.sampler(trial, labels), loop.sampler(other, labels)]
    return trial, model, loop.optimisation(trial, model, n), samplers


def test_curve_points_average_the_steps_between_them(make_trial, monkeypatch):
    monkeypatch.setattr(loop, "CURVE_EVERY_STEPS", 4)
    trial, model, setup, samplers = _setup(make_trial, steps=10)
    seen: list[tuple[int, torch.Tensor]] = []

    def loss(index, step):
        assert index.shape == (trial.batch_size, 2)  # a batch of indices per copy
        per_copy = torch.stack([index[:, 0].double().mean(), -index[:, 1].double().mean()])
        per_copy = per_copy + 0 * model.weight.sum()
        return per_copy, per_copy.sum()

    trained = loop.train_copies(
        model,
        setup,
        samplers,
        trial.batch_size,
        loop.Hooks(loss, step=lambda step, value: seen.append((step, value.detach()))),
        packed=True,
    )
    assert trained.steps_run == 10 and trained.stopped_at == [None, None]
    assert [step for step, _ in seen] == list(range(10))
    for k, sign in enumerate((1, -1)):
        values = [sign * float(value[k]) for _, value in seen]
        expected = [sum(values[a:b]) / (b - a) for a, b in ((0, 4), (4, 8), (8, 10))]
        assert trained.curves[k] == pytest.approx([sign * v for v in expected])


def test_a_copy_stops_at_its_first_non_finite_point_and_the_loop_when_all_have(
    make_trial, monkeypatch
):
    monkeypatch.setattr(loop, "CURVE_EVERY_STEPS", 3)
    trial, model, setup, samplers = _setup(make_trial, steps=30)
    calls = {"steps": 0}
    stops: list[tuple[int, int]] = []

    def loss(index, step):
        calls["steps"] += 1
        bad = [calls["steps"] >= 5, calls["steps"] >= 11]  # copy 0 from step 5, copy 1 from 11
        per_copy = torch.tensor([math.nan if b else 1.0 for b in bad], dtype=torch.float64)
        per_copy = per_copy + 0 * model.weight.sum()
        return per_copy, per_copy.nan_to_num().sum()

    trained = loop.train_copies(
        model,
        setup,
        samplers,
        trial.batch_size,
        loop.Hooks(loss, stop=lambda k: stops.append((k, calls["steps"]))),
        packed=True,
    )
    assert stops == [(0, 6), (1, 12)]  # at the curve point after the first NaN
    assert trained.stopped_at == [6, 12] and trained.steps_run == 12
    assert trained.curves[0][0] == 1.0 and math.isnan(trained.curves[0][-1])
    assert len(trained.curves[0]) == 2 and len(trained.curves[1]) == 4


def test_one_model_unpacked_draws_one_index_per_row(make_trial):
    trial, model, setup, samplers = _setup(make_trial, steps=3)
    batches: list[torch.Tensor] = []

    def loss(index, step):
        batches.append(index)
        steps.append(step)
        value = model.weight.sum() * 0 + 1.0
        return value, value

    steps: list[int] = []
    trained = loop.train_copies(model, setup, samplers[:1], trial.batch_size, loop.Hooks(loss))
    assert trained.curves == [[1.0]] and trained.stopped_at == [None]
    assert steps == [0, 1, 2]  # the loss sees the 0-based optimiser step (deferred weights)
    order = loop.sample_indices(trial, torch.zeros(64, dtype=torch.long), 64, "order/0")
    assert torch.equal(torch.cat(batches), order[:24])
