import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.models import build_model, fold_bn_into_linear


def trained_head(head: str) -> nn.Module:
    """A model trained a few steps, so running statistics and affine parameters are non-trivial."""
    torch.manual_seed(0)
    model = build_model("mlp", head, (3, 16, 16), 10, init_seed=lambda name: len(name))
    x, y = torch.randn(64, 3, 16, 16) * 2 + 0.5, torch.randint(0, 10, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("head", ["bn", "bn_noaffine", "bnneck"])
def test_folded_linear_matches_bn_then_fc(head):
    model = trained_head(head)
    bn = model.head.pre.bn
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    folded = fold_bn_into_linear(bn, model.head.fc)
    with torch.no_grad():
        features = model.body(torch.randn(32, 3, 16, 16))
        expected = model.head(features)
        actual = folded(features)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_fold_handles_hand_computed_case():
    bn = nn.BatchNorm1d(2, eps=0.0).eval()
    bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0]))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, 3.0]))
    linear = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 1.0]]))
    folded = fold_bn_into_linear(bn, linear)
    # bn(x) = [2 (x0 - 1) / 2, (x1 + 1) + 3] = [x0 - 1, x1 + 4]; sum = x0 + x1 + 3
    torch.testing.assert_close(folded.weight, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(folded.bias, torch.tensor([3.0]))


def test_fold_without_linear_bias_stays_on_the_layers_device():
    """The zero bias of a bias-free FC (bnneck) was made on the CPU: a GPU fold crashed."""
    bn = nn.BatchNorm1d(4, device="meta").eval()  # "meta" stands in for an accelerator
    folded = fold_bn_into_linear(bn, nn.Linear(4, 3, bias=False, device="meta"))
    assert folded.weight.device.type == folded.bias.device.type == "meta"
