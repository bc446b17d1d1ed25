"""Protocol loading, validation messages, expansion, trial ids and pairing blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bnstudy.protocol import ProtocolError, Trial, load_protocol, parse_protocol

KNOWN = {"architecture": ["mlp", "cnn"], "head": ["plain", "bn", "ln"], "dataset": ["synthetic"]}

GOOD = """\
name: demo
seeds: 3
factors:
  architecture: [mlp, cnn]
  head: [plain, bn]
  dataset: synthetic
  imbalance_ratio: [1, 10, 100]
  epochs: 2
control: plain
analysis:
  metrics: [balanced_acc, nll]
"""


def parse(text: str = GOOD, known=KNOWN):
    return parse_protocol(textwrap.dedent(text), source="p.yaml", known=known)


def test_valid_protocol_resolves_defaults_and_lists():
    p = parse()
    assert p.seeds == [0, 1, 2]
    assert p.factors.architecture == ["mlp", "cnn"]
    assert p.factors.dataset == ["synthetic"]  # a single value is a list of one
    assert p.factors.imbalance_ratio == [1.0, 10.0, 100.0]
    assert p.factors.epochs == [2]
    assert p.variants == ["bn"]
    assert p.moderators == ["architecture", "imbalance_ratio"]
    nll = p.analysis.metrics["nll"]
    assert (nll.direction, nll.equivalence_margin) == ("lower", 0.02)
    assert p.analysis.metrics["balanced_acc"].equivalence_margin == 0.5


def test_seed_list_and_metric_mapping():
    p = parse(
        GOOD.replace("seeds: 3", "seeds: [7, 3]").replace(
            "metrics: [balanced_acc, nll]", "metrics: {test_acc: {equivalence_margin: 1.0}}"
        )
    )
    assert p.seeds == [7, 3]
    assert p.analysis.metrics["test_acc"].equivalence_margin == 1.0
    assert p.analysis.metrics["test_acc"].direction == "higher"


def test_full_factorial_expansion_and_order():
    trials = parse().expand()
    assert len(trials) == 3 * 2 * 2 * 3
    assert len({t.trial_id for t in trials}) == len(trials)
    # arms of a block are adjacent; seeds vary slowest
    assert trials[0].block_id == trials[1].block_id
    assert (trials[0].head, trials[1].head) == ("plain", "bn")
    assert [t.seed for t in trials[:12]] == [0] * 12


def test_blocks_pair_exactly_the_heads():
    trials = parse().expand()
    blocks: dict[str, list[Trial]] = {}
    for t in trials:
        blocks.setdefault(t.block_id, []).append(t)
    assert len(blocks) == 3 * 2 * 3
    for arms in blocks.values():
        assert sorted(t.head for t in arms) == ["bn", "plain"]
        settings = [{k: v for k, v in t.settings().items() if k != "head"} for t in arms]
        assert settings[0] == settings[1]


def test_trial_id_is_stable_and_independent_of_key_order_and_file_name(tmp_path: Path):
    reordered = """\
    control: plain
    analysis: {metrics: [nll, balanced_acc]}
    factors:
      epochs: 2
      imbalance_ratio: [1, 10, 100]
      dataset: [synthetic]
      head: [plain, bn]
      architecture: [mlp, cnn]
    seeds: 3
    name: another-name
    """
    a = {t.trial_id for t in parse().expand()}
    b = {t.trial_id for t in parse(reordered).expand()}
    assert a == b
    path = tmp_path / "whatever.yaml"
    path.write_text(GOOD)
    assert {t.trial_id for t in load_protocol(path, KNOWN).expand()} == a
    # a frozen hash: changing how ids are computed must be a deliberate decision
    first = parse().expand()[0]
    assert first.trial_id == Trial(**first.settings()).trial_id
    assert len(first.trial_id) == 16 and int(first.trial_id, 16) >= 0


def test_stream_seeds_are_shared_by_a_block_and_differ_by_stream():
    plain, bn = parse().expand()[:2]
    assert plain.stream_seed("order") == bn.stream_seed("order")
    assert plain.stream_seed("order") != plain.stream_seed("subset")
    other_seed = parse().expand()[12]
    assert other_seed.seed != plain.seed
    assert other_seed.stream_seed("order") != plain.stream_seed("order")


BAD = [  # (what is wrong, how to break the good protocol, what the message must say)
    (
        "unknown top-level key",
        lambda t: t.replace("name: demo", "name: demo\nnam: x"),
        "nam: unknown key 'nam'; allowed: name, description",
    ),
    (
        "unknown factor",
        lambda t: t.replace("  epochs: 2", "  epochs: 2\n  foo: 1"),
        "factors.foo: unknown key 'foo'; allowed: architecture",
    ),
    (
        "unknown architecture",
        lambda t: t.replace("[mlp, cnn]", "[mlp, resnet]"),
        "factors.architecture[1]: unknown name 'resnet'",
    ),
    (
        "unknown head, close match",
        lambda t: t.replace("[plain, bn]", "[plain, bnn]"),
        "factors.head[1]: unknown name 'bnn' (did you mean 'bn'?)",
    ),
    (
        "unknown dataset",
        lambda t: t.replace("dataset: synthetic", "dataset: cifar"),
        "factors.dataset[0]: unknown name 'cifar'; allowed: synthetic",
    ),
    (
        "ratio below 1",
        lambda t: t.replace("[1, 10, 100]", "[1, 0.5]"),
        "factors.imbalance_ratio[1]: input should be greater than or equal",
    ),
    (
        "control not among heads",
        lambda t: t.replace("control: plain", "control: ln"),
        "control: 'ln' is not among the heads; allowed: plain, bn",
    ),
    (
        "empty list",
        lambda t: t.replace("[mlp, cnn]", "[]"),
        "factors.architecture: must not be empty",
    ),
    (
        "wrong type",
        lambda t: t.replace("epochs: 2", "epochs: two"),
        "factors.epochs[0]: input should be a valid integer",
    ),
    (
        "seed count zero",
        lambda t: t.replace("seeds: 3", "seeds: 0"),
        "seeds: a seed count must be at least 1, got 0",
    ),
    (
        "duplicate seeds",
        lambda t: t.replace("seeds: 3", "seeds: [1, 1]"),
        "seeds: duplicate value 1",
    ),
    (
        "missing field",
        lambda t: t.replace("control: plain\n", ""),
        "control: required field is missing",
    ),
    (
        "unknown metric",
        lambda t: t.replace("[balanced_acc, nll]", "[acc]"),
        "analysis.metrics: unknown name 'acc'",
    ),
    (
        "bad direction",
        lambda t: t.replace("[balanced_acc, nll]", "{nll: {direction: up}}"),
        "analysis.metrics.nll.direction: input should be 'higher' or 'lower'",
    ),
    (
        "confidence out of range",
        lambda t: t + "  confidence: 1.5\n",
        "analysis.confidence: input should be less than 1",
    ),
    (
        "moderator not a factor",
        lambda t: t + "  moderators: [head]\n",
        "analysis.moderators[0]: 'head' is not a factor",
    ),
    (
        "single head",
        lambda t: t.replace("[plain, bn]", "[plain]"),
        "factors.head: needs the control and at least one variant",
    ),
    (
        "unknown optimizer",
        lambda t: t.replace("epochs: 2", "epochs: 2\n  optimizer: adam"),
        "factors.optimizer[0]: input should be 'sgd' or 'adamw'",
    ),
    (
        "non-finite lr",
        lambda t: t.replace("epochs: 2", "epochs: 2\n  lr: .nan"),
        "factors.lr[0]: input should be a finite number",
    ),
]


@pytest.mark.parametrize(("kind", "edit", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_one_line_message_naming_file_field_and_value(kind, edit, expected):
    with pytest.raises(ProtocolError) as info:
        parse(edit(GOOD))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("p.yaml: ")
    assert expected in message


def test_yaml_syntax_error_names_line_and_column():
    with pytest.raises(ProtocolError, match=r"^p.yaml:2:\d+: invalid YAML"):
        parse("name: x\n  seeds: 3: 4\n")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ProtocolError, match="expected a mapping of protocol fields"):
        parse("- a\n- b\n")


@pytest.mark.parametrize("text", ["", "# only comments\n# nothing else\n"])
def test_an_empty_protocol_says_so(text):
    with pytest.raises(ProtocolError, match=r"^p\.yaml: the protocol is empty"):
        parse(text)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ProtocolError, match="protocol file not found"):
        load_protocol(tmp_path / "nope.yaml")


def test_yaml_is_read_safely():
    with pytest.raises(ProtocolError, match="invalid YAML"):
        parse("name: !!python/object/apply:os.system ['echo hacked']\n")


def test_names_are_not_checked_without_registries():
    p = parse(GOOD.replace("[mlp, cnn]", "[mlp, future_arch]"), known=None)
    assert p.factors.architecture == ["mlp", "future_arch"]


def test_slug_is_file_system_safe():
    p = parse(GOOD.replace("name: demo", "name: '<script>alert(1)</script>'"))
    assert p.slug == "script-alert-1-script"


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("protocols/*.yaml")))
def test_shipped_protocols_are_valid(path: Path):
    from bnstudy.study import load

    protocol = load(path)
    assert len(protocol.expand()) >= 60
