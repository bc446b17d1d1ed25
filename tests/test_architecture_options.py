"""The ``architectures:`` section: mlp width and depth, in trial identity only off defaults."""

import pytest
import torch
from torch import nn

from bnstudy import study
from bnstudy.models import build_model
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.training import train

BASE = """
name: t
seeds: 2
factors:
  architecture: [mlp, cnn]
  head: [plain, bn]
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 16
control: plain
"""


def protocol(extra: str = ""):
    return parse_protocol(BASE + extra, known=study.known_names())


def test_defaults_written_out_are_the_same_trials():
    plain = [t.trial_id for t in protocol().expand()]
    written = protocol("architectures: {mlp: {width: 256, depth: 2}}\n").expand()
    assert [t.trial_id for t in written] == plain
    assert all(t.arch_options == "" for t in written)


def test_options_off_defaults_name_new_trials_of_that_architecture_only():
    before = {t.trial_id: t for t in protocol().expand()}
    after = protocol("architectures: {mlp: {width: 32, depth: 3}}\n").expand()
    for trial in after:
        if trial.architecture == "mlp":
            assert trial.architecture_options == {"width": 32, "depth": 3}
            assert trial.trial_id not in before
        else:
            assert trial.trial_id in before


@pytest.mark.parametrize(
    "section, message",
    [
        ("{mlp: {widht: 3}}", "architectures.mlp: unknown option 'widht' (did you mean 'width'?)"),
        ("{mlp: {depth: 0}}", "architectures.mlp.depth: expected an integer from 1 to 32"),
        ("{mlp: {width: 2.5}}", "architectures.mlp.width: expected an integer"),
        ("{cnn: {width: 3}}", "architectures.cnn: unknown option 'width'"),
        ("{resnet20: {}}", "architectures.resnet20: 'resnet20' is not an architecture of this"),
    ],
)
def test_bad_options_are_one_line_errors(section, message):
    with pytest.raises(ProtocolError) as info:
        protocol(f"architectures: {section}\n")
    assert "\n" not in str(info.value) and message in str(info.value)


def test_width_and_depth_build_the_body():
    body = build_model("mlp", "plain", (3, 8, 8), 4, len, None, {"width": 32, "depth": 3}).body
    linears = [m for m in body.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [32, 32, 32]
    assert body.out_features == 32
    default = build_model("mlp", "plain", (3, 8, 8), 4, len).body
    assert [m.out_features for m in default.modules() if isinstance(m, nn.Linear)] == [256, 256]


def test_a_trial_trains_the_configured_mlp(monkeypatch):
    built, real = [], train.build_model
    monkeypatch.setattr(
        train, "build_model", lambda *a, **k: built.append(real(*a, **k)) or built[-1]
    )
    trial = next(
        t
        for t in protocol("architectures: {mlp: {width: 16, depth: 1}}\n").expand()
        if t.architecture == "mlp"
    )
    assert train.run_trial(trial).status in {"ok", "collapsed"}
    assert built[0].body.out_features == 16
    assert built[0](torch.randn(2, 3, 16, 16)).shape == (2, 10)
