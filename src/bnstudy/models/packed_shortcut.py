"""K option-A shortcuts as one module: the packed counterpart of :class:`ShortcutA`.

A ResNet's option-A shortcut (:mod:`bnstudy.models.resnet`) subsamples its input and appends
``c_out - c_in`` zero channels. On a packed activation ``(n, K * c_in, h, w)`` (copy-major, see
:mod:`bnstudy.models.packed`) the unpacked module would append all the zeros after the last
copy, so copy ``k``'s channels would start at ``k * c_in`` rather than ``k * c_out``. The packed
shortcut appends each copy's zero channels after its own block, giving the packed layout of
the K unpacked outputs: ``(n, K * c_out, h', w')``.

The residual blocks around it (``BasicBlock``, ``PreActBlock``) need no counterpart: their
``forward`` only chains per-copy layers and adds two activations of the same packed layout,
an elementwise sum that acts on each copy alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.models.resnet import ShortcutA


class PackedShortcutA(nn.Module):
    """K :class:`ShortcutA`: ``(n, K * c_in, h, w) -> (n, K * c_out, h', w')``, no parameters."""

    def __init__(self, copies: int, extra_channels: int, stride: int):
        super().__init__()
        self.copies, self.extra_channels, self.stride = copies, extra_channels, stride

    @classmethod
    def of(cls, shortcut: ShortcutA, copies: int) -> PackedShortcutA:
        """The packed counterpart of ``shortcut`` for ``copies`` copies."""
        return cls(copies, shortcut.extra_channels, shortcut.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        n, channels, height, width = x.shape
        per_copy = x.reshape(n, self.copies, channels // self.copies, height, width)
        padded = F.pad(per_copy, (0, 0, 0, 0, 0, self.extra_channels))  # each copy's own zeros
        return padded.reshape(n, -1, height, width)
