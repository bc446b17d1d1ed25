import pytest
import torch

from bnstudy.models import architecture_names, build_model, head_names

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
    assert architecture_names() == ["cnn", "mlp"]


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_runs_forward_and_backward(architecture, head):
    model = build_model(architecture, head, (3, 16, 16), 10, seed_of)
    logits = model(torch.randn(8, 3, 16, 16))
    assert logits.shape == (8, 10)
    logits.logsumexp(1).mean().backward()
    assert model.head.fc.weight.grad is not None
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


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
