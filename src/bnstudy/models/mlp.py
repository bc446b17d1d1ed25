"""``mlp``: flatten -> two ReLU hidden layers. Its "pooled features" are the last hidden layer."""

from __future__ import annotations

import math

from torch import nn

from bnstudy.models.registry import check_architecture_input, register_architecture

WIDTH = 256


class MLPBody(nn.Module):
    """(n, *input_shape) -> (n, WIDTH) non-negative features; no normalization anywhere."""

    def __init__(self, input_shape: tuple[int, ...], width: int = WIDTH):
        super().__init__()
        self.out_features = width
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.layers(x)


@register_architecture(
    "mlp",
    inputs=("any",),
    ends_in_norm=False,
    pooling="none",
    tail="linear -> ReLU (no normalization anywhere)",
)
def mlp(input_shape: tuple[int, ...]) -> MLPBody:
    check_architecture_input("mlp", input_shape)
    return MLPBody(input_shape)
