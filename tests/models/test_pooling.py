import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.models.pooling import MaxPool1x2, MaxPool2x2
from bnstudy.training.train import run_trial

SHAPES = [(5, 3, 16, 16), (2, 4, 7, 9)]  # odd sizes are floored


def _inputs(shape):
    x = torch.randn(shape).relu()  # ReLU outputs: many tied zeros, as in the CNN
    x[0, 0, :2, :2] = torch.tensor([[1.5, 1.5], [1.5, 1.5]])  # a tie at a positive value
    x[1, 0, :2, :2] = -float("inf")
    x[0, 1, 0, 0] = float("nan")
    return x


def _same(a, b):
    """Equal values, NaN where NaN, and the same sign of every zero."""
    return torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)) and torch.equal(
        a.signbit(), b.signbit()
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_evaluation_gives_torchs_output(shape):
    x = _inputs(shape)
    with torch.no_grad():
        fast = MaxPool2x2()(x)
    expected = F.max_pool2d(x, 2)
    assert fast.shape == expected.shape and fast.is_contiguous()
    assert torch.equal(fast.nan_to_num(7.0), expected.nan_to_num(7.0))
    assert torch.isnan(fast).sum() == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_training_gives_torchs_output_and_gradient(shape):
    x = _inputs(shape).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    out, expected = MaxPool2x2()(x), F.max_pool2d(reference, 2)
    assert out.is_contiguous() and _same(out.detach(), expected.detach())
    grad = torch.randn(out.shape)
    grad[0, 2, 0, 0] = -0.0
    out.backward(grad)
    expected.backward(grad)
    assert x.grad.is_contiguous() and _same(x.grad, reference.grad)
    # A tied window routes its gradient to one element only (its first maximum).
    assert (x.grad[0, 0, :2, :2] != 0).sum() == 1 and x.grad[0, 0, 0, 0] == grad[0, 0, 0, 0]


@pytest.mark.parametrize(
    ("architecture", "dataset", "pool", "torchs"),
    [
        ("cnn", "synthetic", MaxPool2x2, nn.MaxPool2d),
        ("cnn1d", "mnist1d", MaxPool1x2, nn.MaxPool1d),
    ],
)
def test_a_trial_is_the_trial_with_torchs_pooling(
    make_trial, monkeypatch, architecture, dataset, pool, torchs
):
    """Training and evaluation give bit for bit what PyTorch's pooling modules give."""
    trial = make_trial(architecture=architecture, dataset=dataset, head="bn", imbalance_ratio=10.0)
    fast = run_trial(trial)
    monkeypatch.setattr(pool, "forward", torchs.forward)
    reference = run_trial(trial)
    assert fast.curves == reference.curves and fast.per_class == reference.per_class
    for name, value in fast.metrics.items():
        if name != "wall_s":
            assert np.array_equal(value, reference.metrics[name], equal_nan=True), name


@pytest.mark.parametrize("length", [40, 21])  # an odd length is floored
def test_1d_training_gives_torchs_output_and_gradient(length):
    x = torch.randn(6, 5, length).relu()
    x[0, 0, :2] = 2.5  # a tie at a positive value
    x[1, 0, 2] = float("nan")
    x.requires_grad_()
    reference = x.detach().clone().requires_grad_()
    out, expected = MaxPool1x2()(x), F.max_pool1d(reference, 2)
    assert out.is_contiguous() and _same(out.detach(), expected.detach())
    grad = torch.randn(out.shape)
    out.backward(grad)
    expected.backward(grad)
    assert x.grad.is_contiguous() and _same(x.grad, reference.grad)
    assert x.grad[0, 0, 0] == grad[0, 0, 0] and x.grad[0, 0, 1] == 0
