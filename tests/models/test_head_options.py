"""Head options (issue #7) reach the built modules, and heads at defaults are unchanged."""

import inspect

import pytest
import torch
from torch import nn

from bnstudy.models import build_model, head_names, register_head, registry
from bnstudy.spec import head_options


def build(head, **options):
    return build_model("mlp", head, (3, 8, 8), 4, len, options)


def test_every_builtin_head_declares_the_options_its_builder_takes():
    assert set(head_options.BUILTIN) == set(head_names())
    for name in head_names():
        params = inspect.signature(registry._HEADS[name]).parameters
        keywords = {p for p, v in params.items() if v.kind is v.KEYWORD_ONLY}
        assert keywords == set(head_options.BUILTIN[name]), name


def test_a_conflicting_declaration_is_refused(monkeypatch):
    monkeypatch.setattr(head_options, "_TAKES", dict(head_options._TAKES))
    with pytest.raises(ValueError, match="head 'bn' takes"):
        head_options.declare("bn", ("dropout",))
    with pytest.raises(ValueError, match="unknown option 'width'"):
        head_options.declare("test_new_head", ("width",))


def test_a_head_registered_without_options_is_built_without_them(monkeypatch):
    # registered for this test only: the registries are restored afterwards
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(head_options, "_TAKES", dict(head_options._TAKES))
    register_head("test_optionless")(lambda d, c: _Plain(d, c))
    model = build("test_optionless", bn_momentum=0.5, dropout=0.3)
    assert isinstance(model.head.fc, nn.Linear)
    assert head_options.options_of("test_optionless") == ()


class _Plain(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("head", head_names())
def test_defaults_build_the_first_release_heads(head):
    default = build(head)
    explicit = build(head, **head_options.DEFAULTS)
    assert not any(isinstance(m, nn.Dropout) for m in default.modules())
    assert str(default) == str(explicit)
    for (name, a), (_, b) in zip(
        default.state_dict().items(), explicit.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_bn_momentum_reaches_every_batchnorm_of_the_head():
    for head in ("bn", "bn_noaffine", "bnneck", "hidden_bn_relu", "hidden_relu_bn", "logit_bn"):
        norms = [m for m in build(head, bn_momentum=0.01).head.modules() if _is_bn(m)]
        assert norms and all(m.momentum == 0.01 for m in norms), head


def _is_bn(module):
    return isinstance(module, nn.BatchNorm1d)


def test_hidden_width_sets_the_hidden_layer_and_the_fc_input():
    for head in ("hidden", "hidden_bn_relu", "hidden_relu_bn"):
        model = build(head, hidden_width=16)
        assert model.head.pre.hidden.out_features == 16
        assert model.head.fc.in_features == 16
        assert model(torch.randn(5, 3, 8, 8)).shape == (5, 4)
    assert build("hidden").head.fc.in_features == 256  # 0: the feature width


def test_hidden_width_keeps_the_shared_body_weights():
    wide, narrow = build("hidden", hidden_width=64), build("hidden_bn_relu", hidden_width=64)
    assert torch.equal(wide.head.pre.hidden.weight, narrow.head.pre.hidden.weight)
    assert torch.equal(wide.body.layers[1].weight, build("plain").body.layers[1].weight)


def test_dropout_goes_before_or_after_the_norm():
    before = build("bn", dropout=0.5, dropout_at="before_norm").head
    assert [type(m) for m in before.pre] == [nn.Dropout, nn.BatchNorm1d]
    assert isinstance(before.drop, nn.Identity)
    after = build("bn", dropout=0.5, dropout_at="after_norm").head
    assert [type(m) for m in after.pre] == [nn.BatchNorm1d]
    assert isinstance(after.drop, nn.Dropout) and after.drop.p == 0.5
    plain = build("plain", dropout=0.25).head
    assert isinstance(plain.drop, nn.Dropout) and plain.drop.p == 0.25
    hidden = build("hidden_relu_bn", dropout=0.5).head
    assert [type(m) for m in hidden.pre][-2:] == [nn.Dropout, nn.BatchNorm1d]


def test_dropout_is_active_in_training_only():
    model = build("plain", dropout=0.5)
    x = torch.randn(64, 3, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_an_unknown_dropout_place_is_refused():
    with pytest.raises(ValueError, match="dropout_at must be one of"):
        build("bn", dropout=0.5, dropout_at="middle")
