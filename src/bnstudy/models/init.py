"""Paired initialisation: each layer's initial weights depend only on its name and the seed.

PyTorch's default init draws every layer from one global stream, so inserting a BatchNorm in
the head would not change the body, but changing a layer's shape or adding a parameterised
layer earlier would shift every later draw. Drawing each module from its own generator,
seeded by its qualified name, makes the arms of a pairing block share the initial weights of
every layer they have in common.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def init_weights(model: nn.Module, init_seed: Callable[[str], int]) -> None:
    """Re-initialise Linear/Conv layers (PyTorch's default distributions) and norm layers.

    Linear and Conv weights: kaiming-uniform with ``a=sqrt(5)``; biases uniform in
    ``±1/sqrt(fan_in)``; both drawn from ``torch.Generator().manual_seed(init_seed(name))``.
    Norm layers: weight 1, bias 0, running statistics reset. Other modules are left alone.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            generator = torch.Generator().manual_seed(init_seed(name))
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, _NORMS):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()
