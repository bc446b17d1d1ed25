"""bnstudy.models.packed: K classifiers as one module, layer by layer the same as K models."""

import zlib

import pytest
import torch
from torch import nn

from bnstudy.models import build_model
from bnstudy.models.packed import copy_view, load_copy, pack_inputs, pack_models
from bnstudy.training.packable import PACKABLE_ARCHITECTURES, PACKABLE_HEADS

SHAPES = {
    "cnn": (3, 16, 16),
    "cnn_flatten": (3, 16, 16),
    "cnn1d": (1, 40),
    "mlp": (3, 16, 16),
    "linear": (1, 40),
    "mnist1d_mlp": (1, 40),
    "mnist1d_cnn": (1, 40),
}
K = 3
#: The CPU always; CUDA where there is one (grouped convolutions there are cuDNN's).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]  # fmt: skip


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def models_for(
    architecture: str, head: str, device: str = "cpu", shapes: dict | None = None, k: int = K
) -> list[nn.Module]:
    """``k`` models of one architecture and head, with different weights (seeds), built for
    the input shape ``shapes`` (default this file's ``SHAPES``) gives the architecture."""
    return [
        build_model(
            architecture,
            head,
            (shapes or SHAPES)[architecture],
            10,
            lambda name, copy=copy: zlib.crc32(f"{copy}/{name}".encode()),
        ).to(device)
        for copy in range(k)
    ]


def test_every_packable_architecture_is_covered_here():
    # The deep bodies, with one head each (every head is checked on the small ones here).
    from test_packing_deep import SHAPES as DEEP

    assert set(SHAPES) | set(DEEP) == set(PACKABLE_ARCHITECTURES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", PACKABLE_HEADS)
@pytest.mark.parametrize("architecture", list(SHAPES))
def test_packed_forward_backward_and_bn_updates_equal_k_separate_models(
    float64, architecture, head, device
):
    assert_packed_equals_separate(
        models_for(architecture, head, device), SHAPES[architecture], device
    )


def assert_packed_equals_separate(models: list[nn.Module], shape: tuple, device: str) -> None:
    """The packed module of ``models`` against the models one by one, in train and eval mode:
    logits equal, each copy's gradients its own model's (per-copy loss weights), and the BN
    running statistics after the steps."""
    packed = pack_models(models)
    x = torch.randn(8, K, *shape, device=device)  # copy k's own batch of 8
    for mode in ("train", "eval"):
        packed.train(mode == "train")
        for model in models:
            model.train(mode == "train")
        logits = packed(pack_inputs(x)).view(8, K, 10)
        separate = torch.stack([model(x[:, k]) for k, model in enumerate(models)], dim=1)
        torch.testing.assert_close(logits, separate, rtol=0, atol=1e-12)
        # Different weights per copy: each loss reaches only its own copy's gradients.
        weights = torch.arange(1.0, K + 1, device=device)
        (logits.square().mean(dim=(0, 2)) * weights).sum().backward()
        (separate.square().mean(dim=(0, 2)) * weights).sum().backward()
    own = dict(packed.named_parameters())
    for k, model in enumerate(models):
        for name, parameter in model.named_parameters():
            assert own[name].requires_grad == parameter.requires_grad
            if parameter.requires_grad:
                packed_grad = copy_view(own[name].grad, K, k)
                torch.testing.assert_close(
                    packed_grad, parameter.grad.flatten(), atol=1e-12, rtol=0
                )
        for name, buffer in model.named_buffers():  # BN running statistics after the step
            packed_buffer = copy_view(packed.get_buffer(name), K, k)
            torch.testing.assert_close(packed_buffer, buffer.reshape(packed_buffer.shape))


@pytest.mark.parametrize("architecture", list(SHAPES))
def test_load_copy_gives_back_each_model_exactly(architecture):
    models = models_for(architecture, "hidden_bn_relu")
    packed = pack_models(models)
    for k, model in enumerate(models):
        fresh = models_for(architecture, "hidden_bn_relu")[(k + 1) % K]
        load_copy(packed, k, fresh)
        for (name, a), (_, b) in zip(
            model.state_dict().items(), fresh.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), name


def assert_same(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    """Equal on the CPU; close on CUDA, whose kernels need not be deterministic. NaN fails."""
    if a.device.type == "cpu":
        assert torch.equal(a, b), name
    else:
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("architecture", ["cnn", "mlp"])
@pytest.mark.parametrize("head", ["bn", "ln", "logit_bn", "hidden_relu_bn"])
def test_a_nan_copy_leaves_the_others_untouched(architecture, head, device):
    """No operation mixes copies: NaN inputs and weights in copy 1 reach neither the outputs,
    nor the gradients, nor the BN statistics of copies 0 and 2."""
    clean = pack_models(models_for(architecture, head, device))
    poisoned = pack_models(models_for(architecture, head, device))
    with torch.no_grad():
        for parameter in poisoned.parameters():
            copy_view(parameter, K, 1).fill_(float("nan"))
    x = torch.randn(8, K, *SHAPES[architecture], device=device)
    x_poisoned = x.clone()
    x_poisoned[:, 1] = float("inf")
    logits = []
    for model, inputs in ((clean, x), (poisoned, x_poisoned)):
        logits.append(model(pack_inputs(inputs)).view(8, K, 10))
        logits[-1].sum().backward()
    assert logits[1][:, 1].isnan().all()
    assert_same(logits[0][:, [0, 2]], logits[1][:, [0, 2]], "logits")
    named = zip(clean.named_parameters(), poisoned.named_parameters(), strict=True)
    for (name, a), (_, b) in named:
        for k in (0, 2):
            assert_same(copy_view(a.grad, K, k), copy_view(b.grad, K, k), name)
    for (name, a), (_, b) in zip(clean.named_buffers(), poisoned.named_buffers(), strict=True):
        if a.dim():
            for k in (0, 2):
                assert_same(copy_view(a, K, k), copy_view(b, K, k), name)


def test_packed_parameters_are_copy_major_with_the_copies_names():
    models = models_for("cnn", "ln")
    packed = pack_models(models)
    assert [n for n, _ in packed.named_parameters()] == [n for n, _ in models[0].named_parameters()]
    conv = packed.body.blocks[0][0]
    assert conv.groups == K and conv.weight.shape == (K * 16, 3, 3, 3)
    assert packed.head.fc.weight.shape == (K, 10, 64)
    assert torch.equal(packed.head.fc.weight[2], models[2].head.fc.weight)
    assert torch.equal(conv.weight[16:32], models[1].body.blocks[0][0].weight)


def test_a_layer_without_a_packed_counterpart_is_refused():
    with pytest.raises(TypeError, match="Dropout at '1'"):
        pack_models([nn.Sequential(nn.Linear(4, 4), nn.Dropout())] * 2)


def test_models_of_different_structure_are_refused():
    with pytest.raises(ValueError, match="differ in structure"):
        pack_models(models_for("mlp", "plain")[:1] + models_for("mlp", "bn")[:1])
