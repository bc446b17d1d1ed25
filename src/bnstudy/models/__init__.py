"""Models: architecture and head registries, paired initialisation, BN folding.

Importing this package registers the built-in architectures (``mlp``, ``cnn``) and heads.
"""

from bnstudy.models import cnn, heads, mlp  # noqa: F401  (registration side effects)
from bnstudy.models.fold import fold_bn_into_linear
from bnstudy.models.init import init_weights
from bnstudy.models.registry import (
    Classifier,
    architecture_names,
    build_model,
    head_names,
    register_architecture,
    register_head,
)

__all__ = [
    "Classifier",
    "architecture_names",
    "build_model",
    "fold_bn_into_linear",
    "head_names",
    "init_weights",
    "register_architecture",
    "register_head",
]
