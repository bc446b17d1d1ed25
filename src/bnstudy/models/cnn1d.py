"""``cnn1d``: three Conv1d-BN-ReLU blocks and global average pooling, for 1-D signals.

Made for MNIST-1D (input ``(1, 40)``) and similar ``(channels, length)`` signals: kernel 5,
widths 32/64/64, a max-pool (2) after the first two blocks while the signal is at least 2
long, then the mean over positions. Like ``cnn`` its body ends in a normalization
(BN -> ReLU -> GAP).
"""

from __future__ import annotations

from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.pooling import MaxPool1x2
from bnstudy.models.registry import register_builder

WIDTHS = (32, 64, 64)
KERNEL = 5


class CNN1dBody(nn.Module):
    """(n, c, length) -> (n, WIDTHS[-1]) globally average-pooled features."""

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.out_features = widths[-1]
        channels, length = input_shape
        blocks = []
        for i, (c_in, c_out) in enumerate(zip((channels, *widths), widths, strict=False)):
            layers = [
                nn.Conv1d(c_in, c_out, KERNEL, padding=KERNEL // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
            if i < len(widths) - 1 and length >= 2:
                layers.append(MaxPool1x2())
                length //= 2
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())

    def forward(self, x):
        return self.pool(self.blocks(x))


@register_builder("cnn1d")
def cnn1d(input_shape: tuple[int, ...]) -> CNN1dBody:
    check_architecture_input("cnn1d", input_shape)
    return CNN1dBody(input_shape)
