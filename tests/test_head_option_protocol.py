"""Head options as factors: applicability, no duplicate trials, arms sharing one control."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from bnstudy import study
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.trial import arm_of

BASE = """
name: t
seeds: 3
factors:
  architecture: mlp
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 16
"""


def protocol(extra: str):
    return parse_protocol(BASE + extra, known=study.known_names())


MOMENTA = """
  head: [plain, bn]
  bn_momentum: [0.1, 0.01]
control: plain
"""


def test_an_option_a_head_does_not_take_creates_no_duplicate_trials():
    p = protocol(MOMENTA)
    assert p.n_trials == len(p.expand()) == 3 * 3  # plain once, bn at two momenta
    assert sum(t.head == "plain" for t in p.expand()) == 3
    # hidden_width is taken by neither head: one trial per head and seed
    q = protocol("  head: [plain, bn]\n  hidden_width: [0, 16, 64]\ncontrol: plain\n")
    assert q.n_trials == len(q.expand()) == 6
    # dropout_at means nothing without dropout
    r = protocol(
        "  head: [plain, bn]\n  dropout: [0, 0.5]\n  dropout_at: [before_norm, after_norm]\n"
        "control: plain\n"
    )
    assert r.n_trials == len(r.expand()) == 3 * (2 + 3)


def test_a_hypothesis_may_name_an_arm():
    hyp = """hypotheses:
  - id: slow_momentum
    claim: slow BN statistics change accuracy
    metric: balanced_acc
    variant: "bn[bn_momentum=0.01]"
    control: plain
    expect: higher
"""
    p = protocol(MOMENTA + hyp)
    assert p.hypotheses[0].variant in p.design().variants
    with pytest.raises(ProtocolError, match=r"hypotheses\[0\]\.variant.*bn\[bn_momentum=0\.01\]"):
        protocol(MOMENTA + hyp.replace("0.01]", "0.5]"))


def test_the_plan_counts_arms_not_heads():
    text = study.plan(protocol(MOMENTA)).describe()
    assert "variants bn, bn[bn_momentum=0.01]; 3 pairing blocks of 3 arms" in text


def test_a_momentum_arm_pairs_with_the_one_plain_control():
    p = protocol(MOMENTA)
    design = p.design()
    assert (design.treatment, design.control) == ("arm", "plain")
    assert design.variants == ("bn", "bn[bn_momentum=0.01]")
    assert "bn_momentum" not in design.conditions and "bn_momentum" not in design.moderators
    trials = p.expand()
    assert len({t.block_id for t in trials}) == 3
    for seed in range(3):
        arms = [t for t in trials if t.seed == seed]
        assert [t.arm for t in arms] == ["plain", "bn", "bn[bn_momentum=0.01]"]
        assert len({t.block_id for t in arms}) == len({t.condition_id for t in arms}) == 1
        assert len({t.stream_seed("init/body") for t in arms}) == 1


def test_trials_at_default_options_keep_their_ids():
    without = {t.trial_id for t in protocol("  head: [plain, bn]\ncontrol: plain\n").expand()}
    with_arm = protocol(MOMENTA).expand()
    assert without <= {t.trial_id for t in with_arm}
    assert protocol(MOMENTA).design().treatment == "arm"
    assert protocol("  head: [plain, bn]\ncontrol: plain\n").design().treatment == "head"


def test_quick_protocol_ids_are_those_of_the_first_release():
    """The first release's id: a hash of exactly these settings (no later setting)."""
    first = ["seed", "architecture", "head", "dataset", "imbalance_ratio", "train_per_class"]
    first += ["epochs", "batch_size", "lr", "optimizer", "weight_decay"]
    for trial in study.load("protocols/quick.yaml").expand():
        settings = {k: getattr(trial, k) for k in first}
        canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        assert trial.trial_id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
        assert trial.arm == trial.head and trial.arm_options == ""


def test_an_option_every_head_takes_is_a_condition():
    p = protocol(
        "  head: [hidden, hidden_bn_relu, hidden_relu_bn]\n  hidden_width: [16, 64, 256]\n"
        "control: hidden\n"
    )
    design = p.design()
    assert design.treatment == "head" and "hidden_width" in design.moderators
    trials = p.expand()
    assert len(trials) == 3 * 3 * 3
    assert len({t.block_id for t in trials}) == 3 * 3
    assert all(t.arm_options == "" for t in trials)


def test_an_option_that_varies_on_the_control_only_is_refused():
    with pytest.raises(ProtocolError) as info:
        protocol(
            "  head: [hidden_bn_relu, plain]\n  bn_momentum: [0.1, 0.01]\ncontrol: hidden_bn_relu\n"
        )
    message = str(info.value)
    assert "\n" not in message
    assert "factors.bn_momentum: varies on the control 'hidden_bn_relu'" in message
    assert "plain" in message


def test_a_single_option_value_on_the_control_becomes_its_arm():
    p = protocol("  head: [hidden, plain]\n  hidden_width: 64\ncontrol: hidden\n")
    design = p.design()
    assert (design.control, design.variants) == ("hidden[hidden_width=64]", ("plain",))
    assert len({t.block_id for t in p.expand()}) == 3


@pytest.mark.parametrize(
    "extra, where",
    [
        ("  bn_momentum: 0\n", "factors.bn_momentum"),
        ("  bn_momentum: 1.5\n", "factors.bn_momentum"),
        ("  dropout: 1\n", "factors.dropout"),
        ("  dropout_at: middle\n", "factors.dropout_at"),
        ("  hidden_width: -1\n", "factors.hidden_width"),
    ],
)
def test_invalid_option_values_are_one_line_errors(extra, where):
    with pytest.raises(ProtocolError) as info:
        protocol("  head: [plain, bn]\n" + extra + "control: plain\n")
    assert "\n" not in str(info.value) and where in str(info.value)


def test_an_arm_option_cannot_be_a_moderator():
    with pytest.raises(
        ProtocolError, match="analysis.moderators: 'bn_momentum' is part of the arms"
    ):
        protocol(MOMENTA + "analysis:\n  moderators: [bn_momentum]\n")


def test_tables_get_an_arm_column_old_ones_too():
    old = pd.DataFrame({"head": ["plain", "bn"], "trial_id": ["a", "b"]})
    assert list(study._with_default_settings(old)["arm"]) == ["plain", "bn"]
    rows = [t.settings() for t in protocol(MOMENTA).expand()[:3]]
    table = study._with_default_settings(pd.DataFrame(rows))
    assert list(table["arm"]) == ["plain", "bn", "bn[bn_momentum=0.01]"]
    assert arm_of(rows[2]) == "bn[bn_momentum=0.01]"


def test_run_with_a_momentum_arm_end_to_end(tmp_path, monkeypatch):
    """``bnstudy run``: the plain control is trained once per seed and pairs with both arms."""
    from bnstudy.cli import main

    monkeypatch.chdir(tmp_path)
    text = (
        BASE.replace("seeds: 3", "seeds: 2")
        + MOMENTA
        + "analysis:\n  bootstrap: {replicates: 100}\n"
        + "hypotheses:\n  - {id: slow, claim: slow statistics, metric: balanced_acc,\n"
        + '     variant: "bn[bn_momentum=0.01]", control: plain, expect: higher}\n'
    )
    Path("t.yaml").write_text(text)
    assert main(["run", "t.yaml", "--jobs", "1", "-q"]) == 0
    recorded = study.load_results("data/results/t.parquet")
    table = recorded.results.table
    assert len(table) == 6 and set(table["status"]) == {"ok"}
    assert sorted(table["arm"]) == sorted(["plain", "bn", "bn[bn_momentum=0.01]"] * 2)
    assert table.groupby("block_id")["arm"].nunique().tolist() == [3, 3]
    estimates = study.analyze_with_protocol(recorded).estimates
    overall = estimates[estimates["scope"] == "overall"]
    assert set(overall["variant"]) == {"bn", "bn[bn_momentum=0.01]"}
    assert set(overall["control"]) == {"plain"}
    assert "bn[bn_momentum=0.01]" in Path("reports/t.html").read_text()
    judged = study.analyze_with_protocol(recorded).hypotheses.set_index("id").loc["slow"]
    assert judged["n_pairs"] == 2 and pd.notna(judged["estimate"])
