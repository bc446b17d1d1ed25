"""The runner: streaming to the store, resume, failures recorded, interruption."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from joblib.externals.loky.backend.reduction import cloudpickle  # the pickler loky uses

from bnstudy import study
from bnstudy.catalogue import METRICS
from bnstudy.execution import runner
from bnstudy.store import ResultStore, StoreError
from bnstudy.training.train import run_trial
from tiny_protocol import tiny


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

    def append_then_die(self, row, *args, **kwargs):
        real_append(self, row, *args, **kwargs)
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


def instant(trial, device, data_options=None):
    """A made-up result in no time: for tests about bookkeeping, not training."""
    import datetime as dt
    import math

    from bnstudy.training.train import TrialResult

    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def flaky(trial, device, data_options=None):
    """Raises for the bn arm of seed 1; trains the rest."""
    if trial.head == "bn" and trial.seed == 1:
        raise RuntimeError("simulated out-of-memory")
    return run_trial(trial, device)


def dies(trial, device, data_options=None):
    """Ends its worker process on the bn arm of seed 1 (as a crash in native code would)."""
    if trial.head == "bn" and trial.seed == 1:
        os._exit(1)
    return instant(trial, device)


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


def test_trials_whose_worker_dies_twice_are_failed_and_the_run_goes_on(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    summary = runner.run_protocol(tiny(), path, jobs=2, trial_fn=dies)
    assert summary.aborted is None and not summary.interrupted
    assert summary.statuses == {"ok": 6, "failed": 2}
    table = pd.read_parquet(path)
    assert len(table) == 8 and table["trial_id"].is_unique
    died = (table["head"] == "bn") & (table["seed"] == 1)
    assert (table.loc[died, "error"] == "worker died (exit code 1)").all()
    assert (table.loc[died, "status"] == "failed").all()
    assert (table.loc[~died, "status"] == "ok").all()


def test_rows_carry_ids_settings_and_provenance(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    protocol = tiny(seeds=1, imbalance_ratio=10)
    runner.run_protocol(protocol, path, jobs=1)
    results = study.read_results(path)
    row = results.table.iloc[0]
    assert row["imbalance_ratio"] == 10.0 and row["architecture"] == "mlp"
    assert list(row["class_counts"])[0] == 40 and list(row["class_counts"])[-1] == 4
    assert len(row["curve_train_loss"]) == 2
    assert row["device"] == "cpu"
    assert results.metadata["protocol"] == protocol.source_text
    assert "torch" in results.metadata["versions"]
    machine = json.loads(results.metadata["machine"])
    assert machine["cpu_model"] == runner.cpu_model()
    if Path("/proc/cpuinfo").exists():  # CPU numbers differ between models: name it
        assert machine["cpu_model"] and machine["cpu_model"] != "x86_64"


def test_same_protocol_same_numbers_in_process_or_in_workers(tmp_path: Path):
    protocol = tiny(seeds=1)
    # The same thread count: by default CPU threads are divided among the workers (one job
    # would get every core), and CPU numbers can differ in their last digits between counts.
    a = runner.run_protocol(protocol, tmp_path / "a.parquet", jobs=1, threads=1)
    b = runner.run_protocol(protocol, tmp_path / "b.parquet", jobs=2, threads=1)
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
    edited = tiny(extra="analysis:\n  metrics: [balanced_acc, nll]\n")
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


def test_a_run_killed_at_any_moment_leaves_a_file_that_names_its_protocol(
    tmp_path: Path, monkeypatch
):
    """Every consolidation of a run writes the protocol; a copy of the files taken mid-run
    (what a SIGKILL would leave) analyses like a finished file."""
    path = tmp_path / "tiny.parquet"
    protocol = tiny()
    consolidated = []
    real_consolidate, real_append = ResultStore.consolidate, ResultStore.append

    def record_consolidate(self, metadata=None):
        consolidated.append(dict(metadata or {}))
        real_consolidate(self, metadata)

    def append_then_snapshot(self, row, metadata=None):
        real_append(self, row, metadata)
        snapshot = tmp_path / f"killed-{len(list(tmp_path.glob('killed-*')))}"
        snapshot.mkdir()
        for name in ("tiny.parquet", "tiny.pending"):
            if (tmp_path / name).is_dir():
                shutil.copytree(tmp_path / name, snapshot / name)
            elif (tmp_path / name).exists():
                shutil.copy(tmp_path / name, snapshot / name)

    monkeypatch.setattr(ResultStore, "consolidate", record_consolidate)
    monkeypatch.setattr(ResultStore, "append", append_then_snapshot)
    monkeypatch.setattr(runner, "CONSOLIDATE_EVERY", 3)  # a fold-in mid-run as well
    runner.run_protocol(protocol, path, jobs=1, trial_fn=instant)

    assert len(consolidated) == 4  # start-up, after rows 3 and 6, and the end
    for metadata in consolidated:
        assert metadata["protocol_name"] == "tiny"
        assert metadata["protocol"] == protocol.source_text
        assert metadata["protocol_sha256"] == protocol.sha256
    for n in range(8):  # killed right after the (n+1)-th row was written
        recorded = study.load_results(tmp_path / f"killed-{n}" / "tiny.parquet")
        assert recorded.protocol.name == "tiny" and len(recorded.results.table) == n + 1


def test_results_of_another_study_are_refused_unless_adopted(tmp_path: Path):
    path = tmp_path / "results.parquet"
    runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant)
    before = path.read_bytes()
    other = tiny(name="other", epochs=3)
    with pytest.raises(StoreError, match=r"results\.parquet: .*'tiny'.*'other'") as info:
        runner.run_protocol(other, path, jobs=1, trial_fn=instant)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before and not ResultStore(path).pending_count()

    # an edit of the same study is a resume, not a foreign file
    edited = tiny(epochs=3)
    assert runner.run_protocol(edited, path, jobs=1, trial_fn=instant).ran == 8

    adopted = runner.run_protocol(other, path, jobs=1, trial_fn=instant, adopt_foreign=True)
    assert adopted.skipped == 8  # the same trials as the edit: nothing to rerun
    assert study.read_results(path).metadata["protocol_name"] == "other"
    assert len(study.read_results(path).table) == 16

    # rows of another study that a killed run left pending (no table yet) are refused too
    killed = ResultStore(tmp_path / "killed.parquet")
    killed.append({"trial_id": "x", "status": "ok"}, {"protocol_name": "other"})
    with pytest.raises(StoreError, match=r"killed\.parquet: .*'other'.*'tiny'"):
        runner.run_protocol(tiny(), killed.path, jobs=1, trial_fn=instant)


def joblib_warnings(recwarn) -> list:
    """Warnings joblib gave, including one for a results generator closed by the collector."""
    gc.collect()
    return [w for w in recwarn if "joblib" in w.filename]


def overflowing(trial, device, data_options=None):
    """A metric the results file cannot hold (an int beyond int64) on the bn arm of seed 1."""
    result = instant(trial, device)
    if trial.head == "bn" and trial.seed == 1:
        result.metrics["test_acc"] = 2**64
    return result


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_row_the_store_cannot_write_stops_the_run_cleanly(tmp_path: Path, jobs, recwarn):
    path = tmp_path / "tiny.parquet"
    with pytest.raises(
        StoreError, match=r"tiny\.parquet: column 'test_acc': .*18446744073709551616"
    ):
        runner.run_protocol(tiny(), path, jobs=jobs, trial_fn=overflowing)
    assert not joblib_warnings(recwarn)
    store = ResultStore(path)
    assert store.pending_count() == 0  # what finished was folded in
    kept = study.load_results(path)  # ...into a file that names its protocol
    assert kept.protocol.name == "tiny" and len(kept.results.table) < 8
    with store.writer():  # the lock was released
        pass
    rest = runner.run_protocol(tiny(), path, jobs=jobs, trial_fn=instant)
    assert rest.skipped + rest.ran == 8


def test_a_full_disk_mid_run_is_a_one_line_error_naming_the_file(
    tmp_path: Path, monkeypatch, recwarn
):
    path = tmp_path / "tiny.parquet"
    real_write = pq.write_table
    writes = []

    def fills_up(*args, **kwargs):
        writes.append(1)
        if len(writes) > 2:  # two rows fit, the third and the final fold-in do not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", fills_up)
    with pytest.raises(StoreError) as info:
        runner.run_protocol(tiny(), path, jobs=2, trial_fn=instant)
    assert str(info.value) == f"{path.resolve()}: cannot write results: No space left on device"
    del info  # (it holds the run's frames, and so any generator the run left open)
    assert not joblib_warnings(recwarn)
    monkeypatch.setattr(pq, "write_table", real_write)
    assert not path.exists()  # the two rows that fit are kept, pending, and name their protocol
    assert len(study.load_results(path).results.table) == 2


def test_sigterm_stops_a_run_like_ctrl_c_and_its_handler_is_put_back(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    received, started = [], []

    # in-process (jobs=1): SIGTERM to the run itself
    def terminated_on_third(trial, device, data_options=None):
        started.append(trial)
        if len(started) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the run's handler interrupts this
        return instant(trial, device)

    def sentinel(signum, frame):
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, sentinel)
    try:
        summary = runner.run_protocol(tiny(), path, jobs=1, trial_fn=terminated_on_third)
        assert signal.getsignal(signal.SIGTERM) is sentinel  # put back after the run
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not received  # the run's own handler took it
    assert summary.interrupted and summary.ran == 2
    recorded = study.load_results(path)  # the finished trials are kept, in a readable file
    assert len(recorded.results.table) == 2 and recorded.protocol.name == "tiny"


def test_a_run_outside_the_main_thread_leaves_signal_handlers_alone(tmp_path: Path):
    """Python sets signal handlers in the main thread only: a run in a thread still works."""
    before = signal.getsignal(signal.SIGTERM)
    summaries = []
    path = tmp_path / "tiny.parquet"
    thread = threading.Thread(
        target=lambda: summaries.append(runner.run_protocol(tiny(), path, trial_fn=instant))
    )
    thread.start()
    thread.join()
    assert summaries[0].ran == 8 and signal.getsignal(signal.SIGTERM) is before
