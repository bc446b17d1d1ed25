"""The README's "Ask your own question" protocols stay runnable as documented: each loads
with its plugin (the forward/backward check included), names the treatment and control the
README names, and pairs its arms within blocks that share every other setting."""

from collections import defaultdict
from pathlib import Path

import pytest

from bnstudy import study

EXAMPLES = Path(__file__).resolve().parents[1] / "protocols" / "examples"

CASES = {
    "dropout_head": ("dropout", 0.0, {0.0, 0.3}),
    "body_norm": ("architecture", "convnet_batch", {"convnet_batch", "convnet_layer"}),
    "adamw_vs_sgd": ("optimizer", "sgd", {"sgd", "adamw"}),
}


def test_every_example_is_covered():
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_loads_with_its_treatment_and_pairs_its_arms(name):
    factor, control, levels = CASES[name]
    protocol = study.load(EXAMPLES / f"{name}.yaml")
    assert protocol.treatment_factor == factor
    assert protocol.control_level == control
    trials = protocol.expand()
    assert {getattr(t, factor) for t in trials} == levels
    arms_per_block = defaultdict(set)
    for t in trials:
        arms_per_block[t.block_id].add(getattr(t, factor))
    # Every block holds each arm once: the arms differ in the treatment only.
    assert all(arms == levels for arms in arms_per_block.values())
    assert len(trials) == len(levels) * len(arms_per_block)


def test_the_body_norm_plugin_builds_the_two_norms():
    import torch
    from torch import nn

    from bnstudy.models.registry import build_model

    study.load(EXAMPLES / "body_norm.yaml")  # imports the plugin, which registers both

    def body(name):
        model = build_model(name, "plain", (1, 8, 8), 10, lambda _: 0, None, {"width": 16})
        return model.body

    batch, layer = body("convnet_batch"), body("convnet_layer")
    assert any(isinstance(m, nn.BatchNorm2d) for m in batch.modules())
    assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in layer.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    assert layer(torch.zeros(2, 1, 8, 8)).shape == (2, 16)
