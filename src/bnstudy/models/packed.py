"""K copies of one classifier as one module (seed packing), and back.

:func:`pack_models` turns K classifiers of the same architecture and head (the same module
tree, different weights) into one module that trains them side by side, each copy on its
own batch. Small models, and the CIFAR ResNets and VGG-11 at their usual batch sizes, leave
a GPU mostly idle; packed, K copies cost far less than K models one at a time.

**Layout.** A packed activation stacks the copies along dimension 1, copy-major:
``(n, K * C, ...)`` where channels ``k*C .. (k+1)*C - 1`` belong to copy ``k`` (and row ``i``
of copy ``k`` is example ``i`` of copy ``k``'s own batch). Every layer then acts on each copy
alone:

- ``Conv1d``/``Conv2d`` become grouped convolutions with ``groups = K * groups``;
- ``BatchNorm1d``/``BatchNorm2d`` become one BN over ``K * C`` channels: BN's statistics are
  per channel, so each copy keeps its own batch statistics and running statistics;
- ``Linear`` becomes :class:`PackedLinear` (one batched matmul), ``LayerNorm``
  :class:`PackedLayerNorm`;
- a ResNet's option-A shortcut (subsample, append zero channels) becomes
  :class:`~bnstudy.models.packed_shortcut.PackedShortcutA`, which pads each copy's block;
- ReLU, max/average pooling and ``Flatten`` act per channel, or (``Flatten``) keep each
  copy's block contiguous, and are kept as they are; so are the containers (``Sequential``,
  the bodies, the heads, ``Classifier``, the residual blocks), whose ``forward`` only chains
  their children and (a residual block) adds two activations of the same packed layout.

No operation mixes copies, so a copy whose loss turns NaN cannot touch the others.

**State.** Every parameter and buffer of the packed module has the copies' names and is
copy-major too: ``tensor.view(K, -1)[k]`` is copy ``k``'s tensor, flattened (a conv weight
``(K * C_out, C_in, kh, kw)``, a BN weight ``(K * C,)``, a linear weight ``(K, out, in)``).
The one exception is BN's ``num_batches_tracked``, a scalar all copies share (they take the
same number of steps). :func:`copy_view` gives copy ``k``'s view of any such tensor, and
:func:`load_copy` writes copy ``k`` back into an ordinary model.

Any other layer type raises ``TypeError``: packing is exact only for layers known to act per
copy, so a new layer needs a packed counterpart here (and the equivalence test) first.
Containers are not read: that a body's ``forward`` only chains its children and adds
their outputs (no reshape across channels) is vouched for by
:data:`bnstudy.training.packable.PACKABLE_ARCHITECTURES` and its equivalence tests, not here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.models.packed_shortcut import PackedShortcutA
from bnstudy.models.resnet import ShortcutA

#: Modules with no parameters that act per channel (or, ``Flatten``, keep channels
#: copy-major), so they work unchanged on a packed activation.
_CHANNEL_LOCAL = (
    nn.ReLU,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
_CONVS = (nn.Conv1d, nn.Conv2d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class PackedLinear(nn.Module):
    """K linear layers: ``(n, K * in_features) -> (n, K * out_features)``, one ``bmm``.

    ``weight``: ``(K, out_features, in_features)``; ``bias``: ``(K, out_features)`` or None.
    """

    def __init__(self, copies: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.copies, self.in_features, self.out_features = copies, in_features, out_features
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(copies, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = x.reshape(n, self.copies, self.in_features).transpose(0, 1)  # (K, n, in)
        weight = self.weight.transpose(1, 2)
        if self.bias is None:
            y = torch.bmm(x, weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), x, weight)
        return y.transpose(0, 1).reshape(n, self.copies * self.out_features)


class PackedLayerNorm(nn.Module):
    """K LayerNorms over the last ``d`` features: ``(n, K * d) -> (n, K * d)``.

    ``weight``, ``bias``: ``(K, d)`` (None without ``elementwise_affine`` / ``bias``).
    """

    def __init__(self, copies: int, d: int, eps: float, affine: bool, bias: bool):
        super().__init__()
        self.copies, self.d, self.eps = copies, d, eps
        self.weight = nn.Parameter(torch.empty(copies, d)) if affine else None
        self.bias = nn.Parameter(torch.empty(copies, d)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = F.layer_norm(x.reshape(n, self.copies, self.d), (self.d,), eps=self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(n, self.copies * self.d)


def _packed_leaf(module: nn.Module, copies: int, where: str) -> nn.Module:
    """The packed counterpart of one leaf module (its state is filled in later)."""
    if isinstance(module, _CONVS):
        return type(module)(
            copies * module.in_channels,
            copies * module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=copies * module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, _BATCH_NORMS):
        return type(module)(
            copies * module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if isinstance(module, nn.Linear):
        return PackedLinear(
            copies, module.in_features, module.out_features, bias=module.bias is not None
        )
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return PackedLayerNorm(
            copies,
            module.normalized_shape[0],
            module.eps,
            affine=module.elementwise_affine,
            bias=getattr(module, "bias", None) is not None,
        )
    if isinstance(module, ShortcutA):
        return PackedShortcutA.of(module, copies)
    if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
        return copy.deepcopy(module)
    if isinstance(module, _CHANNEL_LOCAL) or (isinstance(module, nn.Sequential) and not module):
        return copy.deepcopy(module)  # an empty Sequential is the identity
    raise TypeError(
        f"pack_models: no packed counterpart for {type(module).__name__} at {where!r}; "
        "add one to bnstudy.models.packed"
    )


def _replace_leaves(module: nn.Module, copies: int, prefix: str = "") -> None:
    for name, child in list(module.named_children()):
        where = f"{prefix}.{name}" if prefix else name
        if any(True for _ in child.children()):
            if any(True for _ in child.parameters(recurse=False)):
                raise TypeError(f"pack_models: {where!r} owns parameters and has children")
            _replace_leaves(child, copies, where)
        else:
            setattr(module, name, _packed_leaf(child, copies, where))


@torch.no_grad()
def pack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One module holding ``models`` (K >= 1, the same module tree) as K packed copies.

    The result has the first model's structure and module names, with every leaf replaced
    by its packed counterpart (see the module docstring), on the first model's device and
    dtype, in train mode. Each parameter keeps its ``requires_grad`` (BNNeck's frozen shift).
    Input ``(n, K * C, ...)``, output ``(n, K * num_classes)``; see :func:`pack_inputs`.
    """
    if not models:
        raise ValueError("pack_models: no models given")
    names = [name for name, _ in models[0].named_modules()]
    for other in models[1:]:
        if [name for name, _ in other.named_modules()] != names:
            raise ValueError("pack_models: the models differ in structure")
    copies = len(models)
    packed = copy.deepcopy(models[0])
    _replace_leaves(packed, copies)
    reference = next(models[0].parameters())
    packed.to(device=reference.device, dtype=reference.dtype)
    states = [model.state_dict() for model in models]
    for name, tensor in packed.state_dict().items():
        values = [state[name] for state in states]
        if tensor.dim() == 0:  # num_batches_tracked: one counter for all copies
            if any(int(v) != int(values[0]) for v in values):
                raise ValueError(f"pack_models: the copies' {name} differ")
            tensor.copy_(values[0])
        else:
            tensor.copy_(torch.stack([v.reshape(-1) for v in values]).view_as(tensor))
    own = dict(models[0].named_parameters())
    for name, parameter in packed.named_parameters():
        parameter.requires_grad_(own[name].requires_grad)
    return packed.train(models[0].training)


def copy_view(tensor: torch.Tensor, copies: int, k: int) -> torch.Tensor:
    """Copy ``k``'s part of a packed parameter, buffer or optimizer state, flattened (a view).

    A 0-d tensor (a shared counter) is returned whole.
    """
    return tensor if tensor.dim() == 0 else tensor.view(copies, -1)[k]


@torch.no_grad()
def load_copy(packed: nn.Module, k: int, model: nn.Module) -> nn.Module:
    """Write copy ``k`` of ``packed`` (parameters and buffers) into ``model``; return it.

    ``model`` is an ordinary model of the tree that was packed (e.g. one of the models given
    to :func:`pack_models`); it ends on ``packed``'s device.
    """
    model.to(next(packed.parameters()).device)
    state = packed.state_dict()
    for name, tensor in model.state_dict().items():
        copies = max(1, state[name].numel() // max(1, tensor.numel()))
        tensor.copy_(copy_view(state[name], copies, k).view_as(tensor))
    return model


def pack_inputs(x: torch.Tensor) -> torch.Tensor:
    """Per-copy inputs ``(n, K, C, ...)`` -> the packed input ``(n, K * C, ...)``.

    Vectors ``(n, K, d)`` become ``(n, K * d)``.
    """
    n, copies = x.shape[:2]
    return x.reshape(n, copies * x.shape[2], *x.shape[3:])
