"""The runner: streaming to the store, resume, failures recorded, interruption."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from joblib.externals.loky.backend.reduction import cloudpickle  # the pickler loky uses

from bnstudy import runner, study
from bnstudy.catalogue import METRICS
from bnstudy.protocol import parse_protocol
from bnstudy.store import ResultStore
from bnstudy.train import run_trial

TINY = """\
name: tiny
seeds: 2
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  imbalance_ratio: [1, 10]
  train_per_class: 40
  epochs: 2
  batch_size: 32
control: plain
"""


def tiny(text: str = TINY):
    return parse_protocol(textwrap.dedent(text), "tiny.yaml", known=study.known_names())


def test_run_writes_one_row_per_trial_then_resumes_without_rerunning(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    protocol = tiny()
    first = runner.run_protocol(protocol, path, jobs=2)
    assert first.ran == 8 and first.skipped == 0 and first.failed == 0
    table = pd.read_parquet(path)
    assert sorted(table["trial_id"]) == sorted(t.trial_id for t in protocol.expand())
    assert set(METRICS) <= set(table.columns)

    again = runner.run_protocol(protocol, path, jobs=2)
    assert again.ran == 0 and again.skipped == 8
    assert len(pd.read_parquet(path)) == 8


def test_interrupted_run_resumes_to_exactly_the_full_set(tmp_path: Path, monkeypatch):
    path = tmp_path / "tiny.parquet"
    protocol = tiny()
    stored = []
    real_append = ResultStore.append

    def append_then_die(self, row):
        real_append(self, row)
        stored.append(row["trial_id"])
        if len(stored) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived right after the third trial

    monkeypatch.setattr(ResultStore, "append", append_then_die)
    partial = runner.run_protocol(protocol, path, jobs=1)
    assert partial.interrupted
    assert len(pd.read_parquet(path)) == 3  # the finished trials were kept

    monkeypatch.setattr(ResultStore, "append", real_append)
    rest = runner.run_protocol(protocol, path, jobs=1)
    assert rest.skipped == 3 and rest.ran == 5
    table = pd.read_parquet(path)
    assert len(table) == 8 and table["trial_id"].is_unique
    assert set(table["trial_id"]) == {t.trial_id for t in protocol.expand()}


def instant(trial, device):
    """A made-up result in no time: for tests about bookkeeping, not training."""
    import datetime as dt
    import math

    from bnstudy.train import TrialResult

    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def flaky(trial, device):
    """Raises for the bn arm of seed 1; trains the rest."""
    if trial.head == "bn" and trial.seed == 1:
        raise RuntimeError("simulated out-of-memory")
    return run_trial(trial, device)


def dies(trial, device):
    """Kills its worker process on the bn arm of seed 1 (as the OOM killer would)."""
    if trial.head == "bn" and trial.seed == 1:
        os._exit(1)
    return run_trial(trial, device)


# Workers cannot import this test module: send the functions above by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_trial_that_raises_is_recorded_as_failed_and_the_run_goes_on(tmp_path, jobs):
    path = tmp_path / "tiny.parquet"
    summary = runner.run_protocol(tiny(), path, jobs=jobs, trial_fn=flaky)
    assert summary.failed == 2 and summary.statuses["ok"] + summary.statuses["collapsed"] == 6
    table = pd.read_parquet(path)
    failed = table[table["status"] == "failed"]
    assert len(failed) == 2
    assert failed["error"].str.startswith("RuntimeError: simulated out-of-memory").all()
    assert failed["test_acc"].isna().all()

    # failures are retried on the next run; the retry replaces the failed row
    retry = runner.run_protocol(tiny(), path, jobs=jobs)
    assert retry.ran == 2 and retry.failed == 0
    table = pd.read_parquet(path)
    assert len(table) == 8 and (table["status"] != "failed").all()


def test_a_dead_worker_stops_the_run_but_keeps_what_finished(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    summary = runner.run_protocol(tiny(), path, jobs=2, trial_fn=dies)
    assert summary.aborted
    kept = pd.read_parquet(path) if path.exists() else pd.DataFrame({"trial_id": []})
    assert kept["trial_id"].is_unique and len(kept) < 8
    rest = runner.run_protocol(tiny(), path, jobs=2)
    assert rest.skipped == len(kept) and rest.aborted is None
    table = pd.read_parquet(path)
    assert sorted(table["trial_id"]) == sorted(t.trial_id for t in tiny().expand())


def test_rows_carry_ids_settings_and_provenance(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    protocol = tiny(TINY.replace("seeds: 2", "seeds: 1").replace("[1, 10]", "10"))
    runner.run_protocol(protocol, path, jobs=1)
    results = study.read_results(path)
    row = results.table.iloc[0]
    assert row["imbalance_ratio"] == 10.0 and row["architecture"] == "mlp"
    assert list(row["class_counts"])[0] == 40 and list(row["class_counts"])[-1] == 4
    assert len(row["curve_train_loss"]) == 2
    assert row["device"] == "cpu"
    assert results.metadata["protocol"] == protocol.source_text
    assert "torch" in results.metadata["versions"]


def test_same_protocol_same_numbers_in_process_or_in_workers(tmp_path: Path):
    protocol = tiny(TINY.replace("seeds: 2", "seeds: 1"))
    a = runner.run_protocol(protocol, tmp_path / "a.parquet", jobs=1)
    b = runner.run_protocol(protocol, tmp_path / "b.parquet", jobs=2)
    assert a.ran == b.ran == 4
    cols = ["trial_id", *METRICS]
    ta = pd.read_parquet(tmp_path / "a.parquet")[cols].drop(columns="wall_s")
    tb = pd.read_parquet(tmp_path / "b.parquet")[cols].drop(columns="wall_s")
    pd.testing.assert_frame_equal(
        ta.sort_values("trial_id").reset_index(drop=True),
        tb.sort_values("trial_id").reset_index(drop=True),
    )


def test_an_edited_analysis_section_is_recorded_even_when_no_trial_runs(tmp_path: Path):
    """Only the analysis changed: no trial to run, but the report must use the new settings."""
    path = tmp_path / "tiny.parquet"
    runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant)
    before = study.read_results(path).metadata
    edited = tiny(TINY + "analysis:\n  metrics: [balanced_acc, nll]\n")
    again = runner.run_protocol(edited, path, jobs=1, trial_fn=instant)
    assert again.ran == 0
    after = study.read_results(path).metadata
    assert after["protocol"] == edited.source_text
    assert list(study.protocol_of(study.read_results(path)).analysis.metrics) == [
        "balanced_acc",
        "nll",
    ]
    assert after["versions"] == before["versions"]  # how the rows were made is kept
    assert after["written_at"] == before["written_at"]


def test_an_unusable_device_is_refused_before_any_trial_runs(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    with pytest.raises(ValueError, match="device 'cdua' is not usable here"):
        runner.run_protocol(tiny(), path, jobs=1, device="cdua", trial_fn=instant)
    assert not ResultStore(path).exists()
