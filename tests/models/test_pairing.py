import pytest
import torch

from bnstudy.models import architecture_info, architecture_names, build_model
from bnstudy.spec.trial import Trial
from bnstudy.training.train import batch_order


def arm(make_trial, head: str) -> Trial:
    """One arm of a fixed imbalanced cnn block."""
    return make_trial(
        seed=3, architecture="cnn", head=head, imbalance_ratio=10.0, train_per_class=50,
        epochs=1, batch_size=16,
    )  # fmt: skip


def input_shape(architecture: str) -> tuple[int, ...]:
    return (1, 40) if architecture_info(architecture).inputs == ("signal",) else (3, 16, 16)


def build(trial: Trial, architecture: str = "cnn"):
    return build_model(
        architecture,
        trial.head,
        input_shape(architecture),
        10,
        init_seed=lambda name: trial.stream_seed("init/" + name),
    )


@pytest.mark.parametrize("architecture", architecture_names())
def test_arms_of_a_block_share_body_and_fc_init(make_trial, architecture):
    plain = build(arm(make_trial, "plain"), architecture)
    for head in ["bn", "bnneck", "hidden_relu_bn", "logit_bn", "ln"]:
        other = build(arm(make_trial, head), architecture)
        assert plain.body.state_dict().keys() == other.body.state_dict().keys()
        for key, value in plain.body.state_dict().items():
            assert torch.equal(value, other.body.state_dict()[key]), (head, key)
        assert torch.equal(plain.head.fc.weight, other.head.fc.weight), head


#: ``linear``'s body has no layers (the input is its features): nothing to initialise.
WITH_BODY_LAYERS = [name for name in architecture_names() if name != "linear"]


@pytest.mark.parametrize("architecture", WITH_BODY_LAYERS)
def test_body_init_differs_across_seeds_and_layers(make_trial, architecture):
    a = build(arm(make_trial, "plain"), architecture)
    b = build(Trial(**{**arm(make_trial, "plain").settings(), "seed": 4}), architecture)
    weights = {k: v for k, v in a.body.state_dict().items() if k.endswith("weight") and v.ndim > 1}
    assert len(weights) >= 2
    for key, value in weights.items():
        assert not torch.equal(value, b.body.state_dict()[key]), key
    first, second = list(weights.values())[:2]
    assert not torch.equal(first.flatten()[:10], second.flatten()[:10])


def test_hidden_heads_share_the_hidden_layer_init(make_trial):
    a = build(arm(make_trial, "hidden"))
    b = build(arm(make_trial, "hidden_bn_relu"))
    assert torch.equal(a.head.pre.hidden.weight, b.head.pre.hidden.weight)


def test_init_differs_across_seeds_and_layers(make_trial):
    a = build(arm(make_trial, "plain"))
    other_seed = Trial(**{**arm(make_trial, "plain").settings(), "seed": 4})
    b = build(other_seed)
    assert not torch.equal(a.head.fc.weight, b.head.fc.weight)
    assert not torch.equal(a.head.fc.bias, b.head.fc.bias)


def test_arms_of_a_block_see_the_same_batches(make_trial):
    plain, bn = arm(make_trial, "plain"), arm(make_trial, "bn")
    for epoch in range(2):
        assert torch.equal(batch_order(plain, 100, epoch), batch_order(bn, 100, epoch))
    assert not torch.equal(batch_order(plain, 100, 0), batch_order(plain, 100, 1))
    assert sorted(batch_order(plain, 100, 0).tolist()) == list(range(100))
