"""Run a protocol's trials in parallel and stream each result into the store.

joblib's loky backend runs trials in worker processes (one torch thread each) and hands
results back as they finish (``return_as="generator_unordered"``); the parent writes each
one to the store before accepting the next, so nothing waits in memory for the end of the
run. Trials already recorded with a final outcome are skipped, so re-running the same
command resumes. A trial that raises becomes a ``failed`` row; it never stops the run.

Stopping: Ctrl-C and SIGTERM (while a run is in progress, in the main thread) both stop the
run, keep every finished trial and fold them into the table; the summary says
``interrupted``. A results file that cannot be written (a full disk) or a row that cannot be
stored stops the run the same way and raises StoreError. Workers never outlive the parent:
each one watches that its parent is alive and exits within about a second of its death
(SIGKILL, the OOM killer), so no orphan keeps training.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from joblib.externals.loky.process_executor import TerminatedWorkerError

from bnstudy import __version__
from bnstudy.catalogue import METRICS
from bnstudy.protocol import Protocol, ProtocolError, Trial
from bnstudy.store import CONSOLIDATE_EVERY, ResultStore, StoreError
from bnstudy.train import TrialResult, run_trial

#: Trains one trial: ``(trial, device, data_options)``, where ``data_options`` are the
#: resolved options of the trial's dataset (paths included), for ``build_dataset``.
TrialFn = Callable[[Trial, str, Mapping[str, Any]], TrialResult]


@dataclass
class RunSummary:
    """What a run did: how many trials it skipped, ran, and with what outcomes."""

    results_path: Path
    total: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    interrupted: bool = False
    aborted: str | None = None  # why the run stopped early, if a worker died

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)

    def describe(self) -> str:
        outcomes = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none"
        return (
            f"{self.total} trials: {self.skipped} already done, {self.ran} run ({outcomes}) "
            f"in {self.wall_s:.1f} s"
        )


def default_jobs() -> int:
    return max(1, joblib.cpu_count(only_physical_cores=False))


def run_protocol(
    protocol: Protocol,
    results_path: str | Path,
    jobs: int | None = None,
    device: str = "cpu",
    on_result: Callable[[int, int, Trial, TrialResult], None] | None = None,
    trial_fn: TrialFn = run_trial,
    adopt_foreign: bool = False,
) -> RunSummary:
    """Run every trial of ``protocol`` not yet in ``results_path``; return a summary.

    ``on_result(done, todo, trial, result)`` is called in the parent after each trial is
    stored (progress reporting). ``trial_fn`` trains one trial (a picklable function; tests
    substitute failing ones). A KeyboardInterrupt or SIGTERM stops the run; what finished is
    kept. Results of another study (another protocol name) at ``results_path`` are refused
    with a StoreError unless ``adopt_foreign`` is true; then they are kept and the file
    becomes this study's.
    """
    check_device(device)
    store = ResultStore(results_path)
    with _sigterm_interrupts(), store.writer():
        _check_same_study(store, protocol, adopt_foreign)
        return _run_locked(protocol, store, jobs, device, on_result, trial_fn)


def check_device(device: str) -> None:
    """Raise ValueError unless torch can place tensors on ``device`` in this process.

    Checked once up front: a typo or a missing GPU is a usage error, not a failed row for
    every trial of the run.
    """
    import torch

    try:
        torch.empty(0, device=device)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad device
        raise ValueError(f"device {device!r} is not usable here: {_first_sentence(exc)}") from None


def _first_sentence(exc: Exception, limit: int = 160) -> str:
    """The gist of an exception message: torch's can run to a thousand characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """For the duration of a run, let SIGTERM stop it as Ctrl-C does (finished trials kept).

    Python can set handlers in the main thread only; elsewhere SIGTERM keeps its handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:  # None: a handler not set from Python, which cannot be put back; default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _check_same_study(store: ResultStore, protocol: Protocol, adopt_foreign: bool) -> None:
    """Refuse to merge this study's rows into another study's results file.

    An edited protocol keeps its name, so resuming after an edit is not refused.
    """
    recorded = store.metadata().get("protocol_name")
    if recorded is None or recorded == protocol.name or adopt_foreign:
        return
    raise StoreError(
        f"{store.path}: holds results of study {recorded!r}, not {protocol.name!r}; "
        "choose another results file, or adopt them on purpose (--adopt-foreign)"
    )


def _run_locked(
    protocol: Protocol,
    store: ResultStore,
    jobs: int | None,
    device: str,
    on_result: Callable[[int, int, Trial, TrialResult], None] | None,
    trial_fn: TrialFn,
) -> RunSummary:
    metadata = provenance(protocol, device)
    protocol_only = {k: metadata[k] for k in PROTOCOL_KEYS}
    # Fold in parts a killed run left behind, naming the protocol now in force; the versions
    # and machine that made those rows (recorded in the parts) stay until new rows are made.
    store.consolidate(protocol_only)
    trials = protocol.expand()
    finished = store.finished_ids()
    todo = [t for t in trials if t.trial_id not in finished]
    summary = RunSummary(store.path, total=len(trials), skipped=len(trials) - len(todo))
    data_options = prepare_datasets(protocol, {t.dataset for t in todo})
    start = time.perf_counter()
    results: Iterable[tuple[Trial, TrialResult]] = ()
    try:
        results = _execute(todo, jobs or default_jobs(), device, trial_fn, data_options)
        for trial, result in results:
            store.append(trial_row(trial, result), metadata)  # explains itself if killed
            summary.statuses[result.status] += 1
            if on_result is not None:
                on_result(summary.ran, len(todo), trial, result)
            if store.pending_count() >= CONSOLIDATE_EVERY:
                store.consolidate(metadata)
    except KeyboardInterrupt:
        summary.interrupted = True
    except TerminatedWorkerError as exc:
        # A worker died (killed, out of memory, segfault): its trial cannot be named, so
        # stop; what finished is kept and the next run resumes.
        summary.aborted = str(exc).splitlines()[0]
    finally:
        # Stopped early (an interrupt, a StoreError from append): cancel the trials still in
        # the workers now, not when the generator is collected (with a warning) later.
        _stop(results)
        summary.wall_s = time.perf_counter() - start
        # Nothing trained: the versions and machine that made the rows stay, but the protocol
        # now in force is recorded (an edited analysis section needs no new trial).
        store.consolidate(metadata if summary.ran else protocol_only)
    return summary


def prepare_datasets(protocol: Protocol, names: set[str]) -> dict[str, dict[str, Any]]:
    """Build each dataset's cached pool once, here in the parent; its resolved options.

    Workers then only load the cache: nothing regenerates MNIST-1D or re-reads CIFAR per
    trial. A dataset that cannot be read is the user's error, before any trial starts.
    """
    from bnstudy.data import DatasetError, prepare_dataset

    options = {}
    for name in sorted(names):
        options[name] = protocol.dataset_options(name)
        try:
            prepare_dataset(name, options[name])
        except DatasetError as exc:
            raise ProtocolError(f"datasets.{name}: {exc}") from None
    return options


def _execute(
    trials: list[Trial],
    jobs: int,
    device: str,
    trial_fn: TrialFn,
    data_options: Mapping[str, Mapping[str, Any]],
) -> Iterable[tuple[Trial, TrialResult]]:
    if not trials:
        return iter(())
    parent_pid = os.getpid()
    calls = ((trial_fn, t, device, data_options[t.dataset], parent_pid) for t in trials)
    if jobs == 1:  # in-process: easier to debug, no worker start-up
        return (_run_one(*call) for call in calls)
    parallel = joblib.Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    return parallel(joblib.delayed(_run_one)(*call) for call in calls)


def _stop(results: Iterable[tuple[Trial, TrialResult]]) -> None:
    """Close a results generator; joblib's warning about cancelled tasks says nothing new."""
    close = getattr(results, "close", None)
    if close is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            close()


def _run_one(
    trial_fn: TrialFn,
    trial: Trial,
    device: str,
    data_options: Mapping[str, Any],
    parent_pid: int,
) -> tuple[Trial, TrialResult]:
    """Worker entry point: one torch thread, and every exception becomes a failed row."""
    _exit_with_parent(parent_pid)
    import torch

    threads = torch.get_num_threads()  # restored: with jobs=1 this runs in the caller
    torch.set_num_threads(1)
    started = dt.datetime.now(dt.UTC)
    try:
        return trial, trial_fn(trial, device, data_options)
    except Exception as exc:  # noqa: BLE001 - failure is data, recorded with its cause
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
        return trial, TrialResult.failed(error, started_at=started, device=device)
    finally:
        torch.set_num_threads(threads)


#: How often a worker checks that the run's parent process is still alive.
PARENT_POLL_S = 0.5

_watched_parent: int | None = None  # the parent this worker process already watches


def _exit_with_parent(parent_pid: int) -> None:
    """In a worker process of ``parent_pid``: exit within PARENT_POLL_S of the parent's death.

    Without this a killed run (SIGKILL, OOM killer) leaves its workers training for
    minutes: loky notices a dead parent only between tasks. A daemon thread polls
    ``os.getppid()``, which changes when the parent dies and the worker is re-parented.
    (prctl's PR_SET_PDEATHSIG fires when the spawning *thread* ends, and loky may spawn
    from another thread than the main one.) Nothing to do in-process (jobs=1) or in a
    worker that is not the parent's child (a Dask worker): its parent is someone else.
    """
    global _watched_parent
    if _watched_parent == parent_pid or os.getppid() != parent_pid:
        return
    _watched_parent = parent_pid
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="bnstudy-parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the parent alone writes results: nothing here is worth saving


def trial_row(trial: Trial, result: TrialResult) -> dict[str, Any]:
    """The results-table row for one trial: ids, settings, outcome, metrics, detail."""
    metrics = {name: math.nan for name in METRICS} | dict(result.metrics)
    return {
        "trial_id": trial.trial_id,
        "block_id": trial.block_id,
        "status": result.status,
        "error": result.error,
        **trial.settings(),
        **metrics,
        **{_per_class_column(k): list(v) for k, v in result.per_class.items()},
        **{f"curve_{k}": list(v) for k, v in result.curves.items()},
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        "device": result.device,
        "bnstudy_version": __version__,
    }


def _per_class_column(key: str) -> str:
    return key if key.startswith("class_") else f"class_{key}"


#: The metadata keys that describe the protocol (the rest describe how rows were made).
PROTOCOL_KEYS = ("protocol", "protocol_sha256", "protocol_name")


def provenance(protocol: Protocol, device: str) -> dict[str, str]:
    """How the results were made: protocol text and hash, versions, machine."""
    import numpy
    import pandas
    import pyarrow
    import torch

    versions = {
        "bnstudy": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "joblib": joblib.__version__,
    }
    machine = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "device": device,
    }
    return {
        "protocol": protocol.source_text,
        "protocol_sha256": protocol.sha256,
        "protocol_name": protocol.name,
        "versions": json.dumps(versions, sort_keys=True),
        "machine": json.dumps(machine, sort_keys=True),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
