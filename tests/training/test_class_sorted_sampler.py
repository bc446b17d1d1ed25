"""The ``class_sorted`` sampler: batches filled from one class (two at a class boundary), every
index at most once per pass, drawn from the trial's ``order/<epoch>`` stream like the other
samplers. That a pack draws the same batches as its trials alone: ``tests/test_packing.py``.
"""

from __future__ import annotations

import pytest
import torch

from bnstudy.training import loop, train
from bnstudy.training.loop import sample_indices
from bnstudy.training.losses import Criterion

BATCH = 4
#: 40 images of five classes, of sizes that put class boundaries inside batches; each class
#: holds at least BATCH - 1 images, so no batch can hold a whole class between two others.
SIZES = [7, 5, 13, 3, 12]


def labels(sizes=SIZES) -> torch.Tensor:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


def draw_pass(trial, y: torch.Tensor, epoch: int = 0) -> torch.Tensor:
    count = len(y) // trial.batch_size * trial.batch_size
    return sample_indices(trial, y, count, f"order/{epoch}")


def test_every_batch_holds_at_most_two_classes_and_every_index_once(make_trial):
    trial, y = make_trial(sampler="class_sorted", batch_size=BATCH), labels()
    for epoch in range(5):
        order = draw_pass(trial, y, epoch)
        assert sorted(order.tolist()) == list(range(len(y)))  # 40 = 10 batches: each once
        for batch in order.view(-1, BATCH):
            assert len(set(y[batch].tolist())) <= 2


def test_an_incomplete_last_batch_is_dropped_and_no_index_repeats(make_trial):
    trial, y = make_trial(sampler="class_sorted", batch_size=BATCH), labels([7, 5, 13, 3, 13])
    order = draw_pass(trial, y)
    assert len(order) == 40 and len(set(order.tolist())) == 40  # 41 images: one left out


def test_classes_between_a_batchs_first_and_last_lie_wholly_inside_it(make_trial):
    """With classes smaller than a batch a batch can hold more than two: then every class but
    its first and last has all its images of the pass inside that batch (the classes come in
    one run each, in the pass's class order)."""
    trial = make_trial(sampler="class_sorted", batch_size=8)
    y = labels([20, 1, 2, 1, 12, 3, 9])
    order = draw_pass(trial, y)
    drawn = torch.bincount(y[order], minlength=7)
    for batch in order.view(-1, 8):
        classes = y[batch].tolist()
        inner = set(classes) - {classes[0], classes[-1]}
        for c in inner:
            assert classes.count(c) == drawn[c]
        runs = [c for i, c in enumerate(classes) if i == 0 or classes[i - 1] != c]
        assert len(runs) == len(set(runs))  # each class one run: grouped, not interleaved


def test_the_batches_order_and_the_class_order_are_shuffled(make_trial):
    trial, y = make_trial(sampler="class_sorted", batch_size=BATCH), labels()
    classes = y[draw_pass(trial, y)].tolist()
    runs = [c for i, c in enumerate(classes) if i == 0 or classes[i - 1] != c]
    assert len(runs) > len(SIZES)  # shuffled batches split classes into several runs
    first_batches = {tuple(y[draw_pass(trial, y, e)[:BATCH]].tolist()) for e in range(8)}
    assert len(first_batches) > 1  # each pass its own order


def test_draws_are_deterministic_per_stream_and_shared_by_the_arms(make_trial):
    y = labels()
    plain = make_trial(sampler="class_sorted", batch_size=BATCH, head="plain")
    bn = make_trial(sampler="class_sorted", batch_size=BATCH, head="bn")
    assert torch.equal(draw_pass(plain, y), draw_pass(plain, y))
    assert torch.equal(draw_pass(plain, y), draw_pass(bn, y))
    assert not torch.equal(draw_pass(plain, y, 0), draw_pass(plain, y, 1))
    other_seed = make_trial(sampler="class_sorted", batch_size=BATCH, seed=1)
    assert not torch.equal(draw_pass(plain, y), draw_pass(other_seed, y))


def test_a_shorter_draw_is_whole_batches_of_the_same_pass(make_trial):
    """A draw of fewer batches than a pass: the first of the same shuffled batches."""
    trial, y = make_trial(sampler="class_sorted", batch_size=BATCH), labels()
    assert torch.equal(sample_indices(trial, y, 12, "order/0"), draw_pass(trial, y)[:12])
    for count in (10, 44):
        with pytest.raises(ValueError, match="whole batches of 4 from 40 images"):
            sample_indices(trial, y, count, "order/0")


def test_a_class_sorted_trial_trains_on_single_class_batches(make_trial, monkeypatch):
    """End to end: the labels of every batch the model is trained on (10 classes of 100
    images, batches of 32) hold at most two classes; the instance sampler's hold many."""
    batches: list[int] = []
    mean = Criterion.mean

    def spy(self, logits, y, step):
        batches.append(len(set(y.tolist())))
        return mean(self, logits, y, step)

    monkeypatch.setattr(Criterion, "mean", spy)
    result = train.run_trial(make_trial(sampler="class_sorted", head="bn", epochs=2))
    assert result.status in ("ok", "collapsed") and len(batches) == 2 * (1000 // 32)
    assert max(batches) <= 2 and min(batches) == 1
    batches.clear()
    train.run_trial(make_trial(head="bn", epochs=1))
    assert min(batches) > 2


def test_precise_bn_averages_mixed_class_batches_under_class_sorted(make_trial, monkeypatch):
    """Single-class batches would give PreciseBN within-class statistics: it draws its
    batches with the ``instance`` sampler from its own stream instead (a pack does the same:
    tests/test_packing.py compares it with its trials alone under class_sorted)."""
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(train, "recompute_bn_statistics", lambda model, xs: seen.extend(xs))
    y = labels()
    x = torch.arange(len(y), dtype=torch.float64)[:, None]  # each row its own index
    trial = make_trial(sampler="class_sorted", batch_size=BATCH, head="bn")
    model = train.build_model("mlp", "bn", (1,), 5, init_seed=lambda name: 0)
    train.precise_bn(trial, model, x, y)
    drawn = torch.cat(seen).view(-1).long()
    assert len(drawn) == len(y) // BATCH * BATCH
    assert max(len(set(y[batch].tolist())) for batch in drawn.view(-1, BATCH)) > 2
    assert torch.equal(drawn, sample_indices(trial, y, len(drawn), "precise_bn", "instance"))
    # the other samplers draw PreciseBN's batches as they train
    assert loop.statistics_sampler(make_trial(sampler="class_balanced")) == "class_balanced"
    assert loop.statistics_sampler(make_trial()) == "instance"
