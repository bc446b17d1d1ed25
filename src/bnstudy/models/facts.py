"""What the networks are, without building them: names and facts, importable without torch.

The parent process of a run only validates, schedules and stores; it never builds a network.
Keeping torch out of it saves about a second on every command (``validate``, ``plan``, and a
run with worker processes), so the facts the parent needs live here, and the builders (in the
torch modules of :mod:`bnstudy.models`) are imported by whoever builds a network.

Each built-in architecture is declared here with its :class:`ArchitectureInfo` and the module
that registers its builder (:func:`bnstudy.models.registry.register_builder`); a user's
architecture is declared by :func:`bnstudy.models.registry.register_architecture`, with its
builder. Heads are named by :mod:`bnstudy.spec.head_options`, which knows the options each takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from bnstudy.spec import head_options
from bnstudy.suggest import did_you_mean

InputKind = Literal["image", "signal", "vector", "any"]
Pooling = Literal["global_avg", "none"]
ConvInit = Literal["uniform", "kaiming_normal"]

#: What each input kind means; ``any`` bodies flatten whatever they are given.
INPUT_KINDS: dict[str, str] = {
    "image": "image (channels, height, width)",
    "signal": "signal (channels, length)",
    "vector": "vector (features,)",
    "any": "any shape (flattened)",
}
_RANKS = {"image": 3, "signal": 2, "vector": 1}  # as bnstudy.data's kinds of input
POOLINGS: tuple[Pooling, ...] = ("global_avg", "none")
#: How convolutions are initialised (see :mod:`bnstudy.models.init`).
CONV_INITS: tuple[ConvInit, ...] = ("uniform", "kaiming_normal")


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
    :mod:`bnstudy.models.init`). ``module``: for a built-in, the module that registers its
    builder (imported on first build); None for one registered with its builder.
    """

    name: str
    inputs: tuple[InputKind, ...]
    ends_in_norm: bool
    pooling: Pooling
    tail: str
    conv_init: ConvInit = "uniform"
    module: str | None = None

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.inputs if kind not in INPUT_KINDS]
        if not self.inputs or unknown:
            raise ValueError(
                f"architecture {self.name!r}: inputs must be among {', '.join(INPUT_KINDS)}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"architecture {self.name!r}: pooling must be one of {', '.join(POOLINGS)}"
            )
        if self.conv_init not in CONV_INITS:
            raise ValueError(f"architecture {self.name!r}: conv_init must be one of {CONV_INITS}")

    def accepts(self, input_shape: Sequence[int]) -> bool:
        """Whether an input of this shape (no batch dimension) is of a kind it accepts."""
        return any(_RANKS.get(kind, len(input_shape)) == len(input_shape) for kind in self.inputs)


def _builtin(name: str, module: str, **facts) -> tuple[str, ArchitectureInfo]:
    return name, ArchitectureInfo(name, module=f"bnstudy.models.{module}", **facts)


_RESNET = dict(
    inputs=("image",),
    ends_in_norm=True,
    pooling="global_avg",
    tail="conv -> BN -> (+ shortcut) -> ReLU -> GAP",
    conv_init="kaiming_normal",
)

_ARCHITECTURES: dict[str, ArchitectureInfo] = dict(
    [
        _builtin(
            "mlp", "mlp", inputs=("any",), ends_in_norm=False, pooling="none",
            tail="linear -> ReLU (no normalization anywhere)",
        ),
        _builtin(
            "cnn", "cnn", inputs=("image",), ends_in_norm=True, pooling="global_avg",
            tail="conv -> BN -> ReLU -> GAP",
        ),
        _builtin(
            "cnn1d", "cnn1d", inputs=("signal",), ends_in_norm=True, pooling="global_avg",
            tail="conv1d -> BN -> ReLU -> GAP",
        ),
        _builtin(
            "cnn_flatten", "cnn_flatten", inputs=("image",), ends_in_norm=True, pooling="none",
            tail="conv -> BN -> ReLU -> max-pool -> flatten (no global pooling)",
        ),
        _builtin("resnet20", "resnet", **_RESNET),
        _builtin("resnet32", "resnet", **_RESNET),
        _builtin(
            "preact_resnet20", "preact_resnet", inputs=("image",), ends_in_norm=True,
            pooling="global_avg", tail="(+ shortcut) -> BN -> ReLU -> GAP",
            conv_init="kaiming_normal",
        ),
        _builtin(
            "vgg11", "vgg", inputs=("image",), ends_in_norm=False, pooling="global_avg",
            tail="conv -> ReLU -> max-pool -> GAP (no normalization anywhere)",
            conv_init="kaiming_normal",
        ),
        _builtin(
            "vgg11_bn", "vgg", inputs=("image",), ends_in_norm=True, pooling="global_avg",
            tail="conv -> BN -> ReLU -> max-pool -> GAP", conv_init="kaiming_normal",
        ),
        # The MNIST-1D paper's networks (Greydanus & Kobak): body + plain head = the paper's.
        _builtin(
            "linear", "mnist1d_paper", inputs=("any",), ends_in_norm=False, pooling="none",
            tail="flatten (no layers: with the plain head, logistic regression)",
        ),
        _builtin(
            "mnist1d_mlp", "mnist1d_paper", inputs=("any",), ends_in_norm=False, pooling="none",
            tail="linear -> ReLU -> (+ linear -> ReLU) residual (no normalization anywhere)",
        ),
        _builtin(
            "mnist1d_cnn", "mnist1d_paper", inputs=("signal",), ends_in_norm=False,
            pooling="none", tail="conv1d (stride 2) -> ReLU -> flatten (no normalization)",
        ),
    ]
)  # fmt: skip


def declare_architecture(info: ArchitectureInfo) -> None:
    """Add an architecture (a user's; its builder is registered with it)."""
    if info.name in _ARCHITECTURES:
        raise ValueError(f"architecture {info.name!r} is already registered")
    _ARCHITECTURES[info.name] = info


def architecture_names() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_ARCHITECTURES)


def head_names() -> list[str]:
    """Registered head names, sorted (the built-in heads and every head registered since)."""
    return head_options.heads()


def lookup(table: dict, kind: str, name: str):
    """``table[name]``, or a ``KeyError`` naming the closest known names."""
    if name not in table:
        hint = did_you_mean(name, table, n=3)
        raise KeyError(f"unknown {kind} {name!r}{hint}; known: {', '.join(sorted(table))}")
    return table[name]


def architecture_info(name: str) -> ArchitectureInfo:
    """The registered facts about architecture ``name`` (``KeyError`` if unknown)."""
    return lookup(_ARCHITECTURES, "architecture", name)


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
    length)``. Unknown names raise ``KeyError`` as in ``build_model``.
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
    return [name for name in architecture_names() if _ARCHITECTURES[name].accepts(input_shape)]
