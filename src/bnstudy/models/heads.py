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
The hidden layer keeps the feature width, so ``head.fc`` has the same shape in every head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from bnstudy.models.registry import register_head


class Head(nn.Module):
    """features (n, d) -> logits (n, num_classes)."""

    def __init__(
        self,
        fc: nn.Linear,
        pre: Sequence[tuple[str, nn.Module]] = (),
        post: nn.Module | None = None,
    ):
        super().__init__()
        self.pre = nn.Sequential(OrderedDict(pre))
        self.fc = fc
        self.post = post if post is not None else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.post(self.fc(self.pre(features)))


def hidden_relu(head: nn.Module) -> nn.ReLU | None:
    """The last ``nn.ReLU`` registered in ``head`` (the hidden units feeding ``fc``), or None.

    Works on any head that follows the contract, not only :class:`Head`: it searches
    ``head.modules()`` in registration order. In ``hidden`` and ``hidden_bn_relu`` its output is
    the input of ``fc``; in ``hidden_relu_bn`` a BN sits between them.
    """
    relus = [module for module in head.modules() if isinstance(module, nn.ReLU)]
    return relus[-1] if relus else None


def _bnneck_bn(d: int) -> nn.BatchNorm1d:
    """BN whose shift stays at zero (BNNeck, Luo et al. 2019): the bias is not trained."""
    bn = nn.BatchNorm1d(d)
    bn.bias.requires_grad_(False)
    return bn


@register_head("plain")
def plain(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes))


@register_head("bn")
def bn(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes), pre=[("bn", nn.BatchNorm1d(d))])


@register_head("bn_noaffine")
def bn_noaffine(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes), pre=[("bn", nn.BatchNorm1d(d, affine=False))])


@register_head("bnneck")
def bnneck(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes, bias=False), pre=[("bn", _bnneck_bn(d))])


@register_head("hidden")
def hidden(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes), pre=[("hidden", nn.Linear(d, d)), ("relu", nn.ReLU())])


@register_head("hidden_bn_relu")
def hidden_bn_relu(d: int, num_classes: int) -> Head:
    pre = [("hidden", nn.Linear(d, d)), ("bn", nn.BatchNorm1d(d)), ("relu", nn.ReLU())]
    return Head(nn.Linear(d, num_classes), pre=pre)


@register_head("hidden_relu_bn")
def hidden_relu_bn(d: int, num_classes: int) -> Head:
    pre = [("hidden", nn.Linear(d, d)), ("relu", nn.ReLU()), ("bn", nn.BatchNorm1d(d))]
    return Head(nn.Linear(d, num_classes), pre=pre)


@register_head("logit_bn")
def logit_bn(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes), post=nn.BatchNorm1d(num_classes))


@register_head("ln")
def ln(d: int, num_classes: int) -> Head:
    return Head(nn.Linear(d, num_classes), pre=[("ln", nn.LayerNorm(d))])
