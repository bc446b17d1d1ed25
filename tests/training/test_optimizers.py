"""Optimisers by name: ``sgd`` and ``adamw`` built in, a plugin's registered; the ``optimizer``
factor takes any registered name, seed packing only the built-in ones."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bnstudy import study
from bnstudy.execution import runner
from bnstudy.execution.tasks import choose_packing
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.training import optimizers, train


@pytest.fixture
def registry(monkeypatch):
    """The optimiser registry as a copy: what a test registers stays in the test."""
    monkeypatch.setattr(optimizers, "_BUILDERS", dict(optimizers._BUILDERS))


def test_the_built_in_optimisers_are_registered_names():
    assert optimizers.optimizer_names() == ["adamw", "sgd"]
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = optimizers.build_optimizer("sgd", params, lr=0.1, weight_decay=1e-3)
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (
        0.1,
        0.9,
        True,
    )
    assert isinstance(optimizers.build_optimizer("adamw", params, 0.1, 0), torch.optim.AdamW)
    with pytest.raises(KeyError, match="unknown optimizer 'adam' \\(did you mean 'adamw'"):
        optimizers.build_optimizer("adam", params, 0.1, 0)


def test_a_registered_optimiser_trains_a_trial(registry, make_trial):
    built = []

    def frozen(params, lr, weight_decay):  # lr 0: nothing moves
        built.append((lr, weight_decay))
        return torch.optim.SGD(params, lr=0.0)

    optimizers.register_optimizer("frozen", frozen)
    with pytest.raises(ValueError, match="already registered"):
        optimizers.register_optimizer("frozen")(frozen)
    with pytest.raises(ValueError, match="expected letters"):
        optimizers.register_optimizer("my optimiser", frozen)
    trial = make_trial(optimizer="frozen", train_per_class=20, epochs=1, lr=0.3)
    result = train.run_trial(trial)
    assert built == [(0.3, trial.weight_decay)]
    trained = train.run_trial(dataclasses.replace(trial, optimizer="sgd"))
    assert result.curves["train_loss"] != trained.curves["train_loss"]


def test_the_optimizer_factor_takes_the_registered_names(registry):
    text = """\
name: o
seeds: 2
factors: {architecture: mlp, head: plain, dataset: synthetic, optimizer: [sgd, lion]}
treatment: {factor: optimizer, control: sgd}
"""
    with pytest.raises(ProtocolError, match=r"factors.optimizer\[1\]: unknown name 'lion'"):
        parse_protocol(text, known=study.known_names())
    optimizers.register_optimizer("lion", lambda params, lr, weight_decay: None)
    protocol = parse_protocol(text, known=study.known_names())
    assert {t.optimizer for t in protocol.expand()} == {"sgd", "lion"}
    assert parse_protocol(text).factors.optimizer == ["sgd", "lion"]  # read back: unchecked


def test_seed_packing_runs_the_built_in_optimisers_only(registry):
    optimizers.register_optimizer("lion", lambda params, lr, weight_decay: None)
    text = """\
name: o
seeds: 4
factors: {architecture: mlp, head: plain, dataset: synthetic, optimizer: [sgd, lion]}
treatment: {factor: optimizer, control: sgd}
"""
    trials = parse_protocol(text, known=study.known_names()).expand()
    execution = runner.plan_execution(devices="cpu", pack=4)
    notes: list[str] = []
    pack_fn, packable = choose_packing(execution, runner.run_trial, None, trials, notes)
    assert pack_fn is not None
    assert [packable(t) for t in trials[:2]] == [True, False]  # sgd packs, lion does not
    assert notes == [
        "packing runs bnstudy's own optimisers only: those 4 trials with lion train one at a time"
    ]


PLUGIN = """\
from pathlib import Path

import torch

from bnstudy.training.optimizers import register_optimizer


@register_optimizer("sgd_logged")
def sgd_logged(params, lr, weight_decay):
    with open(Path(__file__).with_name("built.txt"), "a") as log:  # which worker built it
        log.write(f"{lr}\\n")
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
"""

PROTOCOL = """\
name: optimisers
seeds: 2
plugins: [my_optimisers.py]
factors:
  architecture: mlp
  head: plain
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 32
  lr: 0.02
  optimizer: [sgd, sgd_logged]
treatment: {factor: optimizer, control: sgd}
"""


def test_a_plugin_s_optimiser_is_the_treatment_and_each_row_names_it(tmp_path: Path):
    (tmp_path / "my_optimisers.py").write_text(PLUGIN)
    (tmp_path / "o.yaml").write_text(PROTOCOL)
    done = subprocess.run(
        [
            sys.executable, "-m", "bnstudy", "run", "o.yaml", "--jobs", "2", "--threads", "1",
            "--devices", "cpu", "--results", "r.parquet", "--no-report",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = pd.read_parquet(tmp_path / "r.parquet")
    assert set(rows["status"]) == {"ok"}
    assert sorted(rows["optimizer"]) == ["sgd", "sgd", "sgd_logged", "sgd_logged"]
    # the registered builder ran in the workers, once per trial of its arm
    assert (tmp_path / "built.txt").read_text().split() == ["0.02", "0.02"]
