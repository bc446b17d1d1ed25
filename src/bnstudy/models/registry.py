"""Architecture and head registries and the one factory that builds a classifier.

An architecture builder takes the input shape and returns a body module with an integer
``out_features`` (the width of the pooled feature vector it outputs). A head builder takes
``(in_features, num_classes)`` and returns a module mapping features to logits whose final
linear layer is named ``fc``, so ``head.fc`` has the same qualified name, and therefore the
same initial weights, in every head.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from bnstudy.models.init import init_weights

ArchitectureBuilder = Callable[[tuple[int, ...]], nn.Module]
HeadBuilder = Callable[[int, int], nn.Module]

_ARCHITECTURES: dict[str, ArchitectureBuilder] = {}
_HEADS: dict[str, HeadBuilder] = {}


class Classifier(nn.Module):
    """``head(body(x))``: body (n, *input_shape) -> features (n, d); head -> logits (n, C)."""

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _register(table: dict, kind: str) -> Callable[[Callable], Callable]:
    def decorator_for(name: str) -> Callable[[Callable], Callable]:
        def decorator(builder: Callable) -> Callable:
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = builder
            return builder

        return decorator

    return decorator_for


#: ``@register_architecture("name")`` on a builder ``(input_shape) -> body``.
register_architecture = _register(_ARCHITECTURES, "architecture")
#: ``@register_head("name")`` on a builder ``(in_features, num_classes) -> head``.
register_head = _register(_HEADS, "head")


def architecture_names() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_ARCHITECTURES)


def head_names() -> list[str]:
    """Registered head names, sorted."""
    return sorted(_HEADS)


def _lookup(table: dict[str, Callable], kind: str, name: str) -> Callable:
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown {kind} {name!r}{hint}; known: {', '.join(sorted(table))}")
    return table[name]


def build_model(
    architecture: str,
    head: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    init_seed: Callable[[str], int],
) -> Classifier:
    """Build a classifier and initialise every layer from its own seeded generator.

    ``init_seed(qualified_module_name)`` gives the seed of each parameterised module (see
    :func:`bnstudy.models.init.init_weights`), so classifiers that differ only in the head
    share the body's and ``head.fc``'s initial weights exactly.
    """
    body = _lookup(_ARCHITECTURES, "architecture", architecture)(tuple(input_shape))
    head_module = _lookup(_HEADS, "head", head)(body.out_features, num_classes)
    model = Classifier(body, head_module)
    init_weights(model, init_seed)
    return model
