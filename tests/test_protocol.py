"""Protocol loading, validation messages, expansion, trial ids and pairing blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bnstudy.spec.design import TuneDesign, slope_unit
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import load_protocol, parse_protocol
from bnstudy.spec.trial import Trial

KNOWN = {
    "architecture": ["mlp", "cnn"],
    "head": ["plain", "bn", "ln"],
    "dataset": ["synthetic"],
    "optimizer": ["sgd", "adamw"],
}

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
        "nam: unknown key 'nam' (did you mean 'name'?); allowed: name, description",
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
        "analysis.moderators[0]: 'head' is the treatment, not a condition: its levels are the "
        "arms, each compared with the control, not a moderator of the effect",
    ),
    (
        "single head",
        lambda t: t.replace("[plain, bn]", "[plain]"),
        "factors.head: needs the control and at least one variant",
    ),
    (
        "unknown optimizer",
        lambda t: t.replace("epochs: 2", "epochs: 2\n  optimizer: adam"),
        "factors.optimizer[0]: unknown name 'adam' (did you mean 'adamw'?); allowed: adamw, sgd",
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


@pytest.mark.parametrize(
    ("typo", "meant"), [("haed", "head"), ("imbalance_ratoi", "imbalance_ratio")]
)
def test_a_misspelled_factor_name_gets_a_did_you_mean_hint(typo, meant):
    with pytest.raises(ProtocolError) as info:
        parse(GOOD.replace(f"  {meant}:", f"  {typo}:"))
    expected = f"p.yaml: factors.{typo}: unknown key {typo!r} (did you mean {meant!r}?); allowed: "
    assert any(line.startswith(expected) for line in str(info.value).splitlines()), info.value


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


@pytest.mark.parametrize("name", ["../../../etc/x", "a/b", "<script>alert(1)</script>", ".hidden"])
def test_a_name_that_is_no_safe_file_name_is_refused(name):
    # Before, such names were silently mapped to a file name, and "a/b" and "a-b" shared
    # one results file.
    with pytest.raises(ProtocolError, match=r"^p\.yaml: name: .* cannot be a file name"):
        parse(GOOD.replace("name: demo", f"name: '{name}'"))


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("protocols/*.yaml")))
def test_shipped_protocols_are_valid(path: Path):
    from bnstudy.study import known_names, load

    protocol = load_protocol(path, known=known_names())
    if any("path" in (options or {}) for options in protocol.datasets.values()):
        # Users' own files (CIFAR, MNIST): not on this machine, and the message says where.
        with pytest.raises(ProtocolError, match=r"datasets\.\w+: .*(not a directory|missing)"):
            load(path)
    else:
        load(path)  # the full pre-training checks: files, shapes, pool sizes, batches
    assert len(protocol.expand()) >= 40


# -- identity across releases ----------------------------------------------------------


def test_trial_ids_written_before_new_settings_existed_are_unchanged():
    # Values computed by the release before imbalance_profile, steps, lr_schedule, ... existed:
    # a table written then must resume with nothing to re-run.
    trials = parse().expand()
    assert (trials[0].trial_id, trials[0].block_id) == ("4801132c3c490be5", "a27da5940c5643a9")
    assert trials[0].stream_seed("subset") == 628686484403592981
    assert trials[-1].trial_id == "c2fc42c5b4a6adb2"
    # ... while a setting away from its default is part of the identity
    moved = parse(GOOD.replace("epochs: 2", "epochs: 2\n  label_smoothing: 0.1")).expand()
    assert moved[0].trial_id != trials[0].trial_id
    assert moved[0].settings()["label_smoothing"] == 0.1


def test_steps_replace_epochs():
    p = parse(GOOD.replace("epochs: 2", "steps: [100, 200]"))
    assert p.factors.epochs == [0] and p.factors.steps == [100, 200]
    assert {t.steps for t in p.expand()} == {100, 200}
    with pytest.raises(ProtocolError, match="factors.steps: give the training length as epochs"):
        parse(GOOD.replace("epochs: 2", "epochs: 2\n  steps: 100"))
    with pytest.raises(ProtocolError, match="factors.epochs: epochs must be at least 1"):
        parse(GOOD.replace("epochs: 2", "epochs: 0"))


# -- exclusions ------------------------------------------------------------------------


def test_exclusions_drop_matching_trials_and_are_counted_without_expanding():
    p = parse(GOOD + "exclude:\n  - {architecture: cnn, imbalance_ratio: [10, 100]}\n")
    trials = p.expand()
    assert p.n_trials == len(trials) == 36 - 3 * 2 * 2
    assert not any(t.architecture == "cnn" and t.imbalance_ratio > 1 for t in trials)
    with pytest.raises(ProtocolError, match=r"exclude\[0\]\.ratio: unknown name 'ratio'"):
        parse(GOOD + "exclude:\n  - {ratio: 10}\n")
    with pytest.raises(ProtocolError, match=r"exclude\[0\]\.imbalance_ratio: 7 is not a level"):
        parse(GOOD + "exclude:\n  - {imbalance_ratio: 7}\n")


# -- defaults resolve like written settings (issue 6, item 1) --------------------------


def test_default_primary_metric_resolves_direction_and_margin():
    p = parse(GOOD.replace("analysis:\n  metrics: [balanced_acc, nll]\n", ""))
    spec = p.analysis.metrics["balanced_acc"]
    # Before: direction None (read as lower-is-better: inverted verdicts) and no margin.
    assert (spec.direction, spec.equivalence_margin) == ("higher", 0.5)
    assert p.analysis == parse(GOOD.replace("[balanced_acc, nll]", "[balanced_acc]")).analysis


# -- hostile or careless input (issue 6, items 7-9, 12) --------------------------------


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("99999999999999999999999", "seeds: a seed count of 99999999999999999999999 is beyond"),
        ("1000000000", "seeds: a seed count of 1000000000 is beyond"),
        ("[1, 9223372036854775808]", "seeds[1]: input should be less than or equal to"),
        ("[-1]", "seeds[0]: input should be greater than or equal to 0"),
    ],
)
def test_huge_or_negative_seeds_are_refused_quickly(seeds, expected):
    import time

    start = time.perf_counter()
    with pytest.raises(ProtocolError) as info:
        parse(GOOD.replace("seeds: 3", f"seeds: {seeds}"))
    assert expected in str(info.value)
    assert time.perf_counter() - start < 2.0


def test_many_seeds_validate_in_linear_time():
    import time

    many = "[" + ", ".join(map(str, range(30_000))) + "]"
    start = time.perf_counter()
    text = GOOD.replace("seeds: 3", f"seeds: {many}").replace("[mlp, cnn]", "mlp")
    p = parse(text.replace("[1, 10, 100]", "1"))
    assert len(p.seeds) == 30_000
    assert time.perf_counter() - start < 5.0  # quadratic uniqueness took over a minute at 100k


def test_the_trial_count_is_bounded_without_expanding():
    import time

    huge = GOOD.replace("seeds: 3", "seeds: 1000").replace(
        "epochs: 2", "epochs: 2\n  lr: [" + ", ".join(f"0.{i + 1:04d}" for i in range(400)) + "]"
    )
    start = time.perf_counter()
    with pytest.raises(ProtocolError, match=r"max_trials: the protocol expands to 4,800,000"):
        parse(huge)
    assert time.perf_counter() - start < 2.0
    assert parse(huge + "max_trials: 5000000\n").n_trials == 4_800_000


def test_an_alias_bomb_is_reported_quickly():
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        bomb += (
            f"{'abcdefghi'[i]}: &{'abcdefghi'[i]} [*{'abcdefghi'[i - 1]}"
            + (f", *{'abcdefghi'[i - 1]}" * 8)
            + "]\n"
        )
    text = bomb + GOOD.replace("name: demo", "name: demo\ndescription: *i")
    start = time.perf_counter()
    with pytest.raises(ProtocolError) as info:
        parse(text)
    assert time.perf_counter() - start < 2.0
    assert "description: input should be a valid string" in str(info.value)
    assert len(str(info.value)) < 2000


def test_a_key_given_twice_is_refused():
    with pytest.raises(
        ProtocolError, match=r"^p\.yaml:\d+:\d+: invalid YAML: duplicate key 'seeds'"
    ):
        parse(GOOD + "seeds: 7\n")


def test_every_error_is_listed_one_per_line():
    text = GOOD.replace("seeds: 3", "seeds: 0").replace("epochs: 2", "epochs: two")
    text = text.replace("control: plain", "control: plain\nbogus: 1")
    with pytest.raises(ProtocolError) as info:
        parse(text)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith("p.yaml: ") for line in lines)
    assert any("seeds:" in line for line in lines) and any("bogus" in line for line in lines)


# -- dataset options -------------------------------------------------------------------

DATA_KNOWN = {**KNOWN, "dataset": ["synthetic", "mnist1d", "cifar10"]}


def test_dataset_options_that_change_the_data_are_part_of_identity_paths_are_not():
    def ids(datasets: str, dataset: str = "cifar10") -> set[str]:
        text = GOOD.replace("dataset: synthetic", f"dataset: {dataset}") + datasets
        return {t.trial_id for t in parse(text, known=DATA_KNOWN).expand()}

    here = ids("datasets: {cifar10: {path: /data/here}}")
    assert here == ids("datasets: {cifar10: {path: /elsewhere/cifar}}")
    assert here != ids("datasets: {cifar10: {path: /data/here, val_fraction: 0}}")
    # an option written at its default is the same trial as one left out
    assert ids("", "mnist1d") == ids("datasets: {mnist1d: {num_train: 4000}}", "mnist1d")
    trial = parse(
        GOOD.replace("dataset: synthetic", "dataset: mnist1d")
        + "datasets: {mnist1d: {num_train: 3000}}",
        known=DATA_KNOWN,
    ).expand()[0]
    assert trial.data_options == '{"num_train":3000}'


@pytest.mark.parametrize(
    ("datasets", "expected"),
    [
        ("", "datasets.cifar10.path: required"),
        (
            "datasets: {cifar10: {path: x, colour: red}}",
            "datasets.cifar10: unknown option 'colour'",
        ),
        ("datasets: {cifar10: {path: x, val_fraction: 0.9}}", "datasets.cifar10.val_fraction:"),
        ("datasets: {cifar10: {path: x}, mnist1d: {}}", "datasets.mnist1d: 'mnist1d' is not a"),
    ],
)
def test_bad_dataset_options_name_the_field(datasets, expected):
    text = GOOD.replace("dataset: synthetic", "dataset: cifar10") + datasets
    with pytest.raises(ProtocolError) as info:
        parse(text, known=DATA_KNOWN)
    assert str(info.value).startswith("p.yaml: " + expected), str(info.value)


# -- the design description stats and report read --------------------------------------


def test_design_carries_roles_transforms_and_tuning():
    p = parse(GOOD.replace("epochs: 2", "epochs: 2\n  lr: [0.01, 0.1]") + "  tune: [lr]\n")
    d = p.design()
    assert (d.treatment, d.control, d.variants) == ("head", "plain", ("bn",))
    assert "head" not in d.conditions and "imbalance_ratio" in d.conditions
    # ratios are log-scaled by default, learning rates per x10; the analysis never needs to
    # know the factor's name
    assert d.moderators == {"architecture": "identity", "imbalance_ratio": "log", "lr": "log10"}
    assert d.tuning == ("lr",) and d.select_by == "val_balanced_acc"
    assert d.tune_settings == {"lr": TuneDesign()}  # the list form: no bounds, no extension
    assert d.metrics["nll"].direction == "lower"
    d = parse(GOOD + "  transforms: {imbalance_ratio: identity}\n").design()
    assert d.moderators["imbalance_ratio"] == "identity" and d.select_by is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  transforms: {architecture: log}\n", "analysis.transforms.architecture: log needs"),
        ("  transforms: {head: log}\n", "analysis.transforms.head: 'head' is the treatment"),
        (
            "  transforms: {batch_sise: log}\n",
            "analysis.transforms.batch_sise: unknown name "
            "'batch_sise' (did you mean 'batch_size'?); allowed: ",
        ),
        ("  tune: [learning_rate]\n", "analysis.tune[0]: 'learning_rate' is not a factor"),
        ("  tune: [lr]\n  select_by: balanced_acc\n", "analysis.select_by: 'balanced_acc' is"),
        ("  transforms: {architecture: log2}\n", "analysis.transforms.architecture: log2 needs"),
        ("  transforms: {imbalance_ratio: log3}\n", "analysis.transforms.imbalance_ratio: input"),
    ],
)
def test_bad_transforms_and_tuning_are_refused(extra, expected):
    with pytest.raises(ProtocolError) as info:
        parse(GOOD + extra)
    assert expected in str(info.value)


# -- moderators on their natural scale ----------------------------------------------------

LR_GRID = GOOD.replace("epochs: 2", "epochs: 2\n  batch_size: [16, 64]\n  lr: [0.01, 0.1]")


def test_batch_size_and_learning_rate_slopes_default_to_doublings_and_powers_of_ten():
    d = parse(LR_GRID).design()
    assert d.moderators["batch_size"] == "log2" and d.moderators["lr"] == "log10"
    assert d.moderators["imbalance_ratio"] == "log"
    declared = "  transforms: {batch_size: identity, imbalance_ratio: log10, lr: log2}\n"
    d = parse(LR_GRID + declared).design()
    assert d.moderators == {
        "architecture": "identity",
        "imbalance_ratio": "log10",
        "batch_size": "identity",
        "lr": "log2",
    }
    assert slope_unit("log2", "batch_size") == "per doubling of batch_size"
    assert slope_unit("log10", "lr") == "per x10 of lr"
    assert slope_unit("log", "imbalance_ratio") == "per unit of ln(imbalance_ratio)"
    assert slope_unit("identity", "epochs") == "per unit of epochs"


# -- tuning declarations ----------------------------------------------------------------

TUNE_MAP = "  tune: {lr: {bounds: [1.0e-4, 1.0], extend: true, factor: 3}}\n"


def test_tune_mapping_form_is_carried_into_the_design():
    listed, mapped = parse(LR_GRID + "  tune: [lr]\n"), parse(LR_GRID + TUNE_MAP)
    d = mapped.design()
    assert d.tuning == ("lr",) and d.select_by == "val_balanced_acc"
    assert d.tune_settings == {"lr": TuneDesign((1e-4, 1.0), True, 3.0)}
    assert d.tune_setting("lr").bounds == (1e-4, 1.0)
    assert d.tune_setting("batch_size") == TuneDesign()  # not tuned: nothing declared
    # YAML reads 1e-4 (no dot) as a string; it is still the number
    written = parse(LR_GRID + "  tune: {lr: {bounds: [1e-4, 1.0], extend: true, factor: 3}}\n")
    assert written.design().tune_settings == d.tune_settings
    # the same trials, ids and blocks whichever form declares the tuning
    assert [t.trial_id for t in mapped.expand()] == [t.trial_id for t in listed.expand()]
    bare = parse(LR_GRID + "  tune: {lr: }\n").design()
    assert bare.tuning == ("lr",) and bare.tune_settings == {"lr": TuneDesign()}
    assert parse(LR_GRID + "  tune: {lr: {bounds: [0.01, 0.1]}}\n").design().tune_settings[
        "lr"
    ] == TuneDesign((0.01, 0.1), False, None)


def test_a_declared_bound_is_not_an_open_edge_of_the_grid():
    grid = [0.01, 0.03, 0.1]
    free = TuneDesign()
    assert free.open_edge(0.01, grid) and free.open_edge(0.1, grid)
    assert not free.open_edge(0.03, grid) and not free.open_edge(0.1, [0.1])
    bounded = TuneDesign(bounds=(1e-4, 0.1))
    assert bounded.open_edge(0.01, grid) and not bounded.open_edge(0.1, grid)


@pytest.mark.parametrize(
    ("tune", "expected"),
    [
        ("{lr: {extend: true, factor: 1}}", "analysis.tune.lr.factor: input should be greater"),
        ("{lr: {extend: true}}", "analysis.tune.lr: extend: true needs factor"),
        ("{lr: {factor: 3}}", "analysis.tune.lr: factor grows the grid only with extend: true"),
        ("{lr: {bounds: [1.0, 0.001]}}", "analysis.tune.lr.bounds: expected [low, high]"),
        ("{lr: {bounds: [0.001]}}", "analysis.tune.lr.bounds"),
        ("{lr: {bounds: [0, 1.0]}}", "analysis.tune.lr.bounds: lr's grid is log-spaced (log10)"),
        ("{lr: {bounds: [0.02, 1.0]}}", "analysis.tune.lr.bounds: level(s) [0.01] of lr lie"),
        ("{lr: {colour: red}}", "analysis.tune.lr.colour: unknown key 'colour'; allowed: bounds"),
        ("{learning_rate: {}}", "analysis.tune.learning_rate: 'learning_rate' is not a factor"),
        ("{architecture: {bounds: [0, 1]}}", "analysis.tune.architecture.bounds: bounds need"),
        ("{architecture: {extend: true, factor: 2}}", "analysis.tune.architecture.extend:"),
        ("[lr, lr]", "analysis.tune: duplicate value 'lr'"),
        ("[lr, learning_rate]", "analysis.tune[1]: 'learning_rate' is not a factor"),
    ],
)
def test_bad_tuning_declarations_name_the_field(tune, expected):
    with pytest.raises(ProtocolError) as info:
        parse(LR_GRID + f"  tune: {tune}\n")
    message = str(info.value)
    assert "\n" not in message and message.startswith("p.yaml: " + expected), message


def test_bounds_of_a_linear_factor_may_reach_zero():
    text = LR_GRID.replace("epochs: 2", "epochs: 2\n  weight_decay: [0.0, 0.001]")
    d = parse(text + "  tune: {weight_decay: {bounds: [0, 0.01]}}\n").design()
    assert d.tune_settings["weight_decay"].bounds == (0.0, 0.01)


# -- warnings ---------------------------------------------------------------------------


def test_a_learning_rate_averaged_over_is_warned_about():
    (line,) = parse(LR_GRID).warnings()
    assert line.startswith("factors.lr has 2 levels but analysis.tune does not tune it")
    assert "mixes the head's effect with its tolerance of a bad learning rate" in line
    assert parse(LR_GRID + "  tune: [lr]\n").warnings() == []
    assert parse(LR_GRID + TUNE_MAP).warnings() == []
    assert parse(GOOD).warnings() == []  # one learning rate: nothing averaged over
    other = LR_GRID.replace("epochs: 2", "epochs: 2\n  weight_decay: [0.0, 0.001]")
    assert len(parse(other + "  tune: [weight_decay]\n").warnings()) == 1


def test_a_large_protocol_is_warned_about():
    big = GOOD.replace("seeds: 3", "seeds: 2000")
    (line,) = parse(big).warnings()
    assert line == "24,000 trials (more than 10,000); check the seed count and factor levels"
