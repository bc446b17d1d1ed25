"""``cnn_flatten``: ``cnn``'s conv blocks with no global pooling; the feature maps are flattened.

The "no pooling at all" case of the original Q&A. Three conv(3x3)-BN-ReLU blocks of widths
16/32/32; after each block a 2x2 max-pool halves the maps while they are larger than 4 on a
side (and at least 2 on both), so 8x8, 16x16 and 32x32 images all end as 32 maps of 4x4 and
the head sees ``out_features = 512`` values (28x28 ends at 3x3: 288). The body ends in a
normalization (BN -> ReLU -> max-pool -> flatten), like ``cnn``, so ``cnn`` vs ``cnn_flatten``
contrasts global pooling alone.
"""

from __future__ import annotations

from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.pooling import MaxPool2x2
from bnstudy.models.registry import register_builder

WIDTHS = (16, 32, 32)
#: Max-pool while the larger spatial side exceeds this.
TARGET_SIDE = 4


class CNNFlattenBody(nn.Module):
    """(n, c, h, w) -> (n, WIDTHS[-1] * h' * w') flattened feature maps (h', w' <= 4 mostly)."""

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        channels, height, width = input_shape
        blocks = []
        for c_in, c_out in zip((channels, *widths), widths, strict=False):
            layers = [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            if max(height, width) > TARGET_SIDE and min(height, width) >= 2:
                layers.append(MaxPool2x2())
                height, width = height // 2, width // 2
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        self.out_features = widths[-1] * height * width

    def forward(self, x):
        return self.flatten(self.blocks(x))


@register_builder("cnn_flatten")
def cnn_flatten(input_shape: tuple[int, ...]) -> CNNFlattenBody:
    check_architecture_input("cnn_flatten", input_shape)
    return CNNFlattenBody(input_shape)
