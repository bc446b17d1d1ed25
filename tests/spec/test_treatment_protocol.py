"""Any factor as the treatment (``treatment: {factor: optimizer, control: sgd}``): parsing,
refusals, pairing blocks, head options as arms, hypotheses naming levels, and the default
(``control: plain``, the head) unchanged."""

from __future__ import annotations

import pytest

from bnstudy import study
from bnstudy.spec.claims import designs
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.trial import Trial, arm_of, level_label
from optimizer_protocol import OPTIMIZER, optimizer_text

BASE = optimizer_text()


def parse(text: str):
    return parse_protocol(text, "p.yaml", known=study.known_names())


def refused(text: str) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("p.yaml: ")
    return message


# -- the default ------------------------------------------------------------------------


def test_control_is_short_for_the_head_treatment():
    short = parse(BASE.replace("optimizer: [sgd, adamw]", "optimizer: sgd") + "control: plain\n")
    explicit = parse(
        BASE.replace("optimizer: [sgd, adamw]", "optimizer: sgd")
        + "treatment: {factor: head, control: plain}\n"
    )
    for p in (short, explicit):
        assert (p.treatment_factor, p.control_level) == ("head", "plain")
    assert short.design() == explicit.design()
    assert short.design().treatment == "head" and short.design().treatment_factor == ""
    ids = [(t.trial_id, t.block_id, t.stream_seed("init/fc")) for t in short.expand()]
    assert ids == [(t.trial_id, t.block_id, t.stream_seed("init/fc")) for t in explicit.expand()]
    # the head treatment is no part of an id (the trial of the first release)
    assert all("treatment" not in t.identity() for t in short.expand())


# -- another factor ---------------------------------------------------------------------


def test_optimizer_as_the_treatment():
    p = parse(BASE + OPTIMIZER)
    design = p.design()
    assert (design.treatment, design.control, design.variants) == ("arm", "sgd", ("adamw",))
    assert design.treatment_factor == design.treatment_name == "optimizer"
    assert "optimizer" not in design.conditions and "head" in design.conditions
    assert p.moderators == ["head", "imbalance_ratio"]
    assert study.arms_line(p) == "treatment optimizer: control 'sgd'; variants adamw"
    assert "treatment optimizer: control 'sgd'" in study.plan(p).describe()
    trials = p.expand()
    assert [t.arm for t in trials[:2]] == ["sgd", "adamw"]  # the treatment varies fastest
    assert all(t.treatment == "optimizer" for t in trials)


def test_the_block_is_every_other_factor():
    """Arms share a block (and every random stream); blocks differ in some other setting."""
    trials = parse(BASE + OPTIMIZER).expand()
    blocks: dict[str, list[Trial]] = {}
    for t in trials:
        blocks.setdefault(t.block_id, []).append(t)
    assert len(blocks) == 3 * 2 * 2  # seeds x heads x ratios
    rest = set()
    for arms in blocks.values():
        assert sorted(t.optimizer for t in arms) == ["adamw", "sgd"]
        others = [{k: v for k, v in t.settings().items() if k != "optimizer"} for t in arms]
        assert others[0] == others[1]
        for stream in ("subset", "order/0", "init/body.0", "dropout"):
            assert len({t.stream_seed(stream) for t in arms}) == 1
        rest.add(tuple(sorted(others[0].items())))
    assert len(rest) == len(blocks)  # every other setting tells the blocks apart


def test_another_treatment_pairs_differently_so_its_trials_have_other_ids():
    """The same settings paired over another factor draw other random streams: another trial."""
    head = parse(BASE + "control: plain\n").expand()
    optimizer = parse(BASE + OPTIMIZER).expand()
    assert {t.trial_id for t in head}.isdisjoint(t.trial_id for t in optimizer)
    assert all(t.identity()["treatment"] == "optimizer" for t in optimizer)


def test_architecture_as_the_treatment_shares_the_seed_streams():
    """Architectures' options go with them to the arm; the block (data, order, the init
    streams of layers of the same name) is shared, the weights cannot be."""
    p = parse(
        BASE.replace("architecture: mlp", "architecture: [mlp, cnn]")
        + "architectures: {mlp: {width: 64}}\n"
        + "treatment: {factor: architecture, control: mlp}\n"
    )
    trials = p.expand()
    mlp, cnn = trials[:2]
    assert (mlp.arm, cnn.arm) == ("mlp", "cnn") and mlp.arch_options != cnn.arch_options
    assert mlp.block_id == cnn.block_id
    assert mlp.stream_seed("init/body.0") == cnn.stream_seed("init/body.0")
    assert len({t.block_id for t in trials}) == len(trials) // 2


def test_pretraining_as_the_treatment_takes_its_stage_to_the_arm():
    p = parse(
        BASE.replace("optimizer: [sgd, adamw]", "pretrain: [none, other]")
        + "pretraining:\n  other: {dataset: synthetic, steps: 10}\n"
        + "treatment: {factor: pretrain, control: none}\n"
    )
    scratch, pretrained = p.expand()[:2]
    assert (scratch.arm, pretrained.arm) == ("none", "other")
    assert pretrained.pretrain_stage and not scratch.pretrain_stage
    assert scratch.block_id == pretrained.block_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "treatment: {factor: optimiser, control: sgd}\n",
         "treatment.factor: unknown name 'optimiser' (did you mean 'optimizer'?); allowed: "),
        (BASE + "treatment: {factor: seed, control: 0}\n",
         "treatment.factor: seed is the replication, not a factor"),
        (BASE + "treatment: {factor: dataset, control: synthetic}\n",
         "treatment.factor: dataset cannot be the treatment: the arms would be scored on "
         "different test sets"),
        (BASE + "treatment: {factor: optimizer, control: adam}\n",
         "treatment.control: 'adam' is not a level of optimizer; levels: ['sgd', 'adamw']"),
        (BASE + "treatment: {factor: batch_size, control: 16}\n",
         "factors.batch_size: needs the control and at least one variant to compare; got [16]"),
        (BASE.replace("epochs: 1", "epochs: 1\n  lr: [0.01, 0.1]")
         + "treatment: {factor: lr, control: 0.01}\nanalysis: {tune: [lr]}\n",
         "treatment.factor: lr is tuned (analysis.tune): each arm is set to its own best lr, "
         "so it cannot also be the treatment"),
        (BASE + OPTIMIZER + "control: plain\n", "control: give the control once"),
        (BASE, "control: required field is missing (or give treatment: "),
        (BASE + "control: ln\n", "control: 'ln' is not among the heads; allowed: plain, bn"),
        (BASE + "treatment: {factor: hidden_width, control: 0}\n".replace(
            "treatment", "  hidden_width: [0, 32]\ntreatment", 1),
         "treatment.factor: head 'plain' does not take hidden_width"),
    ],
    ids=["unknown", "seed", "dataset", "control", "one level", "tuned", "both", "neither",
         "short form", "head option"],
)  # fmt: skip
def test_a_treatment_that_cannot_be_is_refused_in_one_line(text, expected):
    assert expected in refused(text)


def test_a_hypothesis_names_levels_of_the_treatment():
    hyp = (
        "hypotheses:\n  - {id: h, claim: adamw helps, metric: balanced_acc, variant: adamw, "
        "control: sgd, expect: higher}\n"
    )
    (h,) = designs(parse(BASE + OPTIMIZER + hyp))
    assert (h.variant, h.control) == ("adamw", "sgd")
    message = refused(BASE + OPTIMIZER + hyp.replace("variant: adamw", "variant: bn"))
    assert "hypotheses[0].variant: 'bn' is not a level of the treatment optimizer" in message
    # ``where`` may not name the treatment: it is no condition
    where = hyp.replace("expect:", "where: {optimizer: sgd}, expect:")
    assert "hypotheses[0].where.optimizer: 'optimizer' is the treatment, not a condition" in (
        refused(BASE + OPTIMIZER + where)
    )


# -- a head option as the treatment -----------------------------------------------------

DROPOUT = BASE.replace("optimizer: [sgd, adamw]", "dropout: [0.0, 0.3]")


def test_dropout_as_the_treatment_on_every_head():
    p = parse(DROPOUT + "treatment: {factor: dropout, control: 0}\n")
    design = p.design()
    assert (design.control, design.variants) == ("dropout 0", ("dropout 0.3",))
    trials = p.expand()
    assert len(trials) == 3 * 2 * 2 * 2
    for head in ("plain", "bn"):
        arms = [t for t in trials if t.head == head and t.seed == 0 and t.imbalance_ratio == 1]
        assert [(t.arm, t.dropout) for t in arms] == [("dropout 0", 0.0), ("dropout 0.3", 0.3)]
        assert len({t.block_id for t in arms}) == 1
    # each row records the rate it trained with
    assert {t.settings()["dropout"] for t in trials} == {0.0, 0.3}


def test_dropout_places_are_arms_of_a_dropout_treatment():
    """``dropout_at`` applies at rate 0.3 only: it belongs to the arm, and both places pair
    with the one control without dropout."""
    p = parse(
        DROPOUT.replace("head: [plain, bn]", "head: bn")
        + "  dropout_at: [before_norm, after_norm]\n"
        + "treatment: {factor: dropout, control: 0}\n"
    )
    assert p.arm_options == ("dropout_at",)
    design = p.design()
    assert design.control == "dropout 0"
    assert design.variants == ("dropout 0.3", "dropout 0.3[dropout_at=after_norm]")
    assert "dropout_at" not in design.conditions
    seed0 = [t for t in p.expand() if t.seed == 0 and t.imbalance_ratio == 1]
    assert len(seed0) == 3 and len({t.block_id for t in seed0}) == 1


def test_dropout_at_as_the_treatment_needs_a_dropout():
    text = DROPOUT.replace("head: [plain, bn]", "head: bn") + (
        "  dropout_at: [before_norm, after_norm]\n"
        "treatment: {factor: dropout_at, control: before_norm}\n"
    )
    assert "factors.dropout: dropout_at applies only where dropout > 0" in refused(text)
    p = parse(text.replace("dropout: [0.0, 0.3]", "dropout: 0.3"))
    assert p.design().variants == ("after_norm",)


def test_numeric_levels_are_compared_as_the_factor_type():
    hyp = (
        "hypotheses:\n  - {id: h, claim: dropout helps, metric: balanced_acc, variant: 0.3, "
        "control: 0, expect: higher}\n"
        "  - {id: g, claim: the same, metric: balanced_acc, variant: 'dropout 0.3', "
        "control: '0.0', expect: higher}\n"
    )
    p = parse(DROPOUT + "treatment: {factor: dropout, control: 0}\n" + hyp)
    assert p.control_level == 0.0 and isinstance(p.control_level, float)
    for h in designs(p):
        assert (h.variant, h.control) == ("dropout 0.3", "dropout 0")
    message = refused(DROPOUT + "treatment: {factor: dropout, control: 0}\n" + hyp.replace(
        "variant: 0.3", "variant: 0.5"))  # fmt: skip
    assert "hypotheses[0].variant: 0.5 is not a level of the treatment dropout" in message


def test_level_labels_read_naturally():
    assert level_label("head", "bn") == "bn" and level_label("optimizer", "adamw") == "adamw"
    assert level_label("dropout", 0.0) == "dropout 0" == level_label("dropout", 0)
    assert level_label("batch_size", 64) == level_label("batch_size", 64.0) == "batch_size 64"
    assert level_label("lr", 5e-4) == "lr 0.0005"
    assert level_label("lr_milestones", "160,180") == "lr_milestones 160,180"
    assert arm_of({"head": "bn", "arm_options": ""}) == "bn"  # a row of an older table
    assert arm_of({"treatment": "dropout", "dropout": 0.3, "head": "bn"}) == "dropout 0.3"


def test_a_numeric_arm_hashes_the_same_however_it_is_written():
    # variant 2048 and 2048.0 name one arm; the registration record must not depend on which
    # spelling the protocol used (a re-typed number would read as a changed hypothesis).
    def sha(variant: str, control: str) -> str:
        text = (
            "name: t\nseeds: 2\ntreatment: {factor: hidden_width, control: 32}\n"
            "factors: {architecture: mlp, head: hidden, dataset: synthetic, "
            "hidden_width: [32, 2048]}\n"
            "hypotheses:\n  - {id: h, claim: c, metric: balanced_acc, "
            f"variant: {variant}, control: {control}, expect: higher}}\n"
        )
        (design,) = designs(parse(text))
        return design.sha256

    assert sha("2048", "32") == sha("2048.0", "32.0") == sha("2048", "32.0")


# -- an imbalance shape as the treatment ------------------------------------------------

SHAPES = BASE.replace("optimizer: [sgd, adamw]", "imbalance_profile: [exp, step]")
PROFILE = "treatment: {factor: imbalance_profile, control: exp}\n"
FRACTION = "treatment: {factor: step_fraction, control: 0.5}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SHAPES.replace("[1, 10]", "1") + PROFILE,
         "p.yaml: factors.imbalance_ratio: imbalance_profile 'step' trains on the same images "
         "per class as the control 'exp' in every trial, so their difference is 0 by "
         "construction: at imbalance_ratio 1 every profile is balanced; give imbalance_ratio "
         "levels above 1"),
        (SHAPES.replace("[exp, step]", "exp\n  step_fraction: [0.5, 0.2]") + FRACTION,
         "p.yaml: factors.imbalance_profile: step_fraction 0.2 trains on the same images per "
         "class as the control 0.5 in every trial, so their difference is 0 by construction: "
         "step_fraction shapes imbalance_profile step only; add step to its levels"),
        # 10 classes: 5.2 and 5 minority classes round to the same 5
        (SHAPES.replace("[exp, step]", "step\n  step_fraction: [0.5, 0.52]") + FRACTION,
         "p.yaml: factors.step_fraction: step_fraction 0.52 trains on the same images per class "
         "as the control 0.5 in every trial, so their difference is 0 by construction: its "
         "class counts round to the control's"),
        # the whole pool is unbalanced, but alike under every profile
        (SHAPES.replace("[1, 10]", "1").replace("train_per_class: 20", "train_per_class: all")
         + PROFILE, "factors.imbalance_ratio: imbalance_profile 'step' trains on the same"),
    ],
    ids=["balanced", "not step", "rounded", "whole pool"],
)  # fmt: skip
def test_an_imbalance_shape_whose_arms_train_alike_is_refused(text, expected):
    assert expected in refused(text)


def test_an_imbalance_shape_that_differs_somewhere_is_the_treatment():
    """Equal arms in some conditions (ratio 1, the exp profile) are a regime, not a refusal."""
    assert parse(SHAPES + PROFILE).design().variants == ("step",)
    both = SHAPES.replace("[exp, step]", "[exp, step]\n  step_fraction: [0.5, 0.2]")
    assert parse(both + FRACTION).design().variants == ("step_fraction 0.2",)


def test_the_treatment_is_no_moderator_nor_transformed():
    batch = (
        BASE.replace("batch_size: 16", "batch_size: [16, 32]").replace(
            "optimizer: [sgd, adamw]", "optimizer: sgd"
        )
        + "treatment: {factor: batch_size, control: 16}\n"
    )
    assert refused(batch + "analysis: {moderators: [batch_size]}\n") == (
        "p.yaml: analysis.moderators[0]: 'batch_size' is the treatment, not a condition: its "
        "levels are the arms, each compared with the control, not a moderator of the effect"
    )
    assert "analysis.transforms.batch_size: 'batch_size' is the treatment, not a condition" in (
        refused(batch + "analysis: {transforms: {batch_size: log2}}\n")
    )
