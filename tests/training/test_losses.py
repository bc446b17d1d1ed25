"""bnstudy.training.losses: the ``loss`` factor against hand computations on a 3-class toy
batch (class weights, the logit adjustment, label smoothing), the step at which deferred
re-weighting switches, and trial ids at the default ``ce``.

The hand computations use ``math`` only (no torch loss), so they check the formulas, not
torch against itself. Packed and alone trials train the same loss: ``tests/test_packing.py``.
"""

from __future__ import annotations

import math
import typing

import pytest
import torch

from bnstudy.spec.factors import Factors
from bnstudy.training import loop, losses, train
from bnstudy.training.losses import Criterion, class_balanced_weights, criterion, drw_start

COUNTS = [100, 10, 1]
BETA = 0.9999
#: A toy batch of four examples of three classes.
LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [1.0, -1.0, 3.0], [0.5, 0.5, 0.5]]
LABELS = [0, 1, 2, 0]
LIKE = torch.zeros((), dtype=torch.float64)  # the losses' tensors in float64, on the CPU


def hand_weights() -> list[float]:
    raw = [(1 - BETA) / (1 - BETA**n) for n in COUNTS]
    return [w / sum(raw) * len(raw) for w in raw]


def hand_loss(logits, labels, weights=None, smoothing=0.0, offset=None) -> float:
    """Torch's cross-entropy with class weights and label smoothing, written out: example i
    adds (1 - eps) w_y (-log p_y) + eps / C sum_c w_c (-log p_c); the sum is divided by the
    sum of w_y."""
    classes = len(logits[0])
    weights = weights or [1.0] * classes
    offset = offset or [0.0] * classes
    total = norm = 0.0
    for row, y in zip(logits, labels, strict=True):
        z = [a + b for a, b in zip(row, offset, strict=True)]
        log_z = math.log(sum(math.exp(v) for v in z))
        nll = [log_z - v for v in z]
        total += (1 - smoothing) * weights[y] * nll[y]
        total += smoothing / classes * sum(w * n for w, n in zip(weights, nll, strict=True))
        norm += weights[y]
    return total / norm


def loss_of(make_trial, loss: str, smoothing: float = 0.0, step: int = 0, total_steps=10):
    trial = make_trial(loss=loss, label_smoothing=smoothing)
    rule = criterion(trial, COUNTS, total_steps, like=LIKE)
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    return rule.mean(logits, torch.tensor(LABELS), step).item()


def test_class_balanced_weights_are_one_over_the_effective_number_summing_to_c():
    weights = class_balanced_weights(COUNTS)
    assert weights.tolist() == pytest.approx(hand_weights(), rel=1e-12)
    assert weights.sum().item() == pytest.approx(3.0, rel=1e-12)
    # (1 - b) / (1 - b^n) is about 1/n for n << 1/(1 - b): nearly inverse frequency here
    assert weights.tolist() == pytest.approx([0.02716, 0.2704, 2.702], rel=1e-3)


def test_log_prior_is_the_training_class_frequency():
    assert losses.log_prior(COUNTS).tolist() == pytest.approx(
        [math.log(n / 111) for n in COUNTS], rel=1e-12
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_each_loss_on_a_toy_batch_matches_the_hand_computation(make_trial, smoothing):
    prior = [math.log(n / 111) for n in COUNTS]
    expected = {
        "ce": hand_loss(LOGITS, LABELS, smoothing=smoothing),
        "cb_reweight": hand_loss(LOGITS, LABELS, hand_weights(), smoothing),
        "drw": hand_loss(LOGITS, LABELS, smoothing=smoothing),  # step 0: not yet weighted
        "logit_adjusted": hand_loss(LOGITS, LABELS, smoothing=smoothing, offset=prior),
    }
    for loss, value in expected.items():
        assert loss_of(make_trial, loss, smoothing) == pytest.approx(value, rel=1e-12), loss
    # the remedies change the loss: a test of the weights, not of the plain mean
    assert len({round(v, 6) for v in expected.values()}) == 3
    assert loss_of(make_trial, "drw", smoothing, step=8) == pytest.approx(
        expected["cb_reweight"], rel=1e-12
    )


def test_a_packs_per_copy_loss_is_each_copys_own(make_trial):
    """Two copies on different batches: each copy's weighted mean is over its own labels."""
    rule = criterion(make_trial(loss="cb_reweight", label_smoothing=0.1), COUNTS, 10, like=LIKE)
    other_logits = [[0.0, 2.0, 1.0], [1.0, 1.0, -2.0], [0.3, 0.2, 0.1], [-1.0, 0.0, 1.0]]
    other_labels = [2, 2, 1, 0]
    packed = torch.tensor(
        [a + b for a, b in zip(LOGITS, other_logits, strict=True)], dtype=torch.float64
    )
    labels = torch.tensor(list(zip(LABELS, other_labels, strict=True)))
    per_copy = rule.per_copy_mean(packed, labels, step=0).tolist()
    assert per_copy == pytest.approx(
        [
            hand_loss(LOGITS, LABELS, hand_weights(), 0.1),
            hand_loss(other_logits, other_labels, hand_weights(), 0.1),
        ],
        rel=1e-12,
    )


def test_drw_is_unweighted_for_80_percent_of_the_steps():
    assert drw_start(200 * 7) == 160 * 7  # Cao et al.: epoch 160 of 200
    assert [drw_start(t) for t in (1, 5, 9, 10, 11)] == [1, 4, 8, 8, 9]  # ceil(0.8 t)
    rule = Criterion(class_weight=torch.ones(3), weighted_from=drw_start(10))
    assert [rule.weight_at(step) is None for step in range(10)] == [True] * 8 + [False] * 2


def test_a_drw_trial_switches_at_the_first_step_of_epoch_4_of_5(make_trial, monkeypatch):
    trial = make_trial(loss="drw", imbalance_ratio=10.0, epochs=5)
    weighted: list[bool] = []
    mean = Criterion.mean

    def spy(self, logits, y, step):
        assert step == len(weighted)  # every step, in order
        weighted.append(self.weight_at(step) is not None)
        return mean(self, logits, y, step)

    monkeypatch.setattr(Criterion, "mean", spy)
    result = train.run_trial(trial)
    steps_per_epoch = len(weighted) // 5
    assert result.status == "ok" and len(weighted) == 5 * steps_per_epoch
    assert weighted.index(True) == 4 * steps_per_epoch and all(weighted[4 * steps_per_epoch :])


def test_a_class_without_training_images_is_an_error_naming_it(make_trial):
    for loss in ("cb_reweight", "drw", "logit_adjusted"):
        with pytest.raises(ValueError, match="class 1 has no training images"):
            criterion(make_trial(loss=loss), [5, 0, 3], 10, like=LIKE)
    criterion(make_trial(loss="ce"), [5, 0, 3], 10, like=LIKE)  # plain CE needs no counts
    with pytest.raises(ValueError, match="unknown loss 'focal'; allowed: ce, cb_reweight"):
        criterion(make_trial(loss="focal"), COUNTS, 10, like=LIKE)


def test_the_factors_offer_the_losses_and_samplers_training_knows():
    for name, known in (("loss", losses.LOSSES), ("sampler", loop.SAMPLERS)):
        (level,) = typing.get_args(Factors.model_fields[name].annotation)
        assert typing.get_args(level) == known, name


def test_ids_are_unchanged_at_the_defaults(make_trial):
    plain = make_trial()
    assert "loss" not in plain.identity() and "sampler" not in plain.identity()
    assert make_trial(loss="ce", sampler="instance").trial_id == plain.trial_id
    # its id before `loss` and `class_sorted` existed (computed with that commit's Trial)
    assert plain.trial_id == "aaa90b81994c8f40"
    for changed in (dict(loss="drw"), dict(sampler="class_sorted")):
        other = make_trial(**changed)
        assert other.trial_id != plain.trial_id
        # the arms of a block still pair: the head is all that differs between them
        assert make_trial(head="bn", **changed).block_id == other.block_id
