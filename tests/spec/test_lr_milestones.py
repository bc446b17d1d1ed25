"""``lr_milestones`` and ``lr_decay``: a ``step`` schedule at given epochs (Cao et al. 2019's
CIFAR-LT schedule), added without changing any existing trial id, refused in one line when
it cannot mean what it says."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import load_protocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {"architecture": ["mlp"], "head": ["plain", "bn"], "dataset": ["synthetic"]}
BASE = """\
name: demo
seeds: 2
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  epochs: 200
control: plain
analysis:
  metrics: [balanced_acc]
"""
PAPER = "  lr_schedule: step\n  lr_milestones: [160, 180]\n  lr_decay: 0.01\n"


def parse(extra: str = "", base: str = BASE):
    text = base.replace("  epochs: 200\n", "  epochs: 200\n" + extra)
    return parse_protocol(textwrap.dedent(text), source="p.yaml", known=KNOWN)


def test_one_level_is_a_list_of_epochs_stored_canonically():
    p = parse(PAPER)
    assert p.factors.lr_milestones == ["160,180"] and p.factors.lr_decay == [0.01]
    assert {(t.lr_schedule, t.lr_milestones, t.lr_decay) for t in p.expand()} == {
        ("step", "160,180", 0.01)
    }
    several = parse(PAPER.replace("[160, 180]", "[[100, 150], [160, 180]]"))
    assert several.factors.lr_milestones == ["100,150", "160,180"]
    # the stored form (a results table's column) reads back as the same level
    again = parse(PAPER.replace("[160, 180]", "'160,180'"))
    assert again.factors.lr_milestones == ["160,180"]
    assert [t.trial_id for t in again.expand()] == [t.trial_id for t in p.expand()]


def test_the_new_settings_at_their_defaults_leave_every_id_unchanged():
    plain = parse().expand()
    spelled = parse("  lr_milestones: []\n  lr_decay: 0.1\n").expand()
    assert [t.trial_id for t in spelled] == [t.trial_id for t in plain]
    assert all("lr_milestones" not in t.identity() for t in plain)
    assert all("lr_decay" not in t.identity() for t in plain)
    # the first release's step schedule (no milestones) keeps its ids too
    old_step = parse("  lr_schedule: step\n").expand()
    assert set(old_step[0].identity()) - set(plain[0].identity()) == {"lr_schedule"}
    # ... while milestones or a decay away from the defaults name other trials
    paper = parse(PAPER).expand()
    assert {t.trial_id for t in paper}.isdisjoint(t.trial_id for t in old_step)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "  lr_schedule: step\n  lr_milestones: [180, 160]\n",
            "factors.lr_milestones: milestones must be strictly increasing; got [180, 160]",
        ),
        (
            "  lr_schedule: step\n  lr_milestones: [160, 160]\n",
            "factors.lr_milestones: milestones must be strictly increasing",
        ),
        (
            "  lr_schedule: step\n  lr_milestones: [0, 180]\n",
            "factors.lr_milestones: milestones must be positive whole epochs; got 0",
        ),
        (
            "  lr_schedule: step\n  lr_milestones: [160.5]\n",
            "factors.lr_milestones: milestones must be positive whole epochs; got 160.5",
        ),
        (
            "  lr_schedule: step\n  lr_milestones: 'a,b'\n",
            "factors.lr_milestones: milestones must be whole epochs",
        ),
        (
            "  lr_schedule: step\n  lr_milestones: [160, 200]\n",
            "factors.lr_milestones: milestone 200 is not within the training length of 200 epochs",
        ),
        (
            "  lr_milestones: [160, 180]\n",
            "factors.lr_milestones: lr_milestones applies to lr_schedule: step only",
        ),
        (
            "  lr_schedule: [cosine, step]\n  lr_decay: 0.01\n",
            "factors.lr_decay: lr_decay applies to lr_schedule: step only",
        ),
        (PAPER.replace("0.01", "1.0"), "factors.lr_decay[0]: input should be less than 1"),
        (PAPER.replace("0.01", "0"), "factors.lr_decay[0]: input should be greater than 0"),
    ],
)
def test_invalid_milestones_and_decays_are_refused_in_one_line(extra, message):
    with pytest.raises(ProtocolError) as raised:
        parse(extra)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"p.yaml: {message}"), text


def test_milestones_are_epochs_so_they_need_epochs():
    text = textwrap.dedent(BASE.replace("  epochs: 200\n", "  steps: 1000\n" + PAPER))
    with pytest.raises(ProtocolError) as raised:
        parse_protocol(text, source="p.yaml", known=KNOWN)
    assert str(raised.value) == (
        "p.yaml: factors.lr_milestones: lr_milestones are epochs: give the training length "
        "as epochs, not steps"
    )


@pytest.mark.parametrize(
    "path", [ROOT / "protocols" / "cifar10_lt.yaml", ROOT / "protocols/study/cifar_lt_gpu.yaml"]
)
def test_the_cifar_lt_protocols_train_as_cao_et_al(path: Path):
    from bnstudy.study import known_names

    protocol = load_protocol(path, known=known_names())  # no CIFAR files needed to parse
    for trial in protocol.expand():
        assert (trial.epochs, trial.steps, trial.batch_size) == (200, 0, 128)
        assert (trial.lr, trial.optimizer, trial.weight_decay) == (0.1, "sgd", 2e-4)
        assert (trial.lr_schedule, trial.lr_milestones, trial.lr_decay) == ("step", "160,180", 0.01)
        assert trial.warmup_frac == 0.025  # 5 of the 200 epochs
    assert "29.64%" in protocol.description and "13.61%" in protocol.description
