"""Growing the tuning grid (``analysis.tune: {lr: {extend: true, factor: 3}}``, ``bnstudy run
--extend-grid``): the next level's arithmetic, the record, and runs with a made-up trial
function whose validation accuracy peaks beyond the grid."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from joblib.externals.loky.backend.reduction import cloudpickle  # the pickler loky uses

from bnstudy import cli, study
from bnstudy.catalogue import METRICS
from bnstudy.results_format import GROWN_LEVELS, Provenance
from bnstudy.spec import grow
from bnstudy.spec.loading import parse_protocol
from bnstudy.store import ResultStore
from tiny_protocol import tiny_text

TUNE = "analysis:\n  tune: {lr: {extend: true, factor: 3, bounds: [%s, 1.0]}}\n"


def grid_text(tune: str = TUNE % "1.0e-4", name: str = "tiny") -> str:
    """The tiny protocol (2 heads x imbalance 1, 10 x 2 seeds) over lr 0.03, 0.1, 0.3."""
    text = tiny_text(name=name, extra=tune)
    return text.replace("  batch_size: 32\n", "  batch_size: 32\n  lr: [0.03, 0.1, 0.3]\n")


def grid(tune: str = TUNE % "1.0e-4"):
    return parse_protocol(grid_text(tune), "tiny.yaml", known=study.known_names())


def _result(trial, device, peak: float):
    """Validation (and test) balanced accuracy peaking at lr ``peak``, quadratic in log10(lr),
    the same ranking for every seed."""
    from bnstudy.training.trial_result import TrialResult

    x = math.log10(trial.lr / peak)
    value = 0.9 - 0.05 * x * x + 0.001 * trial.seed
    metrics = {name: 0.5 for name in METRICS} | {"val_balanced_acc": value, "balanced_acc": value}
    now = dt.datetime.now(dt.UTC)
    return TrialResult("ok", None, metrics, {"train_loss": [0.1]}, {}, now, now, device)


def peaked(trial, device, data_options=None):
    """bn at imbalance 1 peaks at lr 0.005, below the grid; every other arm and condition at
    0.1, inside it."""
    low = trial.head == "bn" and trial.imbalance_ratio == 1
    return _result(trial, device, 0.005 if low else 0.1)


def far(trial, device, data_options=None):
    """As :func:`peaked`, with bn's peak at 0.0005, far below."""
    low = trial.head == "bn" and trial.imbalance_ratio == 1
    return _result(trial, device, 0.0005 if low else 0.1)


cloudpickle.register_pickle_by_value(sys.modules[__name__])

WHERE = (("imbalance_ratio", 1.0),)


def _run(protocol, path, trial_fn=peaked, **options):
    lines: list[str] = []
    outcome = study.run(
        protocol, path, analyse=False, jobs=1, trial_fn=trial_fn, on_round=lines.append, **options
    )
    return outcome.summary, lines


# -- the arithmetic -----------------------------------------------------------------------


def test_the_next_level_is_rounded_clipped_at_the_bound_and_none_at_it():
    lr = grow.Growth(3.0, (1e-4, 1.0))
    assert grow.next_level(grow.Edge("lr", "low", 0.1), lr) == 0.0333
    assert grow.next_level(grow.Edge("lr", "low", 0.01), lr) == 0.00333
    assert grow.next_level(grow.Edge("lr", "high", 0.3), lr) == 0.9
    assert grow.next_level(grow.Edge("lr", "high", 0.5), lr) == 1.0  # clipped
    assert grow.next_level(grow.Edge("lr", "high", 1.0), lr) is None  # at the bound
    assert grow.next_level(grow.Edge("lr", "low", 1e-4), lr) is None
    assert grow.next_level(grow.Edge("lr", "low", 1e-4), grow.Growth(3.0)) == 3.33e-5
    batch = grow.Growth(2.0, (16, 200), integer=True)
    assert grow.next_level(grow.Edge("batch_size", "high", 128), batch) == 200
    assert grow.next_level(grow.Edge("batch_size", "low", 32), batch) == 16
    assert (
        grow.next_level(grow.Edge("batch_size", "low", 1), grow.Growth(2.0, integer=True)) is None
    )


def test_which_factors_grow_the_protocol_or_the_flag_decides():
    declared = grid().design().tune_settings
    listed = grid("analysis:\n  tune: [lr]\n").design().tune_settings
    levels = {"lr": [0.03, 0.1, 0.3]}
    assert grow.growth_settings(declared, levels) == {"lr": grow.Growth(3.0, (1e-4, 1.0))}
    assert grow.growth_settings(declared, levels, force=False) == {}
    assert grow.growth_settings(listed, levels) == {}
    assert grow.growth_settings(listed, levels, force=True) == {"lr": grow.Growth(3.0)}


def test_a_grown_level_adds_trials_for_every_arm_and_seed_and_changes_no_id():
    protocol = grid()
    before = protocol.expand()
    grown = protocol.with_grown([grow.GrownLevel("lr", 0.01, 1, WHERE)])
    after = grown.expand()
    assert set(before) < set(after)  # every trial as it was: settings, id, block
    new = [t for t in after if t.lr == 0.01]
    assert len(new) == 4 and len(after) == len(before) + 4
    assert {(t.head, t.seed) for t in new} == {("plain", 0), ("bn", 0), ("plain", 1), ("bn", 1)}
    assert {t.imbalance_ratio for t in new} == {1.0}
    assert len({t.block_id for t in new}) == 2  # both arms of each seed's block
    assert protocol.expand() == before  # the protocol itself is unchanged
    assert grown.with_grown(grown.grown) is grown


def test_the_record_reads_back_and_says_what_grew():
    levels = [
        grow.GrownLevel("lr", 0.01, 1, WHERE),
        grow.GrownLevel("lr", 0.00333, 2, WHERE),
        grow.GrownLevel("lr", 0.9, 1, (("imbalance_ratio", 10.0),)),
        grow.GrownLevel("lr", 0.9, 1, WHERE),
    ]
    metadata = Provenance(grown_levels=grow.to_record(levels)).metadata()
    assert grow.recorded(metadata) == tuple(levels)
    assert Provenance.read(metadata).grown_levels == grow.to_record(levels)
    assert grow.describe(levels) == [
        "lr grown: 0.01 (round 1), 0.00333 (round 2), 0.9 (round 1, 2 conditions)"
    ]
    assert grow.recorded({}) == ()
    with pytest.raises(ValueError, match="unreadable grown_levels"):
        grow.recorded({GROWN_LEVELS: '{"lr": [{"level": -1, "round": 1}]}'})


# -- runs -----------------------------------------------------------------------------------


def test_a_run_grows_the_grid_to_the_peak_and_stops(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    protocol = grid()
    first_ids = {t.trial_id for t in protocol.expand()}
    summary, lines = _run(protocol, path)

    # bn at imbalance 1 peaks at 0.005: 0.03 -> 0.01 -> 0.00333 (still the best, the lowest)
    # -> 0.00111, and 0.00333 is inside the grid: three rounds, 4 trials each.
    assert lines == [
        "grid round 1: lr 0.01 (1 condition): 4 new trials",
        "grid round 2: lr 0.00333 (1 condition): 4 new trials",
        "grid round 3: lr 0.00111 (1 condition): 4 new trials",
    ]
    assert summary.total == 36 and summary.ran == 36 and summary.skipped == 0
    store = ResultStore(path)
    record = json.loads(store.metadata()[GROWN_LEVELS])
    where = {"imbalance_ratio": 1.0}
    assert record == {
        "lr": [
            {"level": 0.01, "round": 1, "where": where},
            {"level": 0.00333, "round": 2, "where": where},
            {"level": 0.00111, "round": 3, "where": where},
        ]
    }
    table = pd.read_parquet(path)
    assert len(table) == 36 and table["trial_id"].is_unique
    assert first_ids <= set(table["trial_id"])  # the protocol's trials, ids unchanged
    grown_rows = table[~table["lr"].isin([0.03, 0.1, 0.3])]
    assert sorted(grown_rows["lr"].unique()) == [0.00111, 0.00333, 0.01]
    assert set(grown_rows["imbalance_ratio"]) == {1.0}
    for _, rows in grown_rows.groupby("lr"):  # every arm and seed at each new level
        assert sorted(zip(rows["head"], rows["seed"], strict=True)) == [
            ("bn", 0),
            ("bn", 1),
            ("plain", 0),
            ("plain", 1),
        ]

    # Read back, the grown trials are the protocol's: analysed, counted by status.
    recorded = study.load_results(path)
    assert len(recorded.results.table) == 36 and recorded.results.metadata["ignored_rows"] == "0"
    counts = study.status(protocol, path)
    assert counts.loc["total", "total"] == 36 and "missing" not in counts.columns
    assert study.grown_levels(protocol, path) == [
        "lr grown: 0.01 (round 1), 0.00333 (round 2), 0.00111 (round 3)"
    ]

    # A resumed run finds every trial done and grows nothing more.
    again, lines = _run(protocol, path)
    assert again.ran == 0 and again.skipped == 36 and lines == []
    assert json.loads(ResultStore(path).metadata()[GROWN_LEVELS]) == record


def test_a_declared_bound_stops_the_growth(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    summary, lines = _run(grid(TUNE % "0.002"), path, trial_fn=far)
    # 0.03 -> 0.01 -> 0.00333 -> 0.002 (the bound, not 0.00111), chosen there: no open edge.
    assert [line.split(":")[1] for line in lines] == [
        " lr 0.01 (1 condition)",
        " lr 0.00333 (1 condition)",
        " lr 0.002 (1 condition)",
    ]
    assert summary.ran == 36
    assert sorted(pd.read_parquet(path)["lr"].unique()) == [0.002, 0.00333, 0.01, 0.03, 0.1, 0.3]


def test_rounds_run_out_and_a_resume_goes_on_from_the_last(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    summary, lines = _run(grid(), path, max_rounds=1)
    assert lines == [
        "grid round 1: lr 0.01 (1 condition): 4 new trials",
        "grid: no round past 1: lr still chosen at an open edge in 1 condition",
    ]
    assert summary.ran == 28
    again, lines = _run(grid(), path, max_rounds=2)
    assert again.skipped == 28 and again.ran == 4
    assert lines[0] == "grid round 2: lr 0.00333 (1 condition): 4 new trials"


def test_the_flag_grows_a_grid_the_protocol_does_not_and_turns_growth_off(tmp_path: Path):
    listed = grid("analysis:\n  tune: [lr]\n")
    summary, lines = _run(listed, tmp_path / "off.parquet")
    assert summary.ran == 24 and lines == []  # not declared: not grown
    summary, lines = _run(grid(), tmp_path / "no.parquet", extend_grid=False)
    assert summary.ran == 24 and lines == []
    summary, lines = _run(listed, tmp_path / "on.parquet", extend_grid=True)
    assert summary.ran == 36 and len(lines) == 3  # by the default factor, 3


def test_the_cli_grows_with_extend_grid_and_status_shows_the_levels(
    tmp_path: Path, monkeypatch, capsys
):
    protocol_file = tmp_path / "tiny.yaml"
    protocol_file.write_text(grid_text("analysis:\n  tune: [lr]\n"))
    path = tmp_path / "tiny.parquet"
    real_run = study.run
    monkeypatch.setattr(study, "run", lambda *a, **k: real_run(*a, trial_fn=peaked, **k))
    argv = ["run", str(protocol_file), "--results", str(path), "--no-report", "-q", "-j", "1"]
    assert cli.main([*argv, "--extend-grid"]) == 0
    out = capsys.readouterr().out
    assert "grid round 1: lr 0.01 (1 condition): 4 new trials" in out
    assert "36 trials: 0 already done, 36 run" in out

    assert cli.main(["status", str(protocol_file), "--results", str(path)]) == 0
    out = capsys.readouterr().out
    assert "36 trials" in out
    assert "lr grown: 0.01 (round 1), 0.00333 (round 2), 0.00111 (round 3)" in out
