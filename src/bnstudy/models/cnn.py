"""``cnn``: three conv-BN-ReLU blocks and global average pooling; small enough for one CPU core.

Unlike ``mlp`` its body ends in a normalization (BN -> ReLU -> GAP), which SCIENCE.md
hypothesis 2 asks to contrast.
"""

from __future__ import annotations

from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.pooling import MaxPool2x2
from bnstudy.models.registry import register_builder

WIDTHS = (16, 32, 64)


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]
    if pool:
        layers.append(MaxPool2x2())
    return nn.Sequential(*layers)


class CNNBody(nn.Module):
    """(n, c, h, w) -> (n, WIDTHS[-1]) globally average-pooled features."""

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.out_features = widths[-1]
        channels = (input_shape[0], *widths)
        self.blocks = nn.Sequential(
            *(
                _block(c_in, c_out, pool=i < len(widths) - 1)
                for i, (c_in, c_out) in enumerate(zip(channels, channels[1:], strict=False))
            )
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.pool(self.blocks(x))


@register_builder("cnn")
def cnn(input_shape: tuple[int, ...]) -> CNNBody:
    check_architecture_input("cnn", input_shape)
    return CNNBody(input_shape)
