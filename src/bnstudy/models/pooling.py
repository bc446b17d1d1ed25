"""Max pooling by 2: ``nn.MaxPool2d(2)``'s and ``nn.MaxPool1d(2)``'s numbers, faster on the CPU.

On the CPU, PyTorch's max-pooling kernel for (n, c, h, w) tensors is slow (``max_pool1d``
uses it too when a gradient is needed). Measured on a 2-core AMD EPYC (torch 2.13, one
thread): it was half of the quick CNN's evaluation, a fifth of its training step and a
quarter of a ``cnn1d`` training step. Exact substitutes:

- without autograd (evaluation): the maximum of the four strided 2x2 views, 5-10x faster.
  Max is exact, so the values are those of ``nn.MaxPool2d(2)``, NaN propagating as there.
- in training (2-d and 1-d): PyTorch's own kernel run on a channels-last copy, forward and
  backward, about 2x faster. The kernel is the same function of the same values (same
  output, same routing of each window's gradient to its first maximum); only the memory
  layout differs, and the copies back to (n, c, h, w) are exact.

Elsewhere (CUDA; 1-d without a gradient, whose kernel is fast) they are PyTorch's modules.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

_CL = torch.channels_last


class _ChannelsLastMaxPool(torch.autograd.Function):
    """``max_pool2d`` with ``kernel`` = stride, no padding, on (n, c, h, w); (1, 2) is 1-d."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: list[int]) -> torch.Tensor:
        x = x.contiguous(memory_format=_CL)
        out, indices = torch.ops.aten.max_pool2d_with_indices(x, kernel, kernel)
        ctx.save_for_backward(x, indices)
        ctx.kernel = kernel
        return out.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, indices = ctx.saved_tensors
        grad = grad.contiguous(memory_format=_CL)
        backward = torch.ops.aten.max_pool2d_with_indices_backward
        k = ctx.kernel
        return backward(grad, x, k, k, [0, 0], [1, 1], False, indices).contiguous(), None


def _training(x: torch.Tensor, dims: int) -> bool:
    """On the CPU, with a gradient to compute: the channels-last path."""
    return x.is_cpu and x.dim() == dims and x.requires_grad and torch.is_grad_enabled()


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` (a subclass, so code that recognises max pooling still does)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _training(x, 4):
            return _ChannelsLastMaxPool.apply(x, [2, 2])
        if not x.is_cpu or x.dim() != 4 or (x.requires_grad and torch.is_grad_enabled()):
            return super().forward(x)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor, as the kernel does
        top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
        return torch.maximum(top, torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class MaxPool1x2(nn.MaxPool1d):
    """``nn.MaxPool1d(2)`` (a subclass, so code that recognises max pooling still does)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _training(x, 3):
            return _ChannelsLastMaxPool.apply(x.unsqueeze(-2), [1, 2]).squeeze(-2)
        return super().forward(x)
