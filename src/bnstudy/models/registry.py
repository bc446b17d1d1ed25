"""Architecture and head registries and the one factory that builds a classifier.

**Body contract.** An architecture builder takes the input shape (without the batch dimension)
and returns a body module with an integer ``out_features``: it maps ``(n, *input_shape)`` to the
feature vector ``(n, out_features)`` the head consumes. Every architecture is registered with
an :class:`ArchitectureInfo` (which inputs it accepts, whether its body ends in a
normalization, how it pools), queryable without building it; a builder given an input of the
wrong rank raises the same one-line ``ValueError`` as :func:`check_architecture_input`. The
built-in bodies all end in a ReLU (then pooling or flattening), so their features are
non-negative and 0 means "inactive"; all but ``linear``, whose features are its input.

**Head contract.** A head builder takes ``(in_features, num_classes)`` (plus, as keyword
arguments, the head options it declares in :func:`register_head`) and returns any
``nn.Module`` mapping ``(n, in_features)`` features to ``(n, num_classes)`` logits whose final
linear layer is the attribute ``fc`` (an ``nn.Linear``, bias optional). That is all callers may
rely on: a head need not have ``pre``/``post`` attributes, nor be an ``nn.Sequential``. The
name ``fc`` gives the final layer the same qualified name, and therefore the same initial
weights, in every head. The built-in heads (:mod:`bnstudy.models.heads`) are all
``post(fc(pre(features)))``; code that wants the hidden ReLU units of a head uses
:func:`bnstudy.models.heads.hidden_relu`, which searches any module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bnstudy.models.facts import (
    ArchitectureInfo,
    ConvInit,
    InputKind,
    Pooling,
    architecture_info,
    check_architecture_input,
    declare_architecture,
    lookup,
)
from bnstudy.models.init import init_weights
from bnstudy.spec import arch_options, head_options

ArchitectureBuilder = Callable[[tuple[int, ...]], nn.Module]
HeadBuilder = Callable[..., nn.Module]

#: The module that registers the built-in heads' builders.
BUILTIN_HEADS_MODULE = "bnstudy.models.heads"

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


def register_architecture(
    name: str,
    *,
    inputs: Sequence[InputKind],
    ends_in_norm: bool,
    pooling: Pooling,
    tail: str,
    conv_init: ConvInit = "uniform",
    options: Mapping[str, Sequence[Any]] | None = None,
) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """``@register_architecture("name", inputs=..., ends_in_norm=..., pooling=..., tail=...)``.

    Decorates a builder ``(input_shape, **options) -> body``; see :class:`ArchitectureInfo`
    for the fields. ``options`` declares the integer options the protocol's
    ``architectures:`` section may set, each ``name: (default, minimum, maximum, doc)``
    (:mod:`bnstudy.spec.arch_options`); the builder receives every one as a keyword
    argument, at its declared default where the protocol sets none, and only values off the
    defaults enter trial ids.
    """
    info = ArchitectureInfo(name, tuple(inputs), ends_in_norm, pooling, tail, conv_init)
    declared = arch_options.checked_options(name, options or {})

    def decorator(builder: ArchitectureBuilder) -> ArchitectureBuilder:
        declare_architecture(info)
        if declared:
            arch_options.declare(name, declared)
        _ARCHITECTURES[name] = builder
        return builder

    return decorator


def register_builder(name: str) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """``@register_builder("cnn")``: the builder of a built-in architecture, whose facts
    :mod:`bnstudy.models.facts` declares (so they are known without importing torch)."""
    architecture_info(name)  # declared there, or KeyError

    def decorator(builder: ArchitectureBuilder) -> ArchitectureBuilder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = builder
        return builder

    return decorator


def register_head(
    name: str, *, options: Sequence[str] | None = None
) -> Callable[[HeadBuilder], HeadBuilder]:
    """``@register_head("name", options=(...))`` on a builder ``(in_features, num_classes,
    **options) -> head``.

    ``options`` names the head options (:data:`bnstudy.spec.head_options.DEFAULTS`) the builder
    takes as keyword arguments; omitted, those already declared in
    :mod:`bnstudy.spec.head_options` (none for a new head). Options a head does not take are set to
    their defaults when a protocol is expanded, so they never create duplicate trials.
    """
    head_options.declare(name, head_options.options_of(name) if options is None else options)

    def decorator(builder: HeadBuilder) -> HeadBuilder:
        if name in _HEADS:
            raise ValueError(f"head {name!r} is already registered")
        _HEADS[name] = builder
        return builder

    return decorator


def _architecture_builder(name: str) -> ArchitectureBuilder:
    """The builder of architecture ``name``, importing a built-in's module on first use."""
    module = architecture_info(name).module  # KeyError for an unknown name
    if name not in _ARCHITECTURES and module is not None:
        importlib.import_module(module)  # registers it (register_builder)
    return lookup(_ARCHITECTURES, "architecture", name)


def build_model(
    architecture: str,
    head: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    init_seed: Callable[[str], int],
    options: Mapping[str, Any] | None = None,
    architecture_options: Mapping[str, Any] | None = None,
) -> Classifier:
    """Build a classifier and initialise every layer from its own seeded generator.

    ``init_seed(qualified_module_name)`` gives the seed of each parameterised module (see
    :func:`bnstudy.models.init.init_weights`), so classifiers that differ only in the head
    share the body's and ``head.fc``'s initial weights exactly. Raises ``KeyError`` for an
    unknown name and ``ValueError`` (see :func:`check_architecture_input`) for an input the
    architecture cannot take. ``options`` holds head options (e.g. a trial's settings); the
    head builder receives those it declared, at their defaults where not given.
    ``architecture_options`` (a protocol's ``architectures:`` entry, e.g. ``{"width": 512}``
    for ``mlp``) are keyword arguments of the architecture builder: every option it declares,
    those not given at their declared defaults (so what is built is what the row records).
    """
    builder = _architecture_builder(architecture)
    check_architecture_input(architecture, input_shape)
    body = builder(tuple(input_shape), **arch_options.resolve(architecture, architecture_options))
    builder_of_head = lookup(_HEADS, "head", head)
    given = options or {}
    kwargs = {o: given.get(o, default) for o, default in head_options.of_head(head).items()}
    head_module = builder_of_head(body.out_features, num_classes, **kwargs)
    if not isinstance(getattr(head_module, "fc", None), nn.Linear):
        raise TypeError(f"head {head!r} has no final nn.Linear named 'fc' (see the head contract)")
    model = Classifier(body, head_module)
    init_weights(model, init_seed, conv_init=architecture_info(architecture).conv_init)
    return model


# Whoever imports this module builds networks: register the built-in heads now (the module
# importing this one, if it is that module, is returned as it is and registers them itself),
# so a second "bn" is refused whatever the import order. A built-in body's module is
# imported on its first build (_architecture_builder): importing them all here would run into
# one that is half imported (resnet, which preact_resnet imports from).
importlib.import_module(BUILTIN_HEADS_MODULE)
