"""Paired initialisation: each layer's initial weights depend only on its name and the seed.

PyTorch's default init draws every layer from one global stream, so inserting a BatchNorm in
the head would not change the body, but changing a layer's shape or adding a parameterised
layer earlier would shift every later draw. Drawing each module from its own generator,
seeded by its qualified name, makes the arms of a pairing block share the initial weights of
every layer they have in common.

Two schemes for convolutions (``conv_init``), chosen per architecture in the registry:

- ``"uniform"``: PyTorch's default (kaiming-uniform with ``a=sqrt(5)``, i.e. weights uniform in
  ``±1/sqrt(fan_in)``; biases uniform in ``±1/sqrt(fan_in)``). Used by ``mlp``, ``cnn`` (whose
  trial numbers must not change) and the other small bodies.
- ``"kaiming_normal"``: He et al. (2015) normal init, ``std = sqrt(2 / fan_in)`` (their
  forward-propagation case, the Caffe/MSRA filler the ResNet paper used; torchvision uses
  ``fan_out`` instead), biases zero. The published deep networks (``resnet*``,
  ``preact_resnet20``, ``vgg11*``) use it: under the uniform default each conv-ReLU layer
  divides the signal's second moment by about 6, so the activations of an 8-conv VGG without
  BN all but vanish, and "VGG-11 with PyTorch's default init" is not the network
  practitioners train. ``fan_in`` rather than torchvision's ``fan_out`` for the same reason:
  ``fan_out`` shrinks the forward signal at every layer that widens the channels (21-fold in
  variance at VGG's 3 -> 64 stem), and ``vgg11`` on 8x8 inputs then barely trains in a few
  hundred steps. (The scheme is chosen per architecture rather than switched globally:
  ``mlp``/``cnn`` trial numbers must stay bit-identical.)

Linear layers always use PyTorch's default, whatever ``conv_init`` says, so a head (and its
``fc``) is initialised the same way on every architecture: the treatment does not depend on
the body's init convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from bnstudy.models.facts import CONV_INITS, ConvInit

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def init_weights(
    model: nn.Module, init_seed: Callable[[str], int], conv_init: ConvInit = "uniform"
) -> None:
    """Re-initialise Linear/Conv layers and norm layers in place.

    Each Linear/Conv draws from ``torch.Generator().manual_seed(init_seed(qualified_name))``:
    Linear layers (and Conv layers with ``conv_init="uniform"``) get PyTorch's default
    distributions; Conv layers with ``conv_init="kaiming_normal"`` get ``N(0, 2/fan_in)``
    weights and zero biases. Norm layers (BatchNorm1d/2d/3d, InstanceNorm, LayerNorm,
    GroupNorm): weight 1, bias 0, running statistics reset. Parameter-free modules are left
    alone; any other module that owns parameters directly raises ``TypeError`` so that a new
    layer type cannot silently keep PyTorch's global-stream init and break the pairing.
    """
    if conv_init not in CONV_INITS:
        raise ValueError(f"unknown conv_init {conv_init!r}; allowed: {', '.join(CONV_INITS)}")
    for name, module in model.named_modules():
        if isinstance(module, _CONVS) and conv_init == "kaiming_normal":
            generator = torch.Generator().manual_seed(init_seed(name))
            nn.init.kaiming_normal_(
                module.weight, mode="fan_in", nonlinearity="relu", generator=generator
            )
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, *_CONVS)):
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
        elif any(True for _ in module.parameters(recurse=False)):
            raise TypeError(
                f"init_weights: no paired initialisation for {type(module).__name__} "
                f"at {name!r}; add it to bnstudy.models.init"
            )
