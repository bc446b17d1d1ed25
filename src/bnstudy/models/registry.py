"""Architecture and head registries and the one factory that builds a classifier.

**Body contract.** An architecture builder takes the input shape (without the batch dimension)
and returns a body module with an integer ``out_features``: it maps ``(n, *input_shape)`` to the
feature vector ``(n, out_features)`` the head consumes. Every architecture is registered with
an :class:`ArchitectureInfo` (which inputs it accepts, whether its body ends in a
normalization, how it pools), queryable without building it; a builder given an input of the
wrong rank raises the same one-line ``ValueError`` as :func:`check_architecture_input`. The
built-in bodies all end in a ReLU (then pooling or flattening), so their features are
non-negative and 0 means "inactive".

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

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from bnstudy import head_options
from bnstudy.models.init import CONV_INITS, ConvInit, init_weights
from bnstudy.suggest import did_you_mean

ArchitectureBuilder = Callable[[tuple[int, ...]], nn.Module]
HeadBuilder = Callable[..., nn.Module]

InputKind = Literal["image", "signal", "vector", "any"]
Pooling = Literal["global_avg", "none"]

#: What each input kind means; ``any`` bodies flatten whatever they are given.
INPUT_KINDS: dict[str, str] = {
    "image": "image (channels, height, width)",
    "signal": "signal (channels, length)",
    "vector": "vector (features,)",
    "any": "any shape (flattened)",
}
_RANKS = {"image": 3, "signal": 2, "vector": 1}  # as bnstudy.data's kinds of input
POOLINGS: tuple[Pooling, ...] = ("global_avg", "none")


@dataclasses.dataclass(frozen=True)
class ArchitectureInfo:
    """What the analysis and the protocol validator may ask about an architecture.

    ``inputs``: the input kinds it accepts (keys of :data:`INPUT_KINDS`). ``ends_in_norm``:
    whether the body's last layer with parameters is a normalization layer, followed only by
    parameter-free operations (ReLU, pooling, and in ``resnet20``/``resnet32`` the residual
    addition), as SCIENCE.md hypothesis 2 asks. ``pooling``: ``"global_avg"`` (features are
    channel means) or ``"none"`` (no pooling: flattened feature maps, or an MLP's hidden
    layer). ``tail``: the body's last operations in words, e.g. ``"conv -> BN -> ReLU -> GAP"``,
    for reports. ``conv_init``: how its convolutions are initialised (see
    :mod:`bnstudy.models.init`).
    """

    name: str
    inputs: tuple[InputKind, ...]
    ends_in_norm: bool
    pooling: Pooling
    tail: str
    conv_init: ConvInit = "uniform"

    def accepts(self, input_shape: Sequence[int]) -> bool:
        """Whether an input of this shape (no batch dimension) is of a kind it accepts."""
        return any(_RANKS.get(kind, len(input_shape)) == len(input_shape) for kind in self.inputs)


_ARCHITECTURES: dict[str, ArchitectureBuilder] = {}
_ARCHITECTURE_INFO: dict[str, ArchitectureInfo] = {}
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
) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """``@register_architecture("name", inputs=..., ends_in_norm=..., pooling=..., tail=...)``.

    Decorates a builder ``(input_shape) -> body``; see :class:`ArchitectureInfo` for the fields.
    """
    unknown = [kind for kind in inputs if kind not in INPUT_KINDS]
    if not inputs or unknown:
        raise ValueError(f"architecture {name!r}: inputs must be among {', '.join(INPUT_KINDS)}")
    if pooling not in POOLINGS:
        raise ValueError(f"architecture {name!r}: pooling must be one of {', '.join(POOLINGS)}")
    if conv_init not in CONV_INITS:
        raise ValueError(f"architecture {name!r}: conv_init must be one of {CONV_INITS}")
    info = ArchitectureInfo(name, tuple(inputs), ends_in_norm, pooling, tail, conv_init)

    def decorator(builder: ArchitectureBuilder) -> ArchitectureBuilder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = builder
        _ARCHITECTURE_INFO[name] = info
        return builder

    return decorator


def register_head(
    name: str, *, options: Sequence[str] | None = None
) -> Callable[[HeadBuilder], HeadBuilder]:
    """``@register_head("name", options=(...))`` on a builder ``(in_features, num_classes,
    **options) -> head``.

    ``options`` names the head options (:data:`bnstudy.head_options.DEFAULTS`) the builder
    takes as keyword arguments; omitted, those already declared in
    :mod:`bnstudy.head_options` (none for a new head). Options a head does not take are set to
    their defaults when a protocol is expanded, so they never create duplicate trials.
    """
    head_options.declare(name, head_options.options_of(name) if options is None else options)

    def decorator(builder: HeadBuilder) -> HeadBuilder:
        if name in _HEADS:
            raise ValueError(f"head {name!r} is already registered")
        _HEADS[name] = builder
        return builder

    return decorator


def architecture_names() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_ARCHITECTURES)


def head_names() -> list[str]:
    """Registered head names, sorted."""
    return sorted(_HEADS)


def _lookup(table: dict, kind: str, name: str):
    if name not in table:
        hint = did_you_mean(name, table, n=3)
        raise KeyError(f"unknown {kind} {name!r}{hint}; known: {', '.join(sorted(table))}")
    return table[name]


def architecture_info(name: str) -> ArchitectureInfo:
    """The registered facts about architecture ``name`` (``KeyError`` if unknown)."""
    return _lookup(_ARCHITECTURE_INFO, "architecture", name)


def shape_kind(input_shape: Sequence[int]) -> str:
    """The kind of an input shape: ``"image"``, ``"signal"``, ``"vector"`` or ``"rank-N input"``."""
    for kind, rank in _RANKS.items():
        if len(input_shape) == rank:
            return kind
    return f"rank-{len(input_shape)} input"


def check_architecture_input(name: str, input_shape: Sequence[int]) -> None:
    """Raise a one-line ``ValueError`` if architecture ``name`` cannot take ``input_shape``.

    ``input_shape`` excludes the batch dimension. The message names the architecture, the
    shape (and its kind) and the input kinds the architecture accepts, e.g. ``architecture
    'cnn1d' cannot take input shape (3, 16, 16) (image); it accepts: signal (channels,
    length)``. Unknown names raise ``KeyError`` as in :func:`build_model`.
    """
    info = architecture_info(name)
    shape = tuple(int(size) for size in input_shape)
    if info.accepts(shape) and all(size > 0 for size in shape):
        return
    allowed = ", ".join(INPUT_KINDS[kind] for kind in info.inputs)
    raise ValueError(
        f"architecture {name!r} cannot take input shape {shape} ({shape_kind(shape)}); "
        f"it accepts: {allowed}"
    )


def compatible_architectures(input_shape: Sequence[int]) -> list[str]:
    """Registered architectures that accept inputs of ``input_shape``, sorted."""
    return [name for name in architecture_names() if _ARCHITECTURE_INFO[name].accepts(input_shape)]


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
    for ``mlp``) are keyword arguments of the architecture builder.
    """
    builder = _lookup(_ARCHITECTURES, "architecture", architecture)
    check_architecture_input(architecture, input_shape)
    body = builder(tuple(input_shape), **(architecture_options or {}))
    builder_of_head = _lookup(_HEADS, "head", head)
    given = options or {}
    kwargs = {o: given.get(o, default) for o, default in head_options.of_head(head).items()}
    head_module = builder_of_head(body.out_features, num_classes, **kwargs)
    if not isinstance(getattr(head_module, "fc", None), nn.Linear):
        raise TypeError(f"head {head!r} has no final nn.Linear named 'fc' (see the head contract)")
    model = Classifier(body, head_module)
    init_weights(model, init_seed, conv_init=architecture_info(architecture).conv_init)
    return model
