"""Models: architecture and head registries, paired initialisation, BN folding.

Importing this package registers the built-in architectures (``mlp``, ``cnn``, ``cnn1d``,
``cnn_flatten``, ``resnet20``, ``resnet32``, ``preact_resnet20``, ``vgg11``, ``vgg11_bn``; one
family per file) and heads. :func:`architecture_info` tells what each body accepts, whether it
ends in a normalization and how it pools; :func:`check_architecture_input` refuses an
architecture/input pair with a one-line ``ValueError``.
"""

from bnstudy.models import (  # noqa: F401  (registration side effects)
    cnn,
    cnn1d,
    cnn_flatten,
    heads,
    mlp,
    preact_resnet,
    resnet,
    vgg,
)
from bnstudy.models.fold import fold_bn_into_linear
from bnstudy.models.heads import hidden_relu
from bnstudy.models.init import init_weights
from bnstudy.models.registry import (
    INPUT_KINDS,
    ArchitectureInfo,
    Classifier,
    architecture_info,
    architecture_names,
    build_model,
    check_architecture_input,
    compatible_architectures,
    head_names,
    register_architecture,
    register_head,
    shape_kind,
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
