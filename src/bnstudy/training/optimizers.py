"""Optimisers by name: the ``optimizer`` factor's levels, ``sgd`` and ``adamw`` and any a
plugin registers.

A builder takes the parameters to optimise, the trial's ``lr`` and ``weight_decay`` and
returns a ``torch.optim.Optimizer``; the trial's learning-rate schedule (warm-up, cosine,
steps) then scales every parameter group's ``lr`` by the same factor, whatever the
optimiser. A plugin registers one by name::

    import torch
    from bnstudy.training.optimizers import register_optimizer

    @register_optimizer("adam_amsgrad")
    def adam_amsgrad(params, lr, weight_decay):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, amsgrad=True)

and a protocol that names the plugin may list ``optimizer: [sgd, adam_amsgrad]``. Importing
this module costs no torch (the parent checks a protocol's names with it); the built-in
builders import torch when they build.

Seed packing (several seeds trained as one model) runs the built-in optimisers only: both
update each parameter element by element, so a packed copy steps exactly as it would alone,
which a registered optimiser need not do (a per-tensor trust ratio would mix the copies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bnstudy.suggest import did_you_mean

if TYPE_CHECKING:
    import torch

#: ``(params, lr, weight_decay) -> torch.optim.Optimizer``.
OptimizerBuilder = Callable[..., "torch.optim.Optimizer"]

_BUILDERS: dict[str, OptimizerBuilder] = {}


def register_optimizer(name: str, builder: OptimizerBuilder | None = None) -> Any:
    """Register ``builder`` ``(params, lr, weight_decay) -> torch.optim.Optimizer`` as
    ``name``: ``register_optimizer("name", builder)``, or ``@register_optimizer("name")`` on
    the builder. A name registered twice is refused."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"optimizer name {name!r}: expected letters, digits and '_'")

    def decorator(builder: OptimizerBuilder) -> OptimizerBuilder:
        if name in _BUILDERS:
            raise ValueError(f"optimizer {name!r} is already registered")
        if not callable(builder):
            raise TypeError(f"optimizer {name!r}: the builder must be callable")
        _BUILDERS[name] = builder
        return builder

    return decorator if builder is None else decorator(builder)


def optimizer_names() -> list[str]:
    """Every registered optimiser, sorted (the levels the ``optimizer`` factor takes)."""
    return sorted(_BUILDERS)


def build_optimizer(
    name: str, params: Iterable[Any], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params``; ``KeyError`` naming the close matches for an
    unknown name."""
    if name not in _BUILDERS:
        hint = did_you_mean(name, _BUILDERS)
        raise KeyError(f"unknown optimizer {name!r}{hint}; known: {', '.join(optimizer_names())}")
    return _BUILDERS[name](list(params), lr=lr, weight_decay=weight_decay)


@register_optimizer("sgd")
def sgd(params: list[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9 (the first release's optimiser)."""
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


@register_optimizer("adamw")
def adamw(params: list[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW at PyTorch's defaults (betas 0.9, 0.999), decoupled weight decay."""
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


#: The optimisers bnstudy defines itself (those seed packing runs; see the module).
BUILTIN = ("sgd", "adamw")
