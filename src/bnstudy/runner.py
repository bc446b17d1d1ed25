"""Run a protocol's trials in parallel and stream each result into the store.

joblib's loky backend runs trials in worker processes (one torch thread each) and hands
results back as they finish (``return_as="generator_unordered"``); the parent writes each
one to the store before accepting the next, so nothing waits in memory for the end of the
run. Trials already recorded with a final outcome are skipped, so re-running the same
command resumes. A trial that raises becomes a ``failed`` row; it never stops the run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from joblib.externals.loky.process_executor import TerminatedWorkerError

from bnstudy import __version__
from bnstudy.catalogue import METRICS
from bnstudy.protocol import Protocol, Trial
from bnstudy.store import CONSOLIDATE_EVERY, ResultStore
from bnstudy.train import TrialResult, run_trial

TrialFn = Callable[[Trial, str], TrialResult]


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
) -> RunSummary:
    """Run every trial of ``protocol`` not yet in ``results_path``; return a summary.

    ``on_result(done, todo, trial, result)`` is called in the parent after each trial is
    stored (progress reporting). ``trial_fn`` trains one trial (a picklable function; tests
    substitute failing ones). A KeyboardInterrupt stops the run; what finished is kept.
    """
    check_device(device)
    store = ResultStore(results_path)
    with store.writer():
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
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"device {device!r} is not usable here: {first}") from None


def _run_locked(
    protocol: Protocol,
    store: ResultStore,
    jobs: int | None,
    device: str,
    on_result: Callable[[int, int, Trial, TrialResult], None] | None,
    trial_fn: TrialFn,
) -> RunSummary:
    store.consolidate()  # fold in parts a killed run left behind
    trials = protocol.expand()
    finished = store.finished_ids()
    todo = [t for t in trials if t.trial_id not in finished]
    summary = RunSummary(store.path, total=len(trials), skipped=len(trials) - len(todo))
    metadata = provenance(protocol, device)
    start = time.perf_counter()
    try:
        for trial, result in _execute(todo, jobs or default_jobs(), device, trial_fn):
            store.append(trial_row(trial, result))
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
        summary.wall_s = time.perf_counter() - start
        # Nothing trained: the versions and machine that made the rows stay, but the protocol
        # now in force is recorded (an edited analysis section needs no new trial).
        store.consolidate(metadata if summary.ran else {k: metadata[k] for k in PROTOCOL_KEYS})
    return summary


def _execute(
    trials: list[Trial], jobs: int, device: str, trial_fn: TrialFn
) -> Iterator[tuple[Trial, TrialResult]]:
    if not trials:
        return iter(())
    if jobs == 1:  # in-process: easier to debug, no worker start-up
        return (_run_one(trial_fn, t, device) for t in trials)
    parallel = joblib.Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    return parallel(joblib.delayed(_run_one)(trial_fn, t, device) for t in trials)


def _run_one(trial_fn: TrialFn, trial: Trial, device: str) -> tuple[Trial, TrialResult]:
    """Worker entry point: one torch thread, and every exception becomes a failed row."""
    import torch

    threads = torch.get_num_threads()  # restored: with jobs=1 this runs in the caller
    torch.set_num_threads(1)
    started = dt.datetime.now(dt.UTC)
    try:
        return trial, trial_fn(trial, device)
    except Exception as exc:  # noqa: BLE001 - failure is data, recorded with its cause
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
        return trial, TrialResult.failed(error, started_at=started, device=device)
    finally:
        torch.set_num_threads(threads)


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
