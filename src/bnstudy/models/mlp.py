"""``mlp``: flatten -> ReLU hidden layers. Its "pooled features" are the last hidden layer.

Width and depth are options (a protocol's ``architectures: {mlp: {width: 512, depth: 3}}``,
see :mod:`bnstudy.spec.arch_options`); the defaults, 256 wide and 2 deep, are the first release's
network, with the same layer names and therefore the same initial weights.
"""

from __future__ import annotations

import math

from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.registry import register_builder

WIDTH = 256
DEPTH = 2


class MLPBody(nn.Module):
    """(n, *input_shape) -> (n, width) non-negative features; no normalization anywhere."""

    def __init__(self, input_shape: tuple[int, ...], width: int = WIDTH, depth: int = DEPTH):
        super().__init__()
        self.out_features = width
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [nn.Linear(math.prod(input_shape) if i == 0 else width, width), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


@register_builder("mlp")
def mlp(input_shape: tuple[int, ...], width: int = WIDTH, depth: int = DEPTH) -> MLPBody:
    check_architecture_input("mlp", input_shape)
    return MLPBody(input_shape, width, depth)
