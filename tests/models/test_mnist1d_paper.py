"""The MNIST-1D paper's networks (Greydanus & Kobak 2024): body + plain head is the paper's
network. Each is checked against the paper's equations written out with the model's own
weights, and against the parameter counts of its definitions (``notebooks/models.py``):

- logistic regression ``LinearBase(40, 10)``: 40 * 10 + 10 = 410;
- ``MLPBase(40, 10)``, hidden 100: (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
  = 15,210;
- ``ConvBase(10)``, 25 channels: (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
  = 5,210 (the lengths 40 -> 19 -> 10 -> 5, so the final Linear takes 25 * 5 = 125).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bnstudy.models import architecture_info, build_model, check_architecture_input
from bnstudy.spec.trial import ALL_TRAIN
from bnstudy.study import load

SIGNAL = (1, 40)
PAPER_PARAMETERS = {
    "linear": 40 * 10 + 10,
    "mnist1d_mlp": (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10),
    "mnist1d_cnn": (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10),
}
ANCHOR = Path(__file__).parents[2] / "protocols" / "anchors" / "mnist1d_paper.yaml"


def seed_of(name: str) -> int:
    return len(name)


def paper_net(name: str):
    return build_model(name, "plain", SIGNAL, 10, seed_of)


def test_parameter_counts_are_the_papers():
    assert PAPER_PARAMETERS == {"linear": 410, "mnist1d_mlp": 15_210, "mnist1d_cnn": 5_210}
    for name, count in PAPER_PARAMETERS.items():
        assert sum(p.numel() for p in paper_net(name).parameters()) == count, name


@pytest.mark.parametrize(("name", "features"), [("linear", 40), ("mnist1d_mlp", 100)])
def test_shapes(name, features):
    model = paper_net(name)
    assert model.body.out_features == features
    assert model.body(torch.randn(3, *SIGNAL)).shape == (3, features)
    assert model(torch.randn(3, *SIGNAL)).shape == (3, 10)


def test_the_cnn_halves_the_signal_three_times_to_25_maps_of_5():
    body = paper_net("mnist1d_cnn").body
    x = torch.randn(3, *SIGNAL)
    lengths = []
    for layer in body.convs:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv1d):
            lengths.append(x.shape[-1])
            assert x.shape[1] == 25
            assert (layer.stride, layer.padding) == ((2,), (1,))
    assert lengths == [19, 10, 5]
    assert [c.kernel_size for c in body.convs if isinstance(c, torch.nn.Conv1d)] == [
        (5,),
        (3,),
        (3,),
    ]
    assert body.out_features == 125
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in body.modules())


def test_each_network_computes_the_papers_equations():
    """Logits equal the paper's forward passes, written out with the model's own weights."""
    x = torch.randn(6, *SIGNAL)
    flat = x.flatten(1)

    model = paper_net("linear")
    fc = model.head.fc
    assert torch.allclose(model(x), flat @ fc.weight.T + fc.bias, atol=1e-6)

    model = paper_net("mnist1d_mlp")
    b = model.body
    h = F.relu(F.linear(flat, b.linear1.weight, b.linear1.bias))
    h = h + F.relu(F.linear(h, b.linear2.weight, b.linear2.bias))  # the residual connection
    assert torch.allclose(model(x), F.linear(h, model.head.fc.weight, model.head.fc.bias))

    model = paper_net("mnist1d_cnn")
    h = x
    for conv in (m for m in model.body.convs if isinstance(m, torch.nn.Conv1d)):
        h = F.relu(F.conv1d(h, conv.weight, conv.bias, stride=2, padding=1))
    expected = F.linear(h.reshape(len(x), -1), model.head.fc.weight, model.head.fc.bias)
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_facts_and_inputs():
    assert architecture_info("mnist1d_cnn").inputs == ("signal",)
    assert architecture_info("linear").inputs == architecture_info("mnist1d_mlp").inputs == ("any",)
    assert not any(architecture_info(n).ends_in_norm for n in PAPER_PARAMETERS)
    assert all(architecture_info(n).pooling == "none" for n in PAPER_PARAMETERS)
    assert build_model("linear", "plain", (1, 8, 8), 10, seed_of).body.out_features == 64
    assert build_model("mnist1d_cnn", "plain", (3, 100), 10, seed_of).body.out_features == 25 * 13
    with pytest.raises(ValueError, match="cannot take input shape"):
        check_architecture_input("mnist1d_cnn", (1, 8, 8))
    with pytest.raises(ValueError, match="needs signals of length at least 3"):
        build_model("mnist1d_cnn", "plain", (1, 2), 10, seed_of)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
@pytest.mark.parametrize("head", ["plain", "bn"])
def test_one_adam_step_lowers_the_loss_on_its_batch(name, head):
    model = build_model(name, head, SIGNAL, 10, seed_of)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, *SIGNAL, generator=generator), torch.arange(100) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert all(p.grad is not None for p in model.parameters())
    assert F.cross_entropy(model(x), y) < before


def test_the_anchor_protocol_validates_and_is_the_papers_setting():
    p = load(ANCHOR)  # fully: names registered, the pool built, every trial feasible
    f = p.factors
    assert p.name == "anchor_mnist1d_paper" and p.control == "plain"
    assert f.architecture == ["linear", "mnist1d_mlp", "mnist1d_cnn"] and f.head == ["plain", "bn"]
    assert (f.optimizer, f.weight_decay, f.lr) == (["adamw"], [0], [0.01])
    assert f.lr_schedule == ["constant"]
    assert (f.batch_size, f.steps, f.train_per_class) == ([100], [6000], [ALL_TRAIN])
    assert p.dataset_options("mnist1d")["val_fraction"] == 0  # all 4,000 training signals
    assert "32%" in p.description and "68%" in p.description and "94%" in p.description
