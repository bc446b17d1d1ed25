"""Which trials seed packing can train (torch-free, so ``bnstudy plan`` can price packs).

A trial packs when its body and head are built only of layers that
:mod:`bnstudy.models.packed` packs (conv, BN, linear, LayerNorm, ReLU, pooling, flatten,
option-A shortcuts), chained or (residual blocks) summed, and nothing about it needs a run of
its own. In float64 each packed body equals its K models (tests/test_packing_models.py,
tests/test_packing_deep.py), and a pack of each family its trials run alone
(tests/test_packing.py, tests/test_packing_deep.py).
"""

from __future__ import annotations

from bnstudy.spec.trial import Trial
from bnstudy.training.optimizers import BUILTIN as BUILTIN_OPTIMIZERS

#: Every built-in architecture (a plugin's network is not vouched for: it trains alone).
PACKABLE_ARCHITECTURES = (
    "cnn",
    "cnn1d",
    "cnn_flatten",
    "mlp",
    "linear",
    "mnist1d_mlp",
    "mnist1d_cnn",
    "resnet20",
    "resnet32",
    "preact_resnet20",
    "vgg11",
    "vgg11_bn",
)
#: Every built-in head: ``post(fc(pre(x)))`` of linear, BN, ReLU and LayerNorm layers.
PACKABLE_HEADS = (
    "bn",
    "bn_noaffine",
    "bnneck",
    "hidden",
    "hidden_bn_relu",
    "hidden_relu_bn",
    "ln",
    "logit_bn",
    "plain",
)


def packable(trial: Trial) -> bool:
    """Whether ``trial`` can train in a pack: its architecture and head are supported.

    Every other setting (schedule, sampler, loss, steps, label smoothing, clipping, dataset,
    the built-in optimisers) is supported, except a pre-trained body (``pretrain``): packs
    build their copies from the seed's random streams only, head dropout (a pack cannot draw
    each copy's dropout masks as its separate run would; ``hidden_width`` and
    ``bn_momentum`` pack) and an optimiser a plugin registered (it need not step each
    element on its own, see :mod:`bnstudy.training.optimizers`). Unsupported trials run
    unpacked with ``run_trial``.
    """
    return (
        trial.architecture in PACKABLE_ARCHITECTURES
        and trial.head in PACKABLE_HEADS
        and not trial.pretrain_stage
        and trial.dropout == 0
        and trial.optimizer in BUILTIN_OPTIMIZERS
    )
