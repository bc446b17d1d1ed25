"""``vgg11`` and ``vgg11_bn``: the VGG-11 conv configuration ("A", Simonyan & Zisserman 2015).

Convolutions (3x3, padding 1, each followed by ReLU; in ``vgg11_bn`` by BN -> ReLU, as in
torchvision's ``vgg11_bn``) and 2x2 max-pools in the order
``64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M``.

Adapted to small inputs in two ways:

- **Max-pools that would take a spatial side below 1 are skipped.** A 32x32 image is pooled
  five times down to 1x1; a 16x16 image four times (the last ``M`` is skipped); an 8x8 image
  three times (the last two are skipped: the last four convs then run on 1x1 maps, where a
  padded 3x3 conv acts as a 1x1 conv).
- **The ImageNet classifier (FC 4096 -> FC 4096 -> FC 1000, with dropout) is dropped**; the
  body ends with global average pooling over the remaining maps (a no-op reshape at 1x1), so
  the head sees 512 features, as in the usual CIFAR versions of VGG.

``vgg11`` has no normalization anywhere (``ends_in_norm`` False: conv -> ReLU -> max-pool ->
GAP); ``vgg11_bn`` ends in conv -> BN -> ReLU -> max-pool -> GAP (``ends_in_norm`` True). Its
convolutions have no bias (the BN's shift replaces it). Convolutions use He (kaiming-normal,
fan-in) init with zero biases (see :mod:`bnstudy.models.init`): with PyTorch's default init
each of the eight unnormalized conv-ReLU layers of ``vgg11`` would shrink the signal's second
moment about sixfold. On maps of side 1 a padded 3x3 conv sees only its centre tap, so there
the signal still shrinks about ninefold per layer at init; ``vgg11`` on 8x8 or 16x16 inputs
therefore starts with small features and learns more slowly than ``vgg11_bn``.
"""

from __future__ import annotations

from torch import nn

from bnstudy.models.facts import check_architecture_input
from bnstudy.models.pooling import MaxPool2x2
from bnstudy.models.registry import register_builder

#: VGG-11 ("configuration A"): conv widths, ``"M"`` for a 2x2 max-pool.
CONFIG_11: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGGBody(nn.Module):
    """(n, c, h, w) -> (n, 512) globally average-pooled features of VGG's conv stack."""

    def __init__(self, input_shape: tuple[int, ...], batch_norm: bool, config=CONFIG_11):
        super().__init__()
        c_in, height, width = input_shape
        layers: list[nn.Module] = []
        for item in config:
            if item == "M":
                if min(height, width) >= 2:  # else the pool would leave a side of 0
                    layers.append(MaxPool2x2())
                    height, width = height // 2, width // 2
                continue
            layers.append(nn.Conv2d(c_in, item, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU())
            c_in = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = c_in

    def forward(self, x):
        return self.pool(self.features(x))


@register_builder("vgg11")
def vgg11(input_shape: tuple[int, ...]) -> VGGBody:
    check_architecture_input("vgg11", input_shape)
    return VGGBody(input_shape, batch_norm=False)


@register_builder("vgg11_bn")
def vgg11_bn(input_shape: tuple[int, ...]) -> VGGBody:
    check_architecture_input("vgg11_bn", input_shape)
    return VGGBody(input_shape, batch_norm=True)
