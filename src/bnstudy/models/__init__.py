"""Models: architecture and head registries, paired initialisation, BN folding.

The built-in architectures (``mlp``, ``cnn``, ``cnn1d``, ``cnn_flatten``, ``resnet20``,
``resnet32``, ``preact_resnet20``, ``vgg11``, ``vgg11_bn``, and the MNIST-1D paper's
``linear``, ``mnist1d_mlp``, ``mnist1d_cnn``; one family per file) and heads
are known by name from the start: :func:`architecture_info` tells what each body accepts,
whether it ends in a normalization and how it pools; :func:`check_architecture_input`
refuses an architecture/input pair with a one-line ``ValueError``. Those facts come from
:mod:`bnstudy.models.facts` and do not import torch; everything that builds or changes a
network (``build_model``, ``register_architecture``, ...) is loaded on first use (PEP 562),
and a builder's module on the first build of its network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bnstudy import lazy
from bnstudy.models.facts import (
    INPUT_KINDS,
    ArchitectureInfo,
    architecture_info,
    architecture_names,
    check_architecture_input,
    compatible_architectures,
    head_names,
    shape_kind,
)

if TYPE_CHECKING:
    from bnstudy.models.fold import fold_bn_into_linear
    from bnstudy.models.heads import hidden_relu
    from bnstudy.models.init import init_weights
    from bnstudy.models.registry import (
        Classifier,
        build_model,
        register_architecture,
        register_head,
    )

__all__ = [
    "INPUT_KINDS",
    "ArchitectureInfo",
    "Classifier",
    "architecture_info",
    "architecture_names",
    "build_model",
    "check_architecture_input",
    "compatible_architectures",
    "fold_bn_into_linear",
    "head_names",
    "hidden_relu",
    "init_weights",
    "shape_kind",
    "register_architecture",
    "register_head",
]

#: Names whose modules import torch, loaded on first access.
_LAZY = {
    "Classifier": "bnstudy.models.registry",
    "build_model": "bnstudy.models.registry",
    "register_architecture": "bnstudy.models.registry",
    "register_head": "bnstudy.models.registry",
    "fold_bn_into_linear": "bnstudy.models.fold",
    "hidden_relu": "bnstudy.models.heads",
    "init_weights": "bnstudy.models.init",
}


__getattr__ = lazy.attributes(__name__, _LAZY, globals())
