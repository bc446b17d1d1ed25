import pytest
import torch
from torch import nn

from bnstudy.models import (
    architecture_info,
    architecture_names,
    build_model,
    head_names,
    hidden_relu,
    registry,
)

HEADS = [
    "plain",
    "bn",
    "bn_noaffine",
    "bnneck",
    "hidden",
    "hidden_bn_relu",
    "hidden_relu_bn",
    "logit_bn",
    "ln",
]


def seed_of(name: str) -> int:
    return len(name)


def test_registries_hold_all_variants():
    assert sorted(HEADS) == head_names()
    assert architecture_names() == [
        "cnn",
        "cnn1d",
        "cnn_flatten",
        "linear",
        "mlp",
        "mnist1d_cnn",
        "mnist1d_mlp",
        "preact_resnet20",
        "resnet20",
        "resnet32",
        "vgg11",
        "vgg11_bn",
    ]


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_runs_forward_and_backward(architecture, head):
    model = build_model(architecture, head, (3, 16, 16), 10, seed_of)
    logits = model(torch.randn(8, 3, 16, 16))
    assert logits.shape == (8, 10)
    logits.logsumexp(1).mean().backward()
    assert model.head.fc.weight.grad is not None
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("architecture", architecture_names())
@pytest.mark.parametrize("head", ["bn", "hidden_relu_bn", "logit_bn"])
def test_heads_run_on_every_architecture(architecture, head):
    shape = (1, 40) if architecture_info(architecture).inputs == ("signal",) else (3, 8, 8)
    model = build_model(architecture, head, shape, 10, seed_of)
    logits = model(torch.randn(4, *shape))
    assert logits.shape == (4, 10)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


class BareHead(nn.Module):
    """A head that follows only the contract: no ``pre``, no ``post``, a final ``fc``."""

    def __init__(self, d: int, num_classes: int):
        super().__init__()
        self.project = nn.Linear(d, 8)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, features):
        return self.fc(self.act(self.project(features)))


def test_any_module_with_a_final_fc_is_a_head(monkeypatch):
    monkeypatch.setitem(registry._HEADS, "bare", BareHead)
    model = build_model("cnn", "bare", (3, 8, 8), 10, seed_of)
    assert model(torch.randn(4, 3, 8, 8)).shape == (4, 10)
    assert hidden_relu(model.head) is model.head.act
    reference = build_model("cnn", "plain", (3, 8, 8), 10, seed_of)
    assert torch.equal(model.body.blocks[0][0].weight, reference.body.blocks[0][0].weight)


def test_a_head_without_fc_is_refused(monkeypatch):
    monkeypatch.setitem(registry._HEADS, "nofc", lambda d, c: nn.Sequential(nn.Linear(d, c)))
    with pytest.raises(TypeError, match="no final nn.Linear named 'fc'"):
        build_model("mlp", "nofc", (3, 8, 8), 10, seed_of)


@pytest.mark.parametrize(
    ("head", "relu"),
    [("plain", None), ("bn", None), ("hidden", "pre.relu"), ("hidden_relu_bn", "pre.relu")],
)
def test_hidden_relu_finds_the_units_feeding_fc(head, relu):
    model = build_model("mlp", head, (3, 8, 8), 10, seed_of)
    expected = None if relu is None else model.head.get_submodule(relu)
    assert hidden_relu(model.head) is expected


def test_bnneck_has_frozen_shift_and_no_fc_bias():
    model = build_model("mlp", "bnneck", (3, 16, 16), 10, seed_of)
    assert model.head.fc.bias is None
    assert not model.head.pre.bn.bias.requires_grad
    assert model.head.pre.bn.weight.requires_grad


def test_bn_noaffine_has_no_parameters():
    model = build_model("mlp", "bn_noaffine", (3, 16, 16), 10, seed_of)
    assert list(model.head.pre.bn.parameters()) == []


def test_logit_bn_normalizes_the_logits():
    model = build_model("mlp", "logit_bn", (3, 16, 16), 10, seed_of)
    assert model.head.post.num_features == 10


@pytest.mark.parametrize(
    ("kind", "name", "suggestion"),
    [("architecture", "cnnn", "'cnn'"), ("head", "bn_noafine", "'bn_noaffine'")],
)
def test_unknown_names_list_close_matches(kind, name, suggestion):
    args = {"architecture": "mlp", "head": "plain", kind: name}
    with pytest.raises(KeyError, match=f"did you mean {suggestion}") as info:
        build_model(args["architecture"], args["head"], (3, 16, 16), 10, seed_of)
    assert "known:" in str(info.value)
