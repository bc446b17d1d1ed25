"""Pre-training stages: protocol, identity, the shared checkpoint cache, loading, validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from bnstudy import study
from bnstudy.cli import main
from bnstudy.models import build_model
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.training import pretrain
from bnstudy.training.packable import packable

TINY = """\
name: tiny
seeds: 2
pretraining:
  pre: {dataset: synthetic, steps: 30, train_per_class: 40, batch_size: 32, lr: 0.05}
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  train_per_class: 40
  steps: 20
  batch_size: 32
  pretrain: [none, pre]
control: plain
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own dataset cache (and so its own pretrained/ folder)."""
    monkeypatch.setenv("BNSTUDY_DATA_DIR", str(tmp_path / "cache"))


def _parse(text: str = TINY):
    return parse_protocol(text, source="p.yaml", known=study.known_names())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[none, pre]", "[none, pr]", "p.yaml: factors.pretrain[1]: 'pr' is not a stage"),
        ("dataset: synthetic, steps", "dataset: synthetc, steps", "pretraining.pre.dataset: "),
        ("steps: 30, ", "steps: 30, options: {foo: 1}, ", "pretraining.pre.options: unknown"),
        ("steps: 30, ", "", "pretraining.pre.steps: required field is missing"),
        ("  pre: {", "  none: {", "pretraining.none: 'none' means no pre-training"),
    ],
)
def test_protocol_errors_are_one_line_naming_the_field(old, new, expected):
    with pytest.raises(ProtocolError) as info:
        _parse(TINY.replace(old, new))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_two_stage_names_with_the_same_settings_are_refused():
    text = TINY.replace(
        "  pre: {",
        "  again: {dataset: synthetic, steps: 30, train_per_class: 40, "
        "batch_size: 32, lr: 0.05}\n  pre: {",
    ).replace("[none, pre]", "[pre, again]")
    with pytest.raises(ProtocolError, match="pretraining.again: the same settings as stage 'pre'"):
        _parse(text)


def test_ids_without_pretraining_are_unchanged_and_a_renamed_stage_keeps_its_ids():
    without = _parse(TINY.replace("  pretrain: [none, pre]\n", ""))
    none_trials = [t for t in _parse().expand() if t.pretrain == "none"]
    assert [t.trial_id for t in none_trials] == [t.trial_id for t in without.expand()]
    assert all(
        "pretrain" not in t.identity() and "pretrain_stage" not in t.identity() for t in none_trials
    )
    staged = [t.trial_id for t in _parse().expand() if t.pretrain == "pre"]
    renamed = _parse(TINY.replace("  pre: {", "  other: {").replace("[none, pre]", "[none, other]"))
    assert [t.trial_id for t in renamed.expand() if t.pretrain == "other"] == staged
    changed = _parse(TINY.replace("steps: 30", "steps: 31"))
    assert not set(staged) & {t.trial_id for t in changed.expand()}


def _block(protocol):
    """The two arms (plain, bn) of seed 0 with pre-training."""
    return [t for t in protocol.expand() if t.pretrain == "pre" and t.seed == 0]


def test_one_checkpoint_per_block_trained_once_and_loaded_by_every_head():
    protocol = _parse()
    plain, bn = _block(protocol)
    assert pretrain.checkpoint_path(plain) == pretrain.checkpoint_path(bn)
    assert pretrain.ensure_checkpoints(protocol, protocol.expand()) == 2  # one per seed
    assert pretrain.ensure_checkpoints(protocol, protocol.expand()) == 0  # cached
    bodies = []
    for trial in (plain, bn):
        model = build_model(
            trial.architecture,
            trial.head,
            (3, 16, 16),
            10,
            init_seed=lambda name, t=trial: t.stream_seed("init/" + name),
        )
        loss = pretrain.load_body(model, trial)
        assert loss > 0
        bodies.append(model.body.state_dict())
    fresh = build_model(
        plain.architecture,
        "plain",
        (3, 16, 16),
        10,
        init_seed=lambda name: plain.stream_seed("init/" + name),
    )
    for name, weight in bodies[0].items():
        assert torch.equal(weight, bodies[1][name])
    assert not all(torch.equal(w, fresh.body.state_dict()[n]) for n, w in bodies[0].items())


def test_each_body_is_announced_before_and_after_it_trains():
    # Pre-training runs before any trial reports progress; a run that pre-trains six bodies
    # for minutes printed nothing at all before (claim5_pretrain of the second study).
    protocol = _parse()
    lines: list[str] = []
    assert pretrain.ensure_checkpoints(protocol, protocol.expand(), lines.append) == 2
    assert len(lines) == 4
    assert lines[0].startswith("pre-training body 1/2: mlp on stage 'pre' (synthetic), seed 0")
    assert lines[1].startswith(lines[0].removesuffix(" ...")) and " done in " in lines[1]
    assert lines[3].startswith("pre-training body 2/2:") and " done in " in lines[3]
    lines.clear()
    assert pretrain.ensure_checkpoints(protocol, protocol.expand(), lines.append) == 0
    assert lines == []  # cached bodies are not announced


@dataclasses.dataclass
class _Payload:  # any object a plain pickle would rebuild (and so could run code)
    note: str = "not data"


def test_a_checkpoint_holding_an_object_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": pretrain.CHECKPOINT_FORMAT, "body": {}, "x": _Payload()}, path)
    with pytest.raises(pretrain.CheckpointError, match="weights_only=True"):
        pretrain.load_checkpoint(path)


def test_a_truncated_checkpoint_is_rebuilt_once():
    protocol = _parse()
    trial = _block(protocol)[0]
    pretrain.ensure_checkpoints(protocol, [trial])
    path = pretrain.checkpoint_path(trial)
    good = pretrain.load_checkpoint(path)["body"]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(pretrain.CheckpointError, match="not a readable pre-trained body"):
        pretrain.load_checkpoint(path)
    assert pretrain.ensure_checkpoints(protocol, [trial]) == 1
    rebuilt = pretrain.load_checkpoint(path)["body"]
    assert all(torch.equal(rebuilt[k], v) for k, v in good.items())  # same streams, same body


def test_pretrained_trials_are_not_packed():
    trial = _block(_parse())[0]
    assert not packable(trial)
    assert packable(dataclasses.replace(trial, pretrain="none", pretrain_stage=""))


def test_a_body_that_does_not_fit_the_fine_tuning_input_is_refused_at_validate(tmp_path):
    path = tmp_path / "mismatch.yaml"
    path.write_text(
        TINY.replace("architecture: mlp", "architecture: cnn").replace(
            "  dataset: synthetic\n", "  dataset: digits\n"
        )
    )
    with pytest.raises(ProtocolError) as info:
        study.load(path)
    message = str(info.value)
    assert "pretraining.pre: architecture 'cnn' pre-trained on 'synthetic' (3, 16, 16)" in message
    assert "'digits' (1, 8, 8)" in message and "\n" not in message


def test_run_end_to_end_then_resume_reuses_the_bodies_with_identical_results(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    argv = ["run", "tiny.yaml", "--devices", "cpu", "--jobs", "1", "--threads", "1", "--no-report"]
    assert main(argv) == 0
    assert "pre-trained 2 bodies" in capsys.readouterr().out
    first = pd.read_parquet("data/results/tiny.parquet")
    assert (first["status"] == "ok").all() and len(first) == 8
    staged = first[first["pretrain"] == "pre"]
    assert set(first["pretrain"]) == {"none", "pre"}
    assert staged.groupby("seed")["pretrain_checkpoint"].nunique().eq(1).all()
    assert staged["pretrain_train_loss"].notna().all()
    assert first.loc[first["pretrain"] == "none", "pretrain_checkpoint"].eq("").all()

    def no_training(*args, **kwargs):
        raise AssertionError("a cached body was trained again")

    monkeypatch.setattr(pretrain, "train_body", no_training)
    Path("data/results/tiny.parquet").unlink()  # run every trial again, on the cached bodies
    assert main(argv) == 0
    assert "pre-trained" not in capsys.readouterr().out
    again = pd.read_parquet("data/results/tiny.parquet")
    for column in ("trial_id", "balanced_acc", "nll", "pretrain_train_loss"):
        pd.testing.assert_series_equal(first[column], again[column])


def test_packing_leaves_pretrained_trials_alone_and_says_so_once():
    from bnstudy.execution import runner
    from bnstudy.execution.tasks import choose_packing

    trials = _parse().expand()
    notes: list[str] = []
    execution = runner.plan_execution(devices="cpu", pack=8)
    pack_fn, is_packable = choose_packing(execution, runner.run_trial, None, trials, notes)
    assert notes == [
        "packing does not support pre-trained bodies: those 4 trials train one at a time"
    ]
    tasks = runner.make_tasks(trials, 8, is_packable)
    assert sorted(len(t) for t in tasks) == [1, 1, 1, 1, 2, 2]  # none: packed by seed


def test_a_stage_that_cannot_train_is_a_protocol_error():
    too_many = _parse(TINY.replace("train_per_class: 40, batch", "train_per_class: 100000, batch"))
    with pytest.raises(ProtocolError, match="pretraining.pre.train_per_class: 100000 images"):
        study.check_feasible(too_many, "p.yaml")
    diverging = _parse(TINY.replace("lr: 0.05}", "lr: 1.0e+8}"))
    with pytest.raises(ProtocolError, match="pretraining.pre: diverged .* lower its lr"):
        pretrain.ensure_checkpoints(diverging, diverging.expand())
    assert not list(pretrain.checkpoint_path(diverging.expand()[2]).parent.glob("*"))


def test_architecture_options_name_their_own_body():
    wide = _parse(TINY.replace("factors:", "architectures: {mlp: {width: 32}}\nfactors:"))
    trial, default = _block(wide)[0], _block(_parse())[0]
    assert pretrain.checkpoint_path(trial) != pretrain.checkpoint_path(default)
    pretrain.ensure_checkpoints(wide, [trial])
    body = pretrain.load_checkpoint(pretrain.checkpoint_path(trial))["body"]
    assert body["layers.1.weight"].shape[0] == 32


def test_an_unknown_stage_key_lists_the_stage_fields():
    with pytest.raises(ProtocolError) as info:
        _parse(TINY.replace("steps: 30, ", "steps: 30, epochs: 2, "))
    assert "pretraining.pre.epochs: unknown key 'epochs'; allowed: dataset, options, steps" in str(
        info.value
    )
