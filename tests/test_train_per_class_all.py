"""``train_per_class: all``: a trial trains on its dataset's whole training pool (after the
validation split), unbalanced; trials hold it as ``ALL_TRAIN`` (0), integer levels keep their
ids, and an imbalance ratio other than 1 is refused at validation."""

from __future__ import annotations

import textwrap

import pytest

from bnstudy.data.imbalance import WHOLE_POOL, training_counts
from bnstudy.spec.claims import designs
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.trial import ALL_TRAIN

KNOWN = {"architecture": ["mlp"], "head": ["plain", "bn"], "dataset": ["synthetic", "mnist1d"]}

PROTOCOL = """\
name: whole
seeds: 2
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: mnist1d
  train_per_class: {levels}
  imbalance_ratio: {ratios}
  steps: 5
control: plain
{extra}"""

#: The MNIST-1D pool at its defaults (4,000 training signals, 10% of each class held out for
#: validation): 3,601 training signals, and these per class.
POOL_COUNTS = [358, 356, 370, 355, 355, 362, 361, 364, 362, 358]


def parse(levels="[all, 300]", ratios="1", extra=""):
    text = PROTOCOL.format(levels=levels, ratios=ratios, extra=extra)
    return parse_protocol(textwrap.dedent(text), source="p.yaml", known=KNOWN)


def test_all_is_held_as_the_sentinel_and_named_only_where_used():
    trials = parse().expand()
    assert ALL_TRAIN == WHOLE_POOL == 0  # data/ cannot import spec/: one value, two names
    assert sorted({t.train_per_class for t in trials}) == [ALL_TRAIN, 300]
    counted = parse(levels="300").expand()
    # the integer level's trials are the same trials, with the same ids, beside ``all``
    assert {t.trial_id for t in counted} < {t.trial_id for t in trials}
    whole = [t for t in trials if t.train_per_class == ALL_TRAIN]
    assert all(t.identity()["train_per_class"] == ALL_TRAIN for t in whole)
    assert not {t.trial_id for t in whole} & {t.trial_id for t in counted}


def test_integer_levels_keep_their_ids():
    """Golden ids of an integer level, recorded before ``all`` existed."""
    trial = parse(levels="300").expand()[0]
    assert (trial.trial_id, trial.block_id) == ("674ef34589d9d2c9", "15acf4f3b08f77c7")


@pytest.mark.parametrize(
    ("levels", "ratios", "extra", "expected"),
    [
        (
            "all",
            "[1, 10]",
            "",
            "p.yaml: factors.train_per_class: all (the whole training pool, unbalanced) cannot "
            "be made imbalanced: imbalance_ratio 10 needs a count per class; give one, or leave "
            "the pair out with exclude: [{train_per_class: all, imbalance_ratio: 10}]",
        ),
        ("0", "1", "", "factors.train_per_class: expected a whole number of images per class"),
        ("[al, 300]", "1", "", "or 'all' (the whole training pool); got 'al'"),
    ],
)
def test_all_with_an_imbalance_and_other_spellings_are_refused_in_one_line(
    levels, ratios, extra, expected
):
    with pytest.raises(ProtocolError) as info:
        parse(levels, ratios, extra)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_exclusions_and_hypotheses_name_the_level_all():
    extra = """\
exclude: [{train_per_class: all, imbalance_ratio: 10}]
hypotheses:
  - {id: h, claim: c, metric: balanced_acc, variant: bn, control: plain, expect: higher,
     where: {train_per_class: all}}
"""
    p = parse(ratios="[1, 10]", extra=extra)
    settings = {(t.train_per_class, t.imbalance_ratio) for t in p.expand()}
    assert settings == {(ALL_TRAIN, 1.0), (300, 1.0), (300, 10.0)}
    assert designs(p)[0].where == {"train_per_class": (ALL_TRAIN,)}


TREATED = PROTOCOL.replace(
    "control: plain", "treatment: {{factor: train_per_class, control: {control}}}"
)
H = (
    "hypotheses:\n"
    "  - {{id: h, claim: c, metric: balanced_acc, variant: {v}, control: {c}, expect: higher}}\n"
)


def treated(control="all", extra="", levels="[all, 50]"):
    text = TREATED.format(levels=levels, ratios="1", extra=extra, control=control)
    return parse_protocol(text, source="p.yaml", known=KNOWN)


def test_all_names_the_treatments_control_and_a_hypotheses_arms():
    p = treated()
    assert p.control_level == ALL_TRAIN and p.control_arm == "train_per_class all"
    assert p.variant_arms == ["train_per_class 50"]
    (design,) = designs(treated("50", H.format(v="all", c=50)))
    assert (design.variant, design.control) == ("train_per_class all", "train_per_class 50")
    # ``all`` anywhere else is no level of another treatment factor's hypotheses
    assert designs(parse(extra=H.format(v="bn", c="plain")))[0].variant == "bn"


@pytest.mark.parametrize(
    ("control", "extra", "levels", "expected"),
    [
        (
            "40",
            "",
            "[all, 50]",
            "treatment.control: 40 is not a level of train_per_class; levels: ['all', 50]",
        ),
        (
            "all",
            "",
            "[60, 50]",
            "treatment.control: 'all' is not a level of train_per_class; levels: [60, 50]",
        ),
        (
            "all",
            H.format(v=40, c="all"),
            "[all, 50]",
            "hypotheses[0].variant: 40 is not a level "
            "of the treatment train_per_class; levels: ['all', 50]",
        ),
        (
            "50",
            "exclude: [{train_per_class: 40}]",
            "[all, 50]",
            "exclude[0].train_per_class: 40 is not a level of train_per_class; levels: ['all', 50]",
        ),
        (
            "all",
            "",
            "all",
            "factors.train_per_class: needs the control and at least one variant "
            "to compare; got ['all']",
        ),
    ],
)
def test_levels_are_shown_as_written(control, extra, levels, expected):
    with pytest.raises(ProtocolError) as info:
        treated(control, extra, levels)
    assert expected in str(info.value)


def test_a_slope_over_all_and_counts_is_warned_about():
    (warning,) = [w for w in parse().warnings() if "train_per_class" in w]
    assert "trials hold all as 0" in warning and "\n" not in warning
    assert not parse(levels="all").warnings()


def test_training_counts_take_the_whole_pool_only_when_balanced():
    assert training_counts("exp", WHOLE_POOL, POOL_COUNTS, 1.0) == POOL_COUNTS
    assert training_counts("exp", 300, POOL_COUNTS, 1.0) == [300] * 10
    with pytest.raises(ValueError, match="takes no imbalance_ratio"):
        training_counts("exp", WHOLE_POOL, POOL_COUNTS, 10.0)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BNSTUDY_DATA_DIR", str(tmp_path))


def test_mnist1d_all_trains_on_the_whole_pool_after_the_validation_split(make_trial, data_dir):
    """4,000 training signals less the 399 held out for validation: 3,601, unbalanced; with
    ``val_fraction: 0`` the 4,000 of the published split."""
    from bnstudy.data import build_dataset, pool_class_counts

    assert pool_class_counts("mnist1d") == POOL_COUNTS
    trial = make_trial(dataset="mnist1d", train_per_class=ALL_TRAIN)
    data = build_dataset(trial)
    assert len(data.y_train) == 3601 and len(data.y_val) == 399 and len(data.y_test) == 1000
    assert data.class_counts == POOL_COUNTS
    assert data.y_train.bincount().tolist() == POOL_COUNTS
    whole = build_dataset(trial, {"val_fraction": 0.0})
    assert len(whole.y_train) == 4000 and len(whole.y_val) == 0
    assert sum(whole.class_counts) == 4000 and min(whole.class_counts) == 394


def test_validate_and_the_cost_model_know_the_pool_size(data_dir):
    """394 per class (the smallest class at ``val_fraction: 0``) is more than the default
    pool holds, ``all`` is not; the cost model counts the pool's 3,601 signals per epoch."""
    from bnstudy.execution.cost import trial_steps
    from bnstudy.spec.feasibility import check_feasible

    with pytest.raises(ProtocolError, match="pool holds 355 for its smallest class"):
        check_feasible(parse(levels="394"), "p.yaml")
    check_feasible(parse(levels="all"), "p.yaml")
    text = PROTOCOL.format(levels="all", ratios="1", extra="").replace("steps: 5", "epochs: 2")
    trial = parse_protocol(text, source="p.yaml", known=KNOWN).expand()[0]
    assert trial_steps(trial, 10, POOL_COUNTS) == 3601 // 64 * 2
    with pytest.raises(ValueError, match="needs the pool's counts"):
        trial_steps(trial, 10)


def test_a_whole_pool_trial_trains_the_steps_the_cost_model_counts(make_trial, data_dir):
    from bnstudy.data import pool_class_counts
    from bnstudy.execution.cost import trial_steps
    from bnstudy.training.train import run_trial

    trial = make_trial(dataset="mnist1d", train_per_class=ALL_TRAIN, epochs=1, batch_size=64)
    result = run_trial(trial)
    assert result.metrics["steps_run"] == trial_steps(trial, 10, pool_class_counts("mnist1d"))
    assert result.metrics["steps_run"] == 3601 // 64
