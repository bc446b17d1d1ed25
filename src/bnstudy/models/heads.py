"""The head variants (the treatment of SCIENCE.md), placed after the body's pooled features.

**The contract** (what the rest of bnstudy may assume of any head, built-in or registered
elsewhere): an ``nn.Module`` mapping features ``(n, in_features)`` to logits
``(n, num_classes)`` whose final linear layer is the attribute ``fc`` (an ``nn.Linear``; its
bias may be ``None``, as in ``bnneck``). Nothing else: no ``pre``/``post`` attributes, no
``nn.Sequential`` structure. Code looking for the hidden ReLU units feeding ``fc`` calls
:func:`hidden_relu`, which works on any module; code looking for the input of the final FC
hooks ``head.fc`` (``register_forward_pre_hook``).

**The built-in heads** are all :class:`Head`, ``post(fc(pre(features)))``. Layers before the
final FC live in ``pre`` with descriptive names (``pre.hidden``, ``pre.bn``, ...), the final FC
is always ``fc`` and a norm on the logits is ``post``. Shared names mean shared initial weights
across heads: ``head.fc`` in every head, ``head.pre.hidden`` in the three hidden-layer heads.
The hidden layer keeps the feature width by default, so ``head.fc`` has the same shape in every
head; with ``hidden_width`` set, ``head.fc`` of a hidden-layer head has another shape and its
initial weights are its own (a new shape cannot share them).

**Options** (:mod:`bnstudy.spec.head_options`) are keyword arguments of the builders:
``hidden_width`` (hidden-layer heads), ``bn_momentum`` (heads with a BatchNorm), ``dropout``
on the input of ``fc`` (every head) and ``dropout_at`` (heads with a norm right before ``fc``:
``bn``, ``bn_noaffine``, ``bnneck``, ``hidden_relu_bn``, ``ln``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from bnstudy.models.registry import register_head
from bnstudy.spec.head_options import BUILTIN, DROPOUT_PLACES


class Head(nn.Module):
    """features (n, d) -> logits (n, num_classes): ``post(fc(drop(pre(features))))``.

    ``drop`` is a dropout right before ``fc`` (identity when none, or when the dropout sits
    before a norm inside ``pre``, so that ``pre`` still ends in the norm the BN fold checks).
    """

    def __init__(
        self,
        fc: nn.Linear,
        pre: Sequence[tuple[str, nn.Module]] = (),
        post: nn.Module | None = None,
        drop: nn.Module | None = None,
    ):
        super().__init__()
        self.pre = nn.Sequential(OrderedDict(pre))
        self.drop = drop if drop is not None else nn.Identity()
        self.fc = fc
        self.post = post if post is not None else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.post(self.fc(self.drop(self.pre(features))))


def _assemble(
    fc: nn.Linear,
    layers: Sequence[tuple[str, nn.Module]] = (),
    norm: tuple[str, nn.Module] | None = None,
    *,
    dropout: float = 0.0,
    dropout_at: str = "before_norm",
    post: nn.Module | None = None,
) -> Head:
    """A :class:`Head` of ``layers``, then ``norm``, then ``fc``, with dropout on the FC input.

    With a norm right before ``fc``, ``dropout_at`` puts the dropout before the norm (the norm
    sees dropped units) or after it; without one there is only one place for it. Dropout has
    no parameters, so it shifts no layer's name or initial weights.
    """
    if dropout_at not in DROPOUT_PLACES:
        raise ValueError(
            f"dropout_at must be one of {', '.join(DROPOUT_PLACES)}; got {dropout_at!r}"
        )
    pre, drop = list(layers), None
    if dropout > 0 and norm is not None and dropout_at == "before_norm":
        pre.append(("dropout", nn.Dropout(dropout)))
    elif dropout > 0:
        drop = nn.Dropout(dropout)
    if norm is not None:
        pre.append(norm)
    return Head(fc, pre=pre, post=post, drop=drop)


def hidden_relu(head: nn.Module) -> nn.ReLU | None:
    """The last ``nn.ReLU`` registered in ``head`` (the hidden units feeding ``fc``), or None.

    Works on any head that follows the contract, not only :class:`Head`: it searches
    ``head.modules()`` in registration order. In ``hidden`` and ``hidden_bn_relu`` its output is
    the input of ``fc``; in ``hidden_relu_bn`` a BN sits between them.
    """
    relus = [module for module in head.modules() if isinstance(module, nn.ReLU)]
    return relus[-1] if relus else None


def _bnneck_bn(d: int, momentum: float) -> nn.BatchNorm1d:
    """BN whose shift stays at zero (BNNeck, Luo et al. 2019): the bias is not trained."""
    bn = nn.BatchNorm1d(d, momentum=momentum)
    bn.bias.requires_grad_(False)
    return bn


def _width(d: int, hidden_width: int) -> int:
    """The hidden layer's width: the feature width unless ``hidden_width`` sets one."""
    return hidden_width or d


# The options each head takes are declared in bnstudy.spec.head_options (torch-free, so that a
# protocol expands without torch); register_head checks the builders agree with it.


@register_head("plain", options=BUILTIN["plain"])
def plain(d: int, num_classes: int, *, dropout: float = 0.0) -> Head:
    return _assemble(nn.Linear(d, num_classes), dropout=dropout)


@register_head("bn", options=BUILTIN["bn"])
def bn(d: int, num_classes: int, *, dropout=0.0, dropout_at="before_norm", bn_momentum=0.1) -> Head:
    norm = ("bn", nn.BatchNorm1d(d, momentum=bn_momentum))
    return _assemble(nn.Linear(d, num_classes), norm=norm, dropout=dropout, dropout_at=dropout_at)


@register_head("bn_noaffine", options=BUILTIN["bn_noaffine"])
def bn_noaffine(
    d: int, num_classes: int, *, dropout=0.0, dropout_at="before_norm", bn_momentum=0.1
) -> Head:
    norm = ("bn", nn.BatchNorm1d(d, affine=False, momentum=bn_momentum))
    return _assemble(nn.Linear(d, num_classes), norm=norm, dropout=dropout, dropout_at=dropout_at)


@register_head("bnneck", options=BUILTIN["bnneck"])
def bnneck(
    d: int, num_classes: int, *, dropout=0.0, dropout_at="before_norm", bn_momentum=0.1
) -> Head:
    norm = ("bn", _bnneck_bn(d, bn_momentum))
    fc = nn.Linear(d, num_classes, bias=False)
    return _assemble(fc, norm=norm, dropout=dropout, dropout_at=dropout_at)


@register_head("hidden", options=BUILTIN["hidden"])
def hidden(d: int, num_classes: int, *, hidden_width=0, dropout=0.0) -> Head:
    w = _width(d, hidden_width)
    layers = [("hidden", nn.Linear(d, w)), ("relu", nn.ReLU())]
    return _assemble(nn.Linear(w, num_classes), layers, dropout=dropout)


@register_head("hidden_bn_relu", options=BUILTIN["hidden_bn_relu"])
def hidden_bn_relu(
    d: int, num_classes: int, *, hidden_width=0, dropout=0.0, bn_momentum=0.1
) -> Head:
    w = _width(d, hidden_width)
    layers = [
        ("hidden", nn.Linear(d, w)),
        ("bn", nn.BatchNorm1d(w, momentum=bn_momentum)),
        ("relu", nn.ReLU()),
    ]
    return _assemble(nn.Linear(w, num_classes), layers, dropout=dropout)


@register_head("hidden_relu_bn", options=BUILTIN["hidden_relu_bn"])
def hidden_relu_bn(
    d: int,
    num_classes: int,
    *,
    hidden_width=0,
    dropout=0.0,
    dropout_at="before_norm",
    bn_momentum=0.1,
) -> Head:
    w = _width(d, hidden_width)
    layers = [("hidden", nn.Linear(d, w)), ("relu", nn.ReLU())]
    norm = ("bn", nn.BatchNorm1d(w, momentum=bn_momentum))
    fc = nn.Linear(w, num_classes)
    return _assemble(fc, layers, norm, dropout=dropout, dropout_at=dropout_at)


@register_head("logit_bn", options=BUILTIN["logit_bn"])
def logit_bn(d: int, num_classes: int, *, dropout=0.0, bn_momentum=0.1) -> Head:
    post = nn.BatchNorm1d(num_classes, momentum=bn_momentum)
    return _assemble(nn.Linear(d, num_classes), dropout=dropout, post=post)


@register_head("ln", options=BUILTIN["ln"])
def ln(d: int, num_classes: int, *, dropout=0.0, dropout_at="before_norm") -> Head:
    norm = ("ln", nn.LayerNorm(d))
    return _assemble(nn.Linear(d, num_classes), norm=norm, dropout=dropout, dropout_at=dropout_at)
