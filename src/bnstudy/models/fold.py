"""Folding an eval-mode BatchNorm into the Linear layer that follows it."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_bn_into_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """A Linear equal to ``linear(bn(x))`` with ``bn`` in eval mode (running statistics).

    ``W' = W diag(γ/σ)`` and ``b' = b + W (β − γ μ/σ)`` with ``σ = sqrt(running_var + eps)``;
    ``γ = 1, β = 0`` when ``bn`` has no affine parameters, ``b = 0`` when ``linear`` has no bias.
    Computed in float64 and cast back, so the fold adds no error beyond float32 rounding.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_bn_into_linear: the BatchNorm tracks no running statistics")
    dtype = linear.weight.dtype
    mean = bn.running_mean.double()
    sigma = torch.sqrt(bn.running_var.double() + bn.eps)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    weight = linear.weight.double()
    bias = linear.bias.double() if linear.bias is not None else torch.zeros_like(weight[:, 0])
    scale = gamma / sigma
    folded = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device)
    folded.weight.copy_((weight * scale).to(dtype))
    folded.bias.copy_((bias + weight @ (beta - scale * mean)).to(dtype))
    return folded
