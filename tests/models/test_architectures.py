import pytest
import torch
from torch import nn

from bnstudy.models import (
    architecture_info,
    architecture_names,
    build_model,
    check_architecture_input,
    compatible_architectures,
    register_architecture,
    shape_kind,
)
from bnstudy.models.cnn import cnn
from bnstudy.models.cnn1d import cnn1d
from bnstudy.models.cnn_flatten import cnn_flatten
from bnstudy.models.mlp import mlp
from bnstudy.models.mnist1d_paper import linear, mnist1d_cnn, mnist1d_mlp
from bnstudy.models.preact_resnet import preact_resnet20
from bnstudy.models.resnet import resnet20, resnet32
from bnstudy.models.vgg import vgg11, vgg11_bn

BUILDERS = {
    "cnn": cnn,
    "cnn1d": cnn1d,
    "cnn_flatten": cnn_flatten,
    "linear": linear,
    "mlp": mlp,
    "mnist1d_cnn": mnist1d_cnn,
    "mnist1d_mlp": mnist1d_mlp,
    "preact_resnet20": preact_resnet20,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "vgg11": vgg11,
    "vgg11_bn": vgg11_bn,
}
#: The MNIST-1D paper's networks (tests/models/test_mnist1d_paper.py).
PAPER = ("linear", "mnist1d_cnn", "mnist1d_mlp")
IMAGE_ARCHITECTURES = [name for name in BUILDERS if name not in ("cnn1d", "mlp", *PAPER)]
IMAGES = [(3, 16, 16), (3, 32, 32), (1, 8, 8)]
SIGNALS = [(1, 40), (3, 100)]

#: (out_features for 8x8 / 16x16 / 32x32 images) where it depends on the architecture only.
OUT_FEATURES = {
    "cnn": 64,
    "cnn_flatten": 32 * 4 * 4,
    "preact_resnet20": 64,
    "resnet20": 64,
    "resnet32": 64,
    "vgg11": 512,
    "vgg11_bn": 512,
}

#: SCIENCE.md hypothesis 2: does the body already end in a normalization?
ENDS_IN_NORM = {
    "cnn": True,
    "cnn1d": True,
    "cnn_flatten": True,
    "linear": False,
    "mlp": False,
    "mnist1d_cnn": False,
    "mnist1d_mlp": False,
    "preact_resnet20": True,
    "resnet20": True,
    "resnet32": True,
    "vgg11": False,
    "vgg11_bn": True,
}


def seed_of(name: str) -> int:
    return len(name)


def test_every_family_is_registered_with_its_info():
    assert architecture_names() == sorted(BUILDERS)
    for name, ends_in_norm in ENDS_IN_NORM.items():
        info = architecture_info(name)
        assert info.name == name
        assert info.ends_in_norm is ends_in_norm, name
        expected_pooling = "none" if name in ("mlp", "cnn_flatten", *PAPER) else "global_avg"
        assert info.pooling == expected_pooling, name
    assert architecture_info("cnn1d").inputs == ("signal",)
    assert architecture_info("mlp").inputs == ("any",)
    assert all(architecture_info(name).inputs == ("image",) for name in IMAGE_ARCHITECTURES)


def test_architecture_info_is_frozen():
    with pytest.raises(AttributeError):
        architecture_info("cnn").ends_in_norm = False


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ends_in_norm_matches_the_last_parameterised_layer(name):
    """The flag agrees with the body itself: its last layer with parameters is a norm or not."""
    shape = (1, 40) if architecture_info(name).inputs == ("signal",) else (3, 16, 16)
    body = BUILDERS[name](shape)
    with_params = [m for m in body.modules() if any(True for _ in m.parameters(recurse=False))]
    last = with_params[-1] if with_params else None  # ``linear`` has no layer at all
    last_is_norm = isinstance(last, nn.modules.batchnorm._NormBase | nn.LayerNorm)
    assert last_is_norm is architecture_info(name).ends_in_norm


@pytest.mark.parametrize("shape", IMAGES)
@pytest.mark.parametrize("name", [*IMAGE_ARCHITECTURES, "mlp"])
def test_image_bodies_give_nonnegative_features_of_the_declared_width(name, shape):
    body = BUILDERS[name](shape)
    features = body(torch.randn(2, *shape))
    expected = 256 if name == "mlp" else OUT_FEATURES[name]
    assert features.shape == (2, body.out_features) == (2, expected)
    assert (features >= 0).all()  # every built-in body ends in a ReLU (then pools/flattens)


@pytest.mark.parametrize("shape", SIGNALS)
@pytest.mark.parametrize("name", ["cnn1d", "mlp"])
def test_signal_bodies_give_nonnegative_features(name, shape):
    body = BUILDERS[name](shape)
    features = body(torch.randn(2, *shape))
    assert features.shape == (2, body.out_features)
    assert (features >= 0).all()


def test_cnn_flatten_flattens_the_maps_and_does_not_pool_them():
    assert BUILDERS["cnn_flatten"]((3, 28, 28)).out_features == 32 * 3 * 3
    body = BUILDERS["cnn_flatten"]((3, 16, 16))
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in body.modules())


def test_vgg_skips_only_the_pools_that_would_empty_the_maps():
    def pools(shape):
        return sum(isinstance(m, nn.MaxPool2d) for m in vgg11(shape).modules())

    assert [pools((3, 32, 32)), pools((3, 16, 16)), pools((1, 8, 8))] == [5, 4, 3]
    convs = [m for m in vgg11_bn((3, 32, 32)).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.bias is None for c in convs)
    assert all(c.bias is not None for c in vgg11((3, 32, 32)).modules() if isinstance(c, nn.Conv2d))


@pytest.mark.parametrize(("name", "published"), [("resnet20", 0.27e6), ("resnet32", 0.46e6)])
def test_resnet_parameter_counts_match_the_paper(name, published):
    """He et al. 2016 table 6 with option-A shortcuts: 0.27M and 0.46M parameters."""
    model = build_model(name, "plain", (3, 32, 32), 10, seed_of)
    count = sum(p.numel() for p in model.parameters())
    assert count == {"resnet20": 269_722, "resnet32": 464_154}[name]
    assert abs(count - published) / published < 0.01


def test_resnet_depths():
    def convs(body):
        return sum(isinstance(m, nn.Conv2d) for m in body.modules())

    # 6n + 2 weighted layers: 6n + 1 convs plus the fc
    assert convs(resnet20((3, 32, 32))) == 19
    assert convs(resnet32((3, 32, 32))) == 31
    assert convs(preact_resnet20((3, 32, 32))) == 19


@pytest.mark.parametrize(
    ("name", "shape", "kind"),
    [
        ("cnn1d", (3, 16, 16), "image"),
        ("cnn1d", (1, 8, 8), "image"),
        *((name, (1, 40), "signal") for name in IMAGE_ARCHITECTURES),
        ("resnet20", (1, 3, 32, 32), "rank-4 input"),
        ("cnn", (3, 0, 16), "image"),
        ("mlp", (3, 0), "signal"),
    ],
)
def test_wrong_input_kind_is_refused_in_one_line(name, shape, kind):
    allowed = {"cnn1d": "signal (channels, length)", "mlp": "any shape (flattened)"}.get(
        name, "image (channels, height, width)"
    )
    expected = f"architecture '{name}' cannot take input shape {shape} ({kind}); it accepts: "
    calls = [
        lambda: check_architecture_input(name, shape),
        lambda: build_model(name, "plain", shape, 10, seed_of),
        lambda: BUILDERS[name](shape),
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == expected + allowed
        assert "\n" not in str(info.value)


def test_mlp_takes_any_shape():
    for shape in [(3, 16, 16), (1, 40), (7,), (2, 3, 4, 5)]:
        check_architecture_input("mlp", shape)
    kinds = [shape_kind(shape) for shape in [(3, 8, 8), (1, 40), (7,), (2, 3, 4, 5)]]
    assert kinds == ["image", "signal", "vector", "rank-4 input"]


def test_compatible_architectures_lists_allowed_pairs():
    flattening = ["linear", "mlp", "mnist1d_mlp"]
    assert compatible_architectures((1, 40)) == sorted(["cnn1d", "mnist1d_cnn", *flattening])
    assert compatible_architectures((784,)) == flattening
    assert compatible_architectures((3, 32, 32)) == sorted([*IMAGE_ARCHITECTURES, *flattening])


def test_unknown_architecture_info_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean .*'resnet20'"):
        architecture_info("resnet2")
    with pytest.raises(KeyError, match="known:"):
        check_architecture_input("resnet2", (3, 8, 8))


def test_registration_checks_its_info():
    with pytest.raises(ValueError, match="already registered"):
        info = dict(inputs=("image",), ends_in_norm=True, pooling="global_avg", tail="")
        register_architecture("cnn", **info)(cnn)
    with pytest.raises(ValueError, match="inputs must be among"):
        register_architecture("x", inputs=("video",), ends_in_norm=True, pooling="none", tail="")
    with pytest.raises(ValueError, match="pooling must be one of"):
        register_architecture("x", inputs=("any",), ends_in_norm=True, pooling="max", tail="")
    assert "x" not in architecture_names()
