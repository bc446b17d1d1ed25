"""``preact_resnet20``: the pre-activation ResNet-20 of He et al. (2016b), "Identity Mappings".

Same layout as ``resnet20`` (3x3 stem conv with 16 maps; three stages of 3 blocks, 16/32/64
maps; stride 2 at the start of stages 2 and 3; **option-A** shortcuts: identity, or stride-2
subsampling plus zero channels where the shape changes), but each block is
``x + conv(ReLU(BN(conv(ReLU(BN(x))))))``: nothing is applied after the addition, so the
identity path is clean. As in the paper, the first block takes its shortcut after the first
BN-ReLU ("right after conv1 and before splitting into two paths"), and the body ends in a
final BN -> ReLU before global average pooling: ``ends_in_norm`` is True, and unlike
``resnet20`` the BN normalizes the whole residual sum.

The stem conv has no BN of its own (the first block's BN follows it). Convolutions use He
(kaiming-normal, fan-in) init; see :mod:`bnstudy.models.init`.
"""

from __future__ import annotations

import torch
from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.registry import register_builder
from bnstudy.models.resnet import WIDTHS, conv3x3, shortcut


class PreActBlock(nn.Module):
    """``x + conv(ReLU(BN(conv(ReLU(BN(x))))))`` (He et al. 2016b, figure 4e).

    With ``activate_shortcut`` the shortcut branches off after the first BN-ReLU (the paper's
    first unit, which follows the stand-alone stem conv).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, activate_shortcut: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(c_out, c_out)
        self.shortcut = shortcut(c_in, c_out, stride)
        self.activate_shortcut = activate_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        residual = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return residual + self.shortcut(activated if self.activate_shortcut else x)


class PreActResNetBody(nn.Module):
    """(n, c, h, w) -> (n, 64) pooled features of a pre-activation ResNet-(6n+2)."""

    def __init__(self, input_shape: tuple[int, ...], blocks_per_stage: int):
        super().__init__()
        self.out_features = WIDTHS[-1]
        self.stem = conv3x3(input_shape[0], WIDTHS[0])
        stages, c_in = [], WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(PreActBlock(c_in, width, stride, activate_shortcut=i == j == 0))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.final(self.stages(self.stem(x))))


@register_builder("preact_resnet20")
def preact_resnet20(input_shape: tuple[int, ...]) -> PreActResNetBody:
    check_architecture_input("preact_resnet20", input_shape)
    return PreActResNetBody(input_shape, blocks_per_stage=3)
