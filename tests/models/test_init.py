import math
import zlib

import pytest
import torch
from torch import nn

from bnstudy.models import architecture_info, architecture_names, build_model, init_weights


def crc_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def input_shape(architecture: str) -> tuple[int, ...]:
    return (1, 40) if architecture_info(architecture).inputs == ("signal",) else (3, 16, 16)


@pytest.mark.parametrize("architecture", architecture_names())
def test_every_parameter_comes_from_the_seeded_generators(architecture):
    """Two builds under different global RNG states are identical: no layer kept torch's
    global-stream init, which would break the pairing of arms."""
    states = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        model = build_model(architecture, "hidden_bn_relu", input_shape(architecture), 10, crc_seed)
        states.append(model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_mlp_and_cnn_init_is_unchanged():
    """Golden values recorded before the real-network families were added: existing trial
    numbers depend on them staying bit-identical."""
    mlp = build_model("mlp", "bn", (3, 16, 16), 10, crc_seed)
    cnn = build_model("cnn", "bn", (3, 16, 16), 10, crc_seed)
    observed = {
        "mlp.layers.1": mlp.body.layers[1].weight[0, :2].tolist(),
        "mlp.layers.3.bias": mlp.body.layers[3].bias[:2].tolist(),
        "mlp.fc": mlp.head.fc.weight[0, :2].tolist(),
        "cnn.conv0": cnn.body.blocks[0][0].weight.flatten()[:2].tolist(),
        "cnn.conv2": cnn.body.blocks[2][0].weight.flatten()[:2].tolist(),
        "cnn.fc.bias": cnn.head.fc.bias[:2].tolist(),
    }
    assert observed == GOLDEN  # exact: float32 values round-trip through Python floats


GOLDEN = {
    "mlp.layers.1": [0.031015925109386444, -0.031769100576639175],
    "mlp.layers.3.bias": [-0.002241566777229309, -0.025600112974643707],
    "mlp.fc": [0.005296200513839722, 0.00010742247104644775],
    "cnn.conv0": [-0.07467703521251678, -0.1202474907040596],
    "cnn.conv2": [0.032745473086833954, 0.05139909312129021],
    "cnn.fc.bias": [-0.06775109469890594, -0.0725020319223404],
}


def test_resnets_and_vggs_use_he_normal_conv_init_and_default_linear_init():
    model = build_model("resnet20", "hidden", (3, 16, 16), 10, crc_seed)
    conv = model.body.stages[2][1].conv2  # 64 -> 64, 3x3: fan_in = 576
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert conv.weight.mean().abs().item() < 0.002
    for linear in (model.head.fc, model.head.pre.hidden):  # the head is the same on any body
        bound = 1 / math.sqrt(linear.in_features)
        assert linear.weight.abs().max().item() <= bound
        assert linear.weight.abs().max().item() > 0.9 * bound
    vgg = build_model("vgg11", "plain", (3, 16, 16), 10, crc_seed)
    assert all(m.bias.abs().sum() == 0 for m in vgg.body.modules() if isinstance(m, nn.Conv2d))


def test_small_bodies_keep_the_uniform_conv_init():
    for architecture in ["cnn", "cnn1d", "cnn_flatten"]:
        assert architecture_info(architecture).conv_init == "uniform"
        model = build_model(architecture, "plain", input_shape(architecture), 10, crc_seed)
        for module in model.body.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d):
                bound = 1 / math.sqrt(module.weight[0].numel())
                assert module.weight.abs().max().item() <= bound


def test_norm_layers_are_reset():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.LayerNorm(3), nn.GroupNorm(1, 3))
    with torch.no_grad():
        for module in model:
            module.weight.fill_(2.0)
            module.bias.fill_(1.0)
        model[0].running_mean.fill_(5.0)
        model[1].running_var.fill_(7.0)
    init_weights(model, crc_seed)
    for module in model:
        assert torch.equal(module.weight, torch.ones(3))
        assert torch.equal(module.bias, torch.zeros(3))
    assert torch.equal(model[0].running_mean, torch.zeros(3))
    assert torch.equal(model[1].running_var, torch.ones(3))


def test_a_layer_init_does_not_know_is_refused():
    """A new parameterised layer type must be added to init.py, not silently left unpaired."""
    with pytest.raises(TypeError, match="no paired initialisation for Embedding at '1'"):
        init_weights(nn.Sequential(nn.Linear(2, 2), nn.Embedding(3, 2)), crc_seed)
    with pytest.raises(ValueError, match="unknown conv_init"):
        init_weights(nn.Linear(2, 2), crc_seed, conv_init="orthogonal")
