"""Run a protocol's trials in parallel and stream each result into the store.

joblib runs trials in workers (loky processes by default, or a Dask cluster: see
:mod:`bnstudy.execution.backends`) and hands results back as they finish
(``return_as="generator_unordered"``); the parent writes each one to the store before
accepting the next, so nothing waits in memory for the end of the run. Trials already
recorded with a final outcome are skipped, so re-running the same command resumes. A trial
that raises becomes a ``failed`` row, one that runs out of device memory an ``oom`` row, one
past ``timeout_s`` a ``timeout`` row; none of them stops the run.

**Devices.** ``devices`` (``auto``, ``cpu``, ``cuda:0,cuda:1``) each get ``per_device``
slots; a trial leases one for its duration (:mod:`bnstudy.execution.devices`), so no device
ever runs more than ``per_device`` trials and every device is used. The run starts as many
workers as there are slots (fewer with ``jobs``). CPU trials divide the machine's cores
among the CPU workers (``threads`` pins the number: CPU numbers depend on it in the last digits).

**Packing.** With ``pack`` K > 1 (``auto``: 16 on CUDA devices, off on the CPU), trials that
differ only in their seed train K at a time as one packed model
(``bnstudy.training.packing.run_pack``), in one slot; each still gets its own row, naming its
pack in ``packed_with``. Architectures packing does not support, or an installation without
``bnstudy.training.packing``, run one trial at a time, and the run says so once.

**Determinism** is on by default (see :mod:`bnstudy.execution.worker`); ``deterministic=False`` (the
CLI's ``--fast-nondeterministic``) trades it for speed on GPUs. Each row records whether it
was made deterministically, the metadata records the run's settings (``execution``).

Stopping: Ctrl-C and SIGTERM (while a run is in progress, in the main thread) both stop the
run, keep every finished trial and fold them into the table; the summary says
``interrupted``. A results file that cannot be written (a full disk) or a row that cannot be
stored stops the run the same way and raises StoreError. Workers never outlive the parent:
each one watches that its parent is alive and exits within about a second of its death
(SIGKILL, the OOM killer), so no orphan keeps training.

**A worker that dies** (SIGKILL, the OOM killer, a segfault) does not stop the run: the
trials it and its fellow workers were running are retried, each alone, and a trial whose
worker dies again becomes a ``failed`` row (``worker died (SIGKILL)``); see
:mod:`bnstudy.execution.retry`. Only on a remote Dask cluster, where the trial cannot be
named (Dask has already retried it on other workers), does a death stop the run; the next
run resumes.

The parts: :mod:`~bnstudy.execution.plan` resolves the options into an :class:`Execution`;
:mod:`~bnstudy.execution.tasks` chooses the trials to run and groups them into tasks;
:mod:`~bnstudy.execution.retry` goes on when a worker dies; :mod:`~bnstudy.execution.records`
gathers each row and the provenance, in the format :mod:`bnstudy.results_format` owns. This
module runs the loop: plan, prepare, execute, store.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from bnstudy.catalogue import OOM, TIMEOUT
from bnstudy.execution.backends import joblib_backend, worker_died
from bnstudy.execution.devices import SlotPool, cpu_model
from bnstudy.execution.plan import (
    AUTO_PACK,
    DEFAULT_PER_GPU,
    Execution,
    default_jobs,
    plan_execution,
)
from bnstudy.execution.progress import Progress
from bnstudy.execution.records import provenance, torch_version, trial_row
from bnstudy.execution.retry import close_results, retrying_dead_workers
from bnstudy.execution.tasks import choose_packing, make_tasks, to_run
from bnstudy.execution.worker import (
    PackFn,
    TaskOutcome,
    TrialFn,
    WorkerConfig,
    run_task,
    run_trial,
    trial_fn_of,
)
from bnstudy.results_format import GROWN_LEVELS, PROTOCOL_KEYS, PROTOCOL_NAME
from bnstudy.spec import grow
from bnstudy.spec.claims import registration_to_record
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.trial import Trial
from bnstudy.store import CONSOLIDATE_EVERY, ResultStore, StoreError
from bnstudy.training.trial_result import TrialResult

#: Names kept here for callers of the runner before it was split (their homes: plan, tasks,
#: records, devices, worker, results_format).
__all__ = [
    "AUTO_PACK",
    "DEFAULT_PER_GPU",
    "PROTOCOL_KEYS",
    "Execution",
    "RunSummary",
    "cpu_model",
    "default_jobs",
    "make_tasks",
    "plan_execution",
    "prepare_datasets",
    "provenance",
    "run_protocol",
    "run_trial",
    "to_run",
    "torch_version",
    "trial_row",
]


@dataclass
class RunSummary:
    """What a run did: how many trials it skipped, ran, and with what outcomes."""

    results_path: Path
    total: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    interrupted: bool = False
    aborted: str | None = None  # why the run stopped early: a worker died, trial unnamed
    notes: list[str] = field(default_factory=list)  # what the user should know (packing...)
    execution: Execution | None = None

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)

    @property
    def unfinished(self) -> int:
        """Trials that gave no metrics for want of a working run: failed, oom, timeout."""
        return self.failed + self.statuses.get(OOM, 0) + self.statuses.get(TIMEOUT, 0)

    def absorb(self, later: RunSummary) -> None:
        """Fold in a later run of the same results file (a round of grid growth): the total
        becomes its total (the grown trials with the rest); its outcomes, time, notes and
        ending are added to this one's."""
        self.total = later.total
        self.statuses.update(later.statuses)
        self.wall_s += later.wall_s
        self.interrupted, self.aborted = later.interrupted, later.aborted
        self.notes.extend(n for n in later.notes if n not in self.notes)

    def describe(self) -> str:
        outcomes = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none"
        return (
            f"{self.total} trials: {self.skipped} already done, {self.ran} run ({outcomes}) "
            f"in {self.wall_s:.1f} s"
        )


def run_protocol(
    protocol: Protocol,
    results_path: str | Path,
    jobs: int | None = None,
    device: str | None = None,
    on_result: Callable[[int, int, Trial, TrialResult], None] | None = None,
    trial_fn: TrialFn = run_trial,
    adopt_foreign: bool = False,
    *,
    execution: Execution | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    pack_fn: PackFn | None = None,
    **options: Any,
) -> RunSummary:
    """Run every trial of ``protocol`` not yet in ``results_path``; return a summary.

    ``execution`` is how the run executes (:func:`plan_execution`); without it, ``jobs`` and
    ``options`` are :func:`plan_execution`'s arguments (``devices``, ``per_device``,
    ``pack``, ...; ``device``, one device, is the older spelling of ``devices``).
    ``on_progress(progress)`` is called in the parent once before the first trial and after
    each trial is stored (a :class:`Progress`, counting from the trials already done);
    ``on_result(done, todo, trial, result)`` likewise after each trial, counting this run's
    trials only. ``on_message(line)`` hears what the run does before its first trial
    (pre-training bodies, which can take minutes). ``trial_fn`` trains one trial (a
    picklable function; tests substitute failing ones) and ``pack_fn`` several seeds at once
    (default: ``bnstudy.training.packing.run_pack`` when ``trial_fn`` is :func:`run_trial`). A
    KeyboardInterrupt or SIGTERM stops the run; what finished is kept. Results of another
    study (another protocol name) at ``results_path`` are refused with a StoreError unless
    ``adopt_foreign`` is true; then they are kept and the file becomes this study's.

    Levels the study's results record as grown past the tuning grid's edges
    (:mod:`bnstudy.spec.grow`) are the protocol's too: their trials are run when missing,
    and counted as done otherwise. This function never grows the grid itself
    (:func:`bnstudy.execution.grow.run_growing` does).
    """
    if execution is None:
        if device is not None:
            options["devices"] = device
        execution = plan_execution(jobs, **options)
    elif given := sorted(
        [*options, *(k for k, v in (("jobs", jobs), ("device", device)) if v is not None)]
    ):
        raise TypeError(f"run_protocol: give execution or its options ({', '.join(given)})")
    store = ResultStore(results_path)
    with _sigterm_interrupts(), store.writer():
        if not adopt_foreign:
            store.check_study(
                protocol.name,
                "choose another results file, or adopt them on purpose (--adopt-foreign)",
            )
        protocol = with_recorded_growth(protocol, store.metadata())
        callbacks = _Callbacks(on_result, on_progress, on_message)
        return _run_locked(protocol, store, execution, callbacks, trial_fn, pack_fn)


def with_recorded_growth(protocol: Protocol, metadata: Mapping[str, str]) -> Protocol:
    """``protocol`` with the levels a results file's ``metadata`` records as grown (see
    :mod:`bnstudy.spec.grow`); another study's record (adopted) is not this protocol's.
    StoreError when the record cannot be read."""
    if metadata.get(PROTOCOL_NAME, protocol.name) != protocol.name:
        return protocol
    try:
        grown = grow.recorded(metadata)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    return protocol.with_grown(grown)


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


@dataclass(frozen=True)
class _Callbacks:
    on_result: Callable[[int, int, Trial, TrialResult], None] | None
    on_progress: Callable[[Progress], None] | None
    on_message: Callable[[str], None] | None = None


def _run_locked(
    protocol: Protocol,
    store: ResultStore,
    execution: Execution,
    callbacks: _Callbacks,
    trial_fn: TrialFn,
    pack_fn: PackFn | None,
) -> RunSummary:
    metadata, protocol_only = _run_metadata(protocol, store, execution)
    trials = protocol.expand()
    todo, done_before = to_run(store, trials, execution.timeout_s)
    summary = RunSummary(
        store.path, total=len(trials), skipped=len(trials) - len(todo), execution=execution
    )
    data_options = prepare_datasets(protocol, {t.dataset for t in todo})
    trained = _pretrain(protocol, todo, callbacks.on_message)
    if trained:
        summary.notes.append(
            f"pre-trained {trained} bod{'y' if trained == 1 else 'ies'} (cached for resumes)"
        )
    trial_fn = trial_fn_of(protocol.trial, protocol.source_dir, trial_fn)
    pack_fn, packable = choose_packing(execution, trial_fn, pack_fn, todo, summary.notes)
    tasks = make_tasks(todo, execution.pack if pack_fn is not None else 1, packable)
    run = _Run(protocol, store, execution, callbacks, metadata, summary, trial_fn, pack_fn)
    start = time.perf_counter()
    try:
        _train(run, tasks, data_options, done_before)
    except KeyboardInterrupt:
        summary.interrupted = True
    except worker_died() as exc:
        # A worker died whose trial cannot be named (a remote Dask cluster's): stop; what
        # finished is kept and the next run resumes.
        summary.aborted = str(exc).splitlines()[0]
    finally:
        summary.wall_s = time.perf_counter() - start
        # Nothing trained: the versions and machine that made the rows stay, but the protocol
        # now in force is recorded (an edited analysis section needs no new trial).
        store.consolidate(metadata if summary.ran else protocol_only)
    return summary


def _run_metadata(
    protocol: Protocol, store: ResultStore, execution: Execution
) -> tuple[dict[str, str], dict[str, str]]:
    """The metadata rows are written with, and its protocol part (what a run records even
    when it trains nothing); parts a killed run left behind are folded in meanwhile."""
    metadata = provenance(protocol, ",".join(execution.devices), execution.metadata())
    protocol_only = {k: metadata[k] for k in (*PROTOCOL_KEYS, GROWN_LEVELS) if k in metadata}
    # Hypotheses are registered with the first results and never re-registered: the record
    # is what tells a pre-registered hypothesis from one added after results existed.
    registered = registration_to_record(store.metadata(), store.exists(), protocol)
    metadata.update(registered)
    protocol_only.update(registered)
    # Fold in parts a killed run left behind, naming the protocol now in force; the versions
    # and machine that made those rows (recorded in the parts) stay until new rows are made.
    store.consolidate(protocol_only)
    return metadata, protocol_only


@dataclass(frozen=True)
class _Run:
    """What the steps of one run share: where it writes, how it executes and trains (one
    trial, and a pack of seeds; ``pack_fn`` None: unpacked), whom it tells."""

    protocol: Protocol
    store: ResultStore
    execution: Execution
    callbacks: _Callbacks
    metadata: Mapping[str, str]
    summary: RunSummary
    trial_fn: TrialFn
    pack_fn: PackFn | None


def _train(
    run: _Run,
    tasks: list[tuple[Trial, ...]],
    data_options: Mapping[str, Mapping[str, Any]],
    done_before: Counter,
) -> None:
    """Execute ``tasks`` and store each trial as its task finishes."""
    execution, summary, callbacks = run.execution, run.summary, run.callbacks
    with contextlib.ExitStack() as stack:
        pool = None
        if execution.local and tasks:
            pool = stack.enter_context(SlotPool.create(execution.devices, execution.per_device))
        progress = Progress(
            total=summary.total,
            skipped=summary.skipped,
            done_before=done_before,
            workers=execution.workers if execution.workers > 0 else len(tasks),
            notes=summary.notes,
            in_flight=pool.in_flight if pool is not None else None,
        )
        if callbacks.on_progress is not None:
            callbacks.on_progress(progress)
        config = WorkerConfig(
            trial_fn=run.trial_fn,
            pack_fn=run.pack_fn,
            parent_pid=os.getpid(),
            deterministic=execution.deterministic,
            threads=execution.threads or (1 if not execution.local else None),
            cpu_workers=execution.cpu_workers,
            timeout_s=execution.timeout_s,
            pool=pool,
            device=execution.devices[0],
            plugins=run.protocol.plugin_entries(),
        )
        outcomes = _execute(tasks, execution, config, data_options, stack)
        # Stopped early (an interrupt, a StoreError from append): cancel the trials still
        # in the workers now, not when the generator is collected (with a warning) later,
        # and before the backend (a Dask cluster) and the slots go.
        stack.callback(close_results, outcomes)
        for outcome in outcomes:
            if not math.isnan(outcome.busy_s):  # NaN: its worker died, nothing measured
                progress.record_task(outcome.busy_s, len(outcome.results), outcome.warm)
            _store_task(run, outcome, progress)


def _store_task(run: _Run, outcome: TaskOutcome, progress: Progress) -> None:
    """Store each trial of a finished task, then report it."""
    store, execution, summary, callbacks = run.store, run.execution, run.summary, run.callbacks
    packed_with = (
        ",".join(t.trial_id for t, _ in outcome.results) if len(outcome.results) > 1 else ""
    )
    for trial, result in outcome.results:
        row = trial_row(
            trial,
            result,
            packed_with=packed_with,
            deterministic=outcome.deterministic,
            torch_threads=outcome.threads,
            timeout_s=execution.timeout_s,
            host=outcome.host,
            cpu_model=outcome.cpu_model,
        )
        store.append(row, run.metadata)  # explains itself if killed
        summary.statuses[result.status] += 1
        if execution.deterministic and not outcome.deterministic:
            _note_once(
                summary.notes,
                f"some trials on {outcome.device} used an operation without a deterministic "
                "implementation: their rows say deterministic=False",
            )
        progress.record_trial(trial, result)
        if callbacks.on_result is not None:
            callbacks.on_result(summary.ran, summary.total - summary.skipped, trial, result)
        if callbacks.on_progress is not None:
            callbacks.on_progress(progress)
        if store.pending_count() >= CONSOLIDATE_EVERY:
            store.consolidate(run.metadata)


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def _pretrain(
    protocol: Protocol, todo: list[Trial], say: Callable[[str], None] | None = None
) -> int:
    """Train the bodies ``todo`` loads, before any trial: every arm loads them. Imported only
    then: pre-training needs torch, which the parent otherwise does without."""
    if not any(t.pretrain_stage for t in todo):
        return 0
    from bnstudy.training.pretrain import ensure_checkpoints

    return ensure_checkpoints(protocol, todo, say)


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
    tasks: list[tuple[Trial, ...]],
    execution: Execution,
    config: WorkerConfig,
    data_options: Mapping[str, Mapping[str, Any]],
    stack: contextlib.ExitStack,
) -> Iterable[TaskOutcome]:
    """Each task's outcome, as tasks finish. ``stack`` holds the backend open meanwhile."""
    if not tasks:
        return iter(())
    if execution.backend == "loky" and execution.workers == 1:
        # in-process: easier to debug, no start-up
        return (run_task(config, task, data_options[task[0].dataset]) for task in tasks)
    resources = {"GPU": 1} if not execution.local and "cuda" in execution.devices else None
    n_jobs = stack.enter_context(
        joblib_backend(execution.backend, execution.workers, execution.scheduler, resources)
    )

    def parallel(batch: list[tuple[Trial, ...]]) -> Iterator[TaskOutcome]:
        run = joblib.Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator_unordered")
        return run(
            joblib.delayed(run_task)(config, task, data_options[task[0].dataset]) for task in batch
        )

    return retrying_dead_workers(tasks, parallel, config)
