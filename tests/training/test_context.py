"""The trial-function contract (``training.context``): what a function gets (paired streams,
the trial's data and network) and how what it returns becomes a result."""

from __future__ import annotations

import math

import pytest
import torch

from bnstudy.training import train
from bnstudy.training.context import TrialContext, TrialOutcome, run_function


def arms(make_trial, **settings):
    """Two arms of one pairing block under an optimizer treatment: sgd, adamw."""
    return [
        make_trial(optimizer=name, treatment="optimizer", train_per_class=20, **settings)
        for name in ("sgd", "adamw")
    ]


def test_the_arms_of_a_block_share_every_stream_and_seeds_do_not(make_trial):
    sgd, adamw = arms(make_trial)
    other_seed = arms(make_trial, seed=1)[0]
    a, b, c = (TrialContext(t, "cpu") for t in (sgd, adamw, other_seed))
    for stream in ("subset", "order/0", "init/body.net.0", "mine"):
        assert a.seed(stream) == b.seed(stream) != c.seed(stream)
    assert a.seed("order/0") != a.seed("order/1")  # streams are independent
    assert torch.equal(
        torch.randperm(50, generator=a.generator("order/0")),
        torch.randperm(50, generator=b.generator("order/0")),
    )
    # the built-in trial's streams: the same batches and initial weights as bnstudy's own
    assert torch.equal(
        torch.randperm(64, generator=a.generator("order/3")), train.batch_order(sgd, 64, 3)
    )
    assert torch.equal(a.data.x_train, b.data.x_train)  # the subset stream: the same images
    first, second = a.model().parameters(), b.model().parameters()
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))


def test_a_mapping_is_an_ok_result_timed_with_the_data_s_classes(make_trial):
    (trial, _) = arms(make_trial)

    def function(trial, ctx):
        return {"score": len(ctx.data.y_train), "int_is_fine": 3}

    result = run_function(function, trial)
    assert result.status == "ok" and result.error is None
    assert result.metrics["score"] == 200.0 and result.metrics["int_is_fine"] == 3.0
    assert result.metrics["wall_s"] >= 0
    assert result.per_class == {"class_counts": [20] * 10}
    assert result.curves == {}


def test_an_outcome_carries_status_curves_and_its_own_per_class_lists(make_trial):
    (trial, _) = arms(make_trial)
    outcome = TrialOutcome(
        {"score": math.nan, "wall_s": 9.0},
        status="diverged",
        curves={"train_loss": [1, math.inf]},
        per_class={"class_counts": [1, 2]},
    )
    result = run_function(lambda t, ctx: outcome, trial)  # data never built
    assert result.status == "diverged"
    assert result.metrics["wall_s"] == 9.0  # its own, kept
    assert result.curves == {"train_loss": [1.0, math.inf]}
    assert result.per_class == {"class_counts": [1, 2]}
    failed = run_function(lambda t, ctx: TrialOutcome({}, status="failed"), trial)
    assert failed.error == "the trial function returned status 'failed'"


def test_torch_s_global_generator_is_seeded_from_the_trial(make_trial):
    (trial, _) = arms(make_trial)

    def draw(trial, ctx):
        return {"x": torch.rand(()).item()}

    assert run_function(draw, trial).metrics["x"] == run_function(draw, trial).metrics["x"]


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        ([0.5], TypeError, "must return a mapping of metrics"),
        ({"seed": 1.0}, ValueError, "metric 'seed' would overwrite"),
        ({"trial_id": 1.0}, ValueError, "metric 'trial_id' would overwrite"),
        ({"failure": 1.0}, ValueError, "metric 'failure' would overwrite"),
        ({"a b": 1.0}, ValueError, "metric name 'a b'"),
        ({"score": "high"}, TypeError, "metric 'score': expected a number"),
        ({"score": True}, TypeError, "metric 'score': expected a number"),
        (TrialOutcome({}, status="great"), ValueError, "status 'great'; allowed: ok, diverged"),
    ],
)
def test_what_breaks_the_contract_is_named(make_trial, returned, error, message):
    (trial, _) = arms(make_trial)
    with pytest.raises(error, match=message):
        run_function(lambda t, ctx: returned, trial)


def test_a_catalogue_metric_may_be_returned_and_the_builtin_trial_is_such_a_function(
    make_trial,
):
    trial = make_trial(train_per_class=20, epochs=1)
    direct = train.run_trial(trial)
    through = run_function(train.builtin_trial, trial)
    assert through.status == direct.status == "ok"
    compared = [name for name in direct.metrics if name != "wall_s"]
    assert [through.metrics[n] for n in compared] == pytest.approx(
        [direct.metrics[n] for n in compared], nan_ok=True
    )
    assert run_function(lambda t, ctx: {"balanced_acc": 0.7}, trial).metrics["balanced_acc"] == 0.7


PRETRAINED = """\
name: pre
seeds: 1
pretraining:
  pre: {dataset: synthetic, steps: 10, train_per_class: 20, batch_size: 20, lr: 0.05}
factors: {architecture: mlp, head: plain, dataset: synthetic, train_per_class: 20, steps: 2,
          batch_size: 20, pretrain: [none, pre]}
treatment: {factor: pretrain, control: none}
"""


def test_the_model_starts_from_the_pre_trained_body_as_the_built_in_trial_does(
    tmp_path, monkeypatch
):
    """Both arms of a ``pretrain`` treatment built from random weights would compare nothing:
    ``ctx.model()`` loads the stage's body (and the row its loss), the ``none`` arm not."""
    from bnstudy import study
    from bnstudy.spec.loading import parse_protocol
    from bnstudy.training import pretrain

    monkeypatch.setenv("BNSTUDY_DATA_DIR", str(tmp_path))  # the checkpoints' own cache
    protocol = parse_protocol(PRETRAINED, "p.yaml", known=study.known_names())
    scratch, staged = protocol.expand()
    assert pretrain.ensure_checkpoints(protocol, [staged]) == 1
    stored = pretrain.load_checkpoint(pretrain.checkpoint_path(staged))
    built = {}

    def keep(trial, ctx):
        built[trial.pretrain] = ctx.model()
        return {}

    with_body, without = run_function(keep, staged), run_function(keep, scratch)
    body = built["pre"].body.state_dict()
    assert all(torch.equal(body[name], w) for name, w in stored["body"].items())
    assert with_body.metrics["pretrain_train_loss"] == stored["train_loss"] > 0
    assert math.isnan(without.metrics["pretrain_train_loss"])
    fresh = built["none"].body.state_dict()
    assert not all(torch.equal(fresh[name], w) for name, w in stored["body"].items())
    # the head is initialised from the same streams either way; the built-in trial agrees
    assert all(
        torch.equal(p, q)
        for p, q in zip(
            built["pre"].head.parameters(), built["none"].head.parameters(), strict=True
        )
    )
    model, loss = train.start_model(staged, TrialContext(staged, "cpu").data, "cpu")
    assert loss == stored["train_loss"]
    assert all(torch.equal(model.body.state_dict()[n], w) for n, w in body.items())


def test_naming_the_built_in_trial_runs_other_trials():
    """``trial: bnstudy.training.train:builtin_trial`` trains as the built-in trial does, but
    the text enters the ids and blocks: other streams, so other numbers (its docstring and
    docs/networks.md say so)."""
    from tiny_protocol import tiny

    alone = tiny().expand()[0]
    named = tiny(extra="trial: bnstudy.training.train:builtin_trial\n").expand()[0]
    assert named.trial_function and alone.trial_id != named.trial_id
    assert alone.block_id != named.block_id
    assert alone.stream_seed("order/0") != named.stream_seed("order/0")
