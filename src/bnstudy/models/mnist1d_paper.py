"""The MNIST-1D paper's networks: ``linear``, ``mnist1d_mlp`` and ``mnist1d_cnn``.

Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" (ICML 2024, arXiv 2011.14439),
Table 1: logistic regression 32%, MLP 68%, CNN 94% test accuracy on MNIST-1D (Adam, lr 1e-2,
batch 100, 6,000 steps, no weight decay; ``protocols/anchors/mnist1d_paper.yaml`` re-runs
it). Their definitions are ``LinearBase``, ``MLPBase`` and ``ConvBase`` of the paper's
repository (github.com/greydanus/mnist1d, ``notebooks/models.py``). Here each is a body of
the head contract (:mod:`bnstudy.models.registry`) whose last layer is the paper's final
``Linear`` left out, so **body + the ``plain`` head is the paper's network, layer for
layer** (the plain head is that ``Linear``, as ``head.fc``):

- ``linear``: flattens, nothing else; the features are the input itself (40 values), and
  ``plain`` makes it logistic regression, 40 x 10 + 10 = 410 parameters. Not a ReLU body: its
  features are signed, so its dead-unit metrics (``feature_*``) mean nothing.
- ``mnist1d_mlp``: ``h = relu(W1 x)`` (40 -> 100), then the residual ``h = h + relu(W2 h)``
  (100 -> 100); features ``h`` (100, non-negative), 15,210 parameters with ``plain``.
- ``mnist1d_cnn``: three ``Conv1d`` + ReLU of 25 channels, kernels 5, 3, 3, stride 2,
  padding 1 (length 40 -> 19 -> 10 -> 5), no normalization; features the flattened maps
  (25 x 5 = 125), 5,210 parameters with ``plain``.

The paper's inputs are (n, 40) vectors; bnstudy's MNIST-1D signals are (n, 1, 40), which is
what ``ConvBase`` reshapes its input to, and the MLPs flatten them first (no parameters).
Given other inputs, ``linear`` and ``mnist1d_mlp`` flatten whatever they get and
``mnist1d_cnn`` takes any (channels, length) signal, the flattened width following the length.

**Initialisation.** The paper's layers keep PyTorch's default init (weights kaiming-uniform
with ``a = sqrt(5)``, i.e. uniform in ``±1/sqrt(fan_in)``; biases uniform in
``±1/sqrt(fan_in)``), drawn from the global stream after ``set_seed(42)``. These bodies are
registered with ``conv_init="uniform"``, so :mod:`bnstudy.models.init` draws the very same
distributions, each layer from its own seeded generator (so that the arms of a pair share
them). Only the particular draws differ, as between two seeds of the paper's: it changes no
expected accuracy, and it is why the anchor reports a mean over seeds, not one run.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.registry import register_builder

#: The MLP's hidden width (``MLPBase``'s ``hidden_size``).
MLP_WIDTH = 100
#: The CNN's channels (``ConvBase``'s ``channels``) and its three convolutions' kernel sizes;
#: every one has stride 2 and padding 1.
CNN_CHANNELS = 25
CNN_KERNELS = (5, 3, 3)
CNN_STRIDE = 2
CNN_PADDING = 1


class LinearBody(nn.Module):
    """(n, *input_shape) -> (n, prod(input_shape)): the input, flattened (no parameters)."""

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        self.out_features = math.prod(input_shape)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(x)


class MNIST1dMLPBody(nn.Module):
    """(n, *input_shape) -> (n, 100): ``h = relu(linear1(x)); h + relu(linear2(h))``."""

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        self.out_features = MLP_WIDTH
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(math.prod(input_shape), MLP_WIDTH)
        self.linear2 = nn.Linear(MLP_WIDTH, MLP_WIDTH)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.linear1(self.flatten(x)))
        return h + self.relu(self.linear2(h))  # the paper's residual connection


def conv_length(length: int, kernel: int) -> int:
    """The length after one of the CNN's convolutions (stride 2, padding 1)."""
    return (length + 2 * CNN_PADDING - kernel) // CNN_STRIDE + 1


class MNIST1dCNNBody(nn.Module):
    """(n, c, length) -> (n, 25 * length'): three conv-ReLU layers, the maps flattened.

    ``length'`` is 5 for MNIST-1D's 40 samples, so the features are the paper's 125.
    """

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        channels, length = input_shape
        layers: list[nn.Module] = []
        for i, kernel in enumerate(CNN_KERNELS):
            c_in = channels if i == 0 else CNN_CHANNELS
            layers += [
                nn.Conv1d(c_in, CNN_CHANNELS, kernel, stride=CNN_STRIDE, padding=CNN_PADDING),
                nn.ReLU(),
            ]
            length = conv_length(length, kernel)
        self.convs = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.out_features = CNN_CHANNELS * length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.convs(x))


@register_builder("linear")
def linear(input_shape: tuple[int, ...]) -> LinearBody:
    check_architecture_input("linear", input_shape)
    return LinearBody(input_shape)


@register_builder("mnist1d_mlp")
def mnist1d_mlp(input_shape: tuple[int, ...]) -> MNIST1dMLPBody:
    check_architecture_input("mnist1d_mlp", input_shape)
    return MNIST1dMLPBody(input_shape)


@register_builder("mnist1d_cnn")
def mnist1d_cnn(input_shape: tuple[int, ...]) -> MNIST1dCNNBody:
    check_architecture_input("mnist1d_cnn", input_shape)
    # The first kernel must fit the padded signal; every later map is then at least 1 long.
    shortest = CNN_KERNELS[0] - 2 * CNN_PADDING
    if input_shape[1] < shortest:
        raise ValueError(
            f"architecture 'mnist1d_cnn' needs signals of length at least {shortest}; got "
            f"input shape {tuple(input_shape)}"
        )
    return MNIST1dCNNBody(input_shape)
