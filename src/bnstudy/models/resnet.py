"""``resnet20``, ``resnet32``: the CIFAR ResNets of He et al. (2016), section 4.2.

A 3x3 conv (16 maps) with BN and ReLU, then three stages of ``n`` basic blocks (``n = 3`` for
ResNet-20, ``n = 5`` for ResNet-32) with 16, 32 and 64 maps; the first block of stages 2 and 3
halves the spatial size with a stride-2 conv. A basic block is
``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``.

Shortcuts are **option A** (the paper's choice for CIFAR): identity, and where the shape
changes, a parameter-free shortcut that subsamples the input with stride 2 and appends zero
channels. So every parameter is in a conv or BN, and the counts with a 10-class ``fc`` are the
published ones: 269,722 (ResNet-20, "0.27M") and 464,154 (ResNet-32, "0.46M").

The body ends in BN -> (+ shortcut) -> ReLU -> GAP: the last layer with parameters is a BN, but
the residual sum means the pooled features are not purely normalized (the identity path
carries the un-normalized sum of all earlier blocks). ``ends_in_norm`` is True; compare
``preact_resnet20``, whose last operation before the ReLU is a BN of the whole sum.

Convolutions use He (kaiming-normal, fan-in) init (see :mod:`bnstudy.models.init`); any size works
(the stride-2 stages take 32 -> 16 -> 8, 16 -> 8 -> 4, 8 -> 4 -> 2 before pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.registry import register_builder

WIDTHS = (16, 32, 64)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and append ``c_out - c_in`` zero channels."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.extra_channels = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 and c_in == c_out else ShortcutA(c_in, c_out, stride)


class BasicBlock(nn.Module):
    """``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))`` (He et al. 2016, figure 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetBody(nn.Module):
    """(n, c, h, w) -> (n, 64) globally average-pooled features of a CIFAR ResNet-(6n+2)."""

    def __init__(self, input_shape: tuple[int, ...], blocks_per_stage: int):
        super().__init__()
        self.out_features = WIDTHS[-1]
        self.stem = nn.Sequential(
            conv3x3(input_shape[0], WIDTHS[0]), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU()
        )
        stages, c_in = [], WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(c_in, width, stride=2 if i > 0 and j == 0 else 1))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


@register_builder("resnet20")
def resnet20(input_shape: tuple[int, ...]) -> ResNetBody:
    check_architecture_input("resnet20", input_shape)
    return ResNetBody(input_shape, blocks_per_stage=3)


@register_builder("resnet32")
def resnet32(input_shape: tuple[int, ...]) -> ResNetBody:
    check_architecture_input("resnet32", input_shape)
    return ResNetBody(input_shape, blocks_per_stage=5)
