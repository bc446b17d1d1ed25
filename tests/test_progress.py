"""Progress: counts from the trials already done, ETA from the trials' own durations, the
bar on a terminal and plain lines elsewhere."""

from __future__ import annotations

import datetime as dt
import io
import math
import sys
import time
from collections import Counter

import pytest
from joblib.externals.loky.backend.reduction import cloudpickle

from bnstudy.catalogue import METRICS
from bnstudy.execution import runner
from bnstudy.execution.progress import Progress, ProgressBar, ProgressLines, format_s
from bnstudy.store import ResultStore
from bnstudy.training.train import TrialResult
from tiny_protocol import tiny


def instant(trial, device, data_options=None):
    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def slow_failing(trial, device, data_options=None):
    time.sleep(0.05)
    if trial.head == "bn" and trial.seed == 1:
        raise RuntimeError("simulated failure")
    return instant(trial, device)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def run_interrupted_after(stored: int, path, monkeypatch) -> None:
    """Run the tiny protocol into ``path``, as if Ctrl-C came after ``stored`` trials."""
    real_append = ResultStore.append
    rows = []

    def append_then_stop(self, row, *args, **kwargs):
        real_append(self, row, *args, **kwargs)
        rows.append(row)
        if len(rows) == stored:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "append", append_then_stop)
    assert runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant).interrupted
    monkeypatch.setattr(ResultStore, "append", real_append)


def test_a_resumed_run_counts_from_the_trials_already_done(tmp_path, monkeypatch):
    path = tmp_path / "tiny.parquet"
    run_interrupted_after(3, path, monkeypatch)
    seen, out = [], io.StringIO()
    lines = ProgressLines(["head", "imbalance_ratio"], "balanced_acc", out=out)

    def record(progress: Progress) -> None:
        seen.append((progress.done, progress.total, progress.skipped))
        lines(progress)

    runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant, on_progress=record)
    assert seen == [(3, 8, 3)] + [(n, 8, 3) for n in range(4, 9)]
    text = out.getvalue().splitlines()
    assert text[0] == "resuming: 3 of 8 trials already done"
    assert text[1].startswith("[4/8] head=")  # not [1/5]
    assert text[-1].startswith("[8/8] ") and text[-1].endswith("~0s left)")


def test_a_resumed_run_counts_the_outcomes_of_the_trials_already_done(tmp_path, monkeypatch):
    path = tmp_path / "tiny.parquet"
    run_interrupted_after(3, path, monkeypatch)
    out = io.StringIO()
    bar = ProgressBar(["head"], out=out, refresh_s=60)
    shown = []

    def record(progress: Progress) -> None:
        shown.append(progress.outcomes())
        bar(progress)

    runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant, on_progress=record)
    bar.close()
    assert shown[0] == "3 ok" and shown[-1] == "8 ok"  # not "5 ok": this run's alone
    assert "8/8 8 ok" in out.getvalue()


def test_eta_comes_from_the_trials_own_durations_not_the_wall_clock():
    progress = Progress(total=12, skipped=2, workers=2)
    assert progress.eta_s() is None  # nothing finished yet
    progress.started_at -= 100  # a slow start-up must not count
    now = time.monotonic()
    progress.record_task(busy_s=3.0, trials=1, now=now)
    progress.statuses["ok"] += 1
    # 9 trials left, 3 s each, 2 at once
    assert progress.eta_s(now) == pytest.approx(13.5)
    assert progress.eta_s(now + 5) == pytest.approx(8.5)  # counts down between results
    packed = Progress(total=66, skipped=0, workers=2)
    packed.record_task(busy_s=4.0, trials=4, now=now)  # a pack of 4 seeds in 4 s: 1 s each
    packed.statuses["ok"] += 4
    assert packed.eta_s(now) == pytest.approx(62 * 1.0 / 2)
    last = Progress(total=3, skipped=0, workers=4)
    last.record_task(busy_s=2.0, trials=1, now=now)
    last.statuses["ok"] += 1
    assert last.eta_s(now) == pytest.approx(2.0)  # 2 left run side by side


def finish_times(trials: int, workers: int, start_up_s: float) -> list[tuple[float, float, bool]]:
    """(time, busy_s, warm) of each trial as ``workers`` take them in turn: 10 s each, give
    or take 40%, and ``start_up_s`` more for a worker's first (importing torch, a CUDA
    context); the workers start 2 s apart."""
    free = [(2.0 * w, w, False) for w in range(workers)]  # (free at, worker, warm)
    finished = []
    for i in range(trials):
        free.sort()
        at, worker, warm = free.pop(0)
        busy_s = 10.0 * (1 + 0.4 * math.sin(2.3 * i)) + (0.0 if warm else start_up_s)
        finished.append((at + busy_s, busy_s, warm))
        free.append((at + busy_s, worker, True))
    return sorted(finished)


@pytest.mark.parametrize(("trials", "workers"), [(48, 4), (200, 8)])
def test_the_time_left_stays_near_the_truth_through_start_up_and_uneven_trials(trials, workers):
    """A synthetic run, its completions fed with their times: once each worker has finished
    two tasks the estimate is within a quarter of the true time left (plus a trial's time
    at the very end), and no completion moves it by more than a fifth (plus a trial)."""
    finished = finish_times(trials, workers, start_up_s=3 * 10.0)
    end = finished[-1][0]
    progress = Progress(total=trials, skipped=0, workers=workers)
    for n, (at, busy_s, warm) in enumerate(finished, start=1):
        before = progress.eta_s(at)
        progress.record_task(busy_s, 1, warm, now=at)
        progress.statuses["ok"] += 1
        if n <= 2 * workers:
            continue
        truth, eta = end - at, progress.eta_s(at)
        assert abs(eta - truth) <= 0.25 * truth + 10.0, (n, eta, truth)
        assert abs(eta - before) <= 0.2 * truth + 10.0, (n, eta, before)
        later = min(5.0, truth)  # between results it counts down with the clock
        assert progress.eta_s(at + later) == pytest.approx(max(0.0, eta - later))


def test_outcomes_and_time_are_worded_for_people():
    progress = Progress(total=10, skipped=0, workers=1)
    progress.statuses.update(Counter(ok=5, collapsed=1, failed=2, oom=1, timeout=1))
    assert progress.outcomes() == "6 ok, 2 failed, 1 out of memory, 1 timed out"
    assert [format_s(s) for s in (None, 4.4, 75, 3725)] == ["?", "4s", "1m15s", "1h02m"]


def test_the_bar_shows_done_outcomes_eta_and_trials_in_flight_per_device(tmp_path):
    out = io.StringIO()
    bar = ProgressBar(["head"], out=out, refresh_s=0.05)
    in_flight = {"cuda:0": 4, "cuda:1": 3}
    progress = Progress(total=16, skipped=4, workers=8, in_flight=lambda: dict(in_flight))
    progress.notes.append("packing does not support mlp")
    bar(progress)
    trial = tiny().expand()[1]
    failed = TrialResult.failed("RuntimeError: boom\ntraceback", dt.datetime.now(dt.UTC), "cuda:1")
    progress.record_task(1.0, 1)
    progress.statuses["failed"] += 1
    progress.last = (trial, failed)
    bar(progress)
    time.sleep(0.2)  # the refresh thread redraws meanwhile
    bar.close()
    text = out.getvalue().replace("\r", "\n")
    assert "note: packing does not support mlp" in text
    assert "resuming: 4 of 16 already done" in text
    assert "failed: head=bn seed=0 on cuda:1: RuntimeError: boom" in text
    assert "5/16" in text and "0 ok, 1 failed" in text and "ETA" in text
    assert "in flight: cuda:0 4, cuda:1 3" in text
    assert bar._thread is not None and not bar._thread.is_alive()


def test_the_cli_draws_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    from bnstudy.cli import _progress_printer

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert isinstance(_progress_printer(tiny()), ProgressBar)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert isinstance(_progress_printer(tiny()), ProgressLines)


def test_lines_name_the_failure_and_the_device(tmp_path):
    out = io.StringIO()
    lines = ProgressLines(["head"], "balanced_acc", out=out)
    summary = runner.run_protocol(
        tiny(), tmp_path / "t.parquet", jobs=1, trial_fn=slow_failing, on_progress=lines
    )
    assert summary.failed == 2
    failures = [line for line in out.getvalue().splitlines() if ": failed " in line]
    assert len(failures) == 2
    assert all("RuntimeError: simulated failure (cpu;" in line for line in failures)
