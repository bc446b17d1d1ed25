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
:func:`_retrying_dead_workers`. Only on a remote Dask cluster, where the trial cannot be
named (Dask has already retried it on other workers), does a death stop the run; the next
run resumes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib

from bnstudy import __version__
from bnstudy.catalogue import FINAL_STATUSES, METRICS, OOM, TIMEOUT
from bnstudy.execution.backends import check_backend, death_cause, joblib_backend, worker_died
from bnstudy.execution.devices import SlotPool, check_device, cpu_model, is_cpu, parse_devices
from bnstudy.execution.progress import Progress
from bnstudy.execution.worker import (
    WORKER_AUTO,
    PackFn,
    TaskOutcome,
    TrialFn,
    WorkerConfig,
    run_task,
    run_trial,
)
from bnstudy.spec import head_options
from bnstudy.spec.claims import registration_to_record
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.trial import TREATMENT, Trial
from bnstudy.store import CONSOLIDATE_EVERY, ResultStore
from bnstudy.training.trial_result import TrialResult

#: Trials at once on one GPU by default: measured on an H100 with the quick study, 4 workers
#: took 14.6 s and 8 took 13.0 s against 27.5 s for one (small models are launch-bound).
DEFAULT_PER_GPU = 4
#: Seeds per pack with ``pack="auto"`` on CUDA (the quick CNN: 12x per model at K=16 on an
#: H100; a CIFAR ResNet-20 6.9x at K=16 on an H200).
AUTO_PACK = 16


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

    def describe(self) -> str:
        outcomes = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none"
        return (
            f"{self.total} trials: {self.skipped} already done, {self.ran} run ({outcomes}) "
            f"in {self.wall_s:.1f} s"
        )


def default_jobs() -> int:
    return max(1, joblib.cpu_count(only_physical_cores=False))


@dataclass(frozen=True)
class Execution:
    """How a run executes: backend, devices and slots, packing, determinism, limits."""

    backend: str  # loky | dask-local | dask
    devices: tuple[str, ...]  # with dask: what each worker uses (auto, cpu or cuda)
    per_device: int  # trials at once per device (with dask: the workers' GPU resource)
    workers: int  # tasks at once (-1 with dask: every thread of the cluster)
    pack: int  # seeds per packed model; 1: unpacked
    deterministic: bool = True
    timeout_s: float | None = None  # per trial
    threads: int | None = None  # torch threads per CPU trial; None: cores / CPU workers
    scheduler: str | None = None

    @property
    def local(self) -> bool:
        """Workers on this machine, leasing slots of a :class:`SlotPool`."""
        return self.backend != "dask"

    @property
    def slots(self) -> int:
        return len(self.devices) * self.per_device

    @property
    def cpu_workers(self) -> int:
        """Workers that may train on the CPU at once (they share its cores)."""
        on_cpu = sum(is_cpu(d) for d in self.devices) * self.per_device
        return max(1, min(on_cpu, self.workers if self.workers > 0 else on_cpu))

    def metadata(self) -> dict[str, Any]:
        return asdict(self) | {"devices": list(self.devices)}

    def describe(self) -> str:
        where = ", ".join(self.devices)
        if self.backend == "dask":
            return f"Dask cluster {self.scheduler}, each worker on {where}"
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        each = f", {self.per_device} per device" if len(self.devices) > 1 else ""
        mode = "deterministic" if self.deterministic else "nondeterministic (fast)"
        return f"{workers} on {where} ({self.backend}{each}), {mode}"


def plan_execution(
    jobs: int | None = None,
    devices: str | Sequence[str] = "auto",
    per_device: int | None = None,
    pack: int | str = "auto",
    deterministic: bool = True,
    timeout_s: float | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
) -> Execution:
    """Resolve and check a run's execution options; ValueError names the bad one.

    Devices are checked here, in the parent, before any trial (a typo or a missing GPU is a
    usage error, not a failed row for every trial). ``jobs`` caps the workers; without
    ``per_device`` it also sets it (``jobs`` spread over the devices). Defaults: on the CPU
    one slot per core, on a GPU :data:`DEFAULT_PER_GPU`.
    """
    backend = backend or ("dask" if scheduler else "loky")
    check_backend(backend, scheduler)
    for name, value in (("--jobs", jobs), ("--per-device", per_device), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    if backend == "dask":
        spec = devices if isinstance(devices, str) else ",".join(devices)
        if spec not in (WORKER_AUTO, "cpu", "cuda"):
            raise ValueError(
                f"--devices {spec}: with --backend dask each worker trains on its own device; "
                "give auto, cpu or cuda (start GPU workers with --resources GPU=K)"
            )
        found = (spec,)
        per_device = per_device or 1
        workers = jobs or -1
    else:
        found = tuple(parse_devices(devices))
        for device in found:
            check_device(device)
        if per_device is None:
            if jobs is not None:
                per_device = math.ceil(jobs / len(found))
            elif all(is_cpu(d) for d in found):
                per_device = default_jobs()
            else:
                per_device = DEFAULT_PER_GPU
        workers = min(jobs or len(found) * per_device, len(found) * per_device)
    on_gpu = any(d.startswith("cuda") for d in found)
    return Execution(
        backend=backend,
        devices=found,
        per_device=per_device,
        workers=workers,
        pack=_pack_size(pack, on_gpu),
        deterministic=deterministic,
        timeout_s=timeout_s,
        threads=threads,
        scheduler=scheduler,
    )


def _pack_size(pack: int | str, on_gpu: bool) -> int:
    """``"auto"`` -> AUTO_PACK on CUDA, else 1; ``"off"`` -> 1; ``"K"``/K -> K."""
    if pack == "auto":
        return AUTO_PACK if on_gpu else 1
    if pack == "off":
        return 1
    try:
        size = int(pack)
    except (TypeError, ValueError):
        raise ValueError(f"--pack: expected a number, auto or off, got {pack!r}") from None
    if size < 1:
        raise ValueError(f"--pack must be at least 1 (1 or off: no packing), got {size}")
    return size


def run_protocol(
    protocol: Protocol,
    results_path: str | Path,
    jobs: int | None = None,
    device: str | None = None,
    on_result: Callable[[int, int, Trial, TrialResult], None] | None = None,
    trial_fn: TrialFn = run_trial,
    adopt_foreign: bool = False,
    *,
    devices: str | Sequence[str] = "auto",
    per_device: int | None = None,
    pack: int | str = "auto",
    deterministic: bool = True,
    timeout_s: float | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    pack_fn: PackFn | None = None,
) -> RunSummary:
    """Run every trial of ``protocol`` not yet in ``results_path``; return a summary.

    Execution options are those of :func:`plan_execution` (``device``, one device, is the
    older spelling of ``devices``). ``on_progress(progress)`` is called in the parent once
    before the first trial and after each trial is stored (a :class:`Progress`, counting
    from the trials already done); ``on_result(done, todo, trial, result)`` likewise after
    each trial, counting this run's trials only. ``trial_fn`` trains one trial (a picklable
    function; tests substitute failing ones) and ``pack_fn`` several seeds at once (default:
    ``bnstudy.training.packing.run_pack`` when ``trial_fn`` is :func:`run_trial`). A
    KeyboardInterrupt or SIGTERM stops the run; what finished is kept. Results of another
    study (another protocol name) at ``results_path`` are refused with a StoreError unless
    ``adopt_foreign`` is true; then they are kept and the file becomes this study's.
    """
    execution = plan_execution(
        jobs,
        device if device is not None else devices,
        per_device,
        pack,
        deterministic,
        timeout_s,
        backend,
        scheduler,
        threads,
    )
    store = ResultStore(results_path)
    with _sigterm_interrupts(), store.writer():
        if not adopt_foreign:
            store.check_study(
                protocol.name,
                "choose another results file, or adopt them on purpose (--adopt-foreign)",
            )
        callbacks = _Callbacks(on_result, on_progress)
        return _run_locked(protocol, store, execution, callbacks, trial_fn, pack_fn)


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


def _run_locked(
    protocol: Protocol,
    store: ResultStore,
    execution: Execution,
    callbacks: _Callbacks,
    trial_fn: TrialFn,
    pack_fn: PackFn | None,
) -> RunSummary:
    metadata = provenance(protocol, ",".join(execution.devices), execution.metadata())
    protocol_only = {k: metadata[k] for k in PROTOCOL_KEYS}
    # Hypotheses are registered with the first results and never re-registered: the record
    # is what tells a pre-registered hypothesis from one added after results existed.
    registered = registration_to_record(store.metadata(), store.exists(), protocol)
    metadata.update(registered)
    protocol_only.update(registered)
    # Fold in parts a killed run left behind, naming the protocol now in force; the versions
    # and machine that made those rows (recorded in the parts) stay until new rows are made.
    store.consolidate(protocol_only)
    trials = protocol.expand()
    todo, done_before = to_run(store, trials, execution.timeout_s)
    summary = RunSummary(
        store.path, total=len(trials), skipped=len(trials) - len(todo), execution=execution
    )
    data_options = prepare_datasets(protocol, {t.dataset for t in todo})
    trained = _pretrain(protocol, todo)
    if trained:
        summary.notes.append(
            f"pre-trained {trained} bod{'y' if trained == 1 else 'ies'} (cached for resumes)"
        )
    pack_fn, packable = _packing(execution, trial_fn, pack_fn, todo, summary.notes)
    tasks = make_tasks(todo, execution.pack if pack_fn is not None else 1, packable)
    start = time.perf_counter()
    try:
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
                trial_fn=trial_fn,
                pack_fn=pack_fn,
                parent_pid=os.getpid(),
                deterministic=execution.deterministic,
                threads=execution.threads or (1 if not execution.local else None),
                cpu_workers=execution.cpu_workers,
                timeout_s=execution.timeout_s,
                pool=pool,
                device=execution.devices[0],
                plugins=protocol.plugin_entries(),
            )
            outcomes = _execute(tasks, execution, config, data_options, stack)
            # Stopped early (an interrupt, a StoreError from append): cancel the trials still
            # in the workers now, not when the generator is collected (with a warning) later,
            # and before the backend (a Dask cluster) and the slots go.
            stack.callback(_stop, outcomes)
            for outcome in outcomes:
                if not math.isnan(outcome.busy_s):  # NaN: its worker died, nothing measured
                    progress.record_task(outcome.busy_s, len(outcome.results), outcome.warm)
                _store_task(store, outcome, execution, metadata, summary, progress, callbacks)
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


def _store_task(
    store: ResultStore,
    outcome: TaskOutcome,
    execution: Execution,
    metadata: Mapping[str, str],
    summary: RunSummary,
    progress: Progress,
    callbacks: _Callbacks,
) -> None:
    """Store each trial of a finished task, then report it."""
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
        store.append(row, metadata)  # explains itself if killed
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
            store.consolidate(metadata)


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def to_run(
    store: ResultStore, trials: list[Trial], timeout_s: float | None
) -> tuple[list[Trial], Counter]:
    """The trials without a final outcome in ``store``, in protocol order, and the recorded
    outcomes of the others (``{"ok": 40, "timeout": 2}``).

    A ``timeout`` row is final for its time limit: it is run again only when this run
    allows more time than the limit it was recorded under (or no limit).
    """
    if not store.exists():
        return list(trials), Counter()
    table = store.read().table
    final = table["status"].isin(FINAL_STATUSES)
    timed_out = table["status"] == TIMEOUT
    if timed_out.any():
        recorded = table.get("timeout_s")
        if timeout_s is None or recorded is None:
            final &= ~timed_out
        else:
            final &= ~(timed_out & (recorded.isna() | (recorded < timeout_s)))
    outcome = dict(zip(table.loc[final, "trial_id"], table.loc[final, "status"], strict=True))
    todo = [t for t in trials if t.trial_id not in outcome]
    return todo, Counter(outcome[t.trial_id] for t in trials if t.trial_id in outcome)


def make_tasks(
    trials: list[Trial], pack: int, packable: Callable[[Trial], bool] | None = None
) -> list[tuple[Trial, ...]]:
    """Group ``trials`` into tasks: packs of up to ``pack`` trials that differ only in seed.

    Trials ``packable`` refuses, and all trials when ``pack`` is 1, are tasks of one. Packs
    keep the protocol order of their first trial.
    """
    if pack <= 1:
        return [(t,) for t in trials]
    groups: dict[Any, list[Trial]] = {}
    for trial in trials:
        if packable is not None and not packable(trial):
            groups[("alone", trial.trial_id)] = [trial]
            continue
        key = tuple(sorted((k, v) for k, v in trial.settings().items() if k != "seed"))
        groups.setdefault(key, []).append(trial)
    return [
        tuple(group[i : i + pack]) for group in groups.values() for i in range(0, len(group), pack)
    ]


def _packing(
    execution: Execution,
    trial_fn: TrialFn,
    pack_fn: PackFn | None,
    todo: list[Trial],
    notes: list[str],
) -> tuple[PackFn | None, Callable[[Trial], bool] | None]:
    """The pack function and its ``packable`` test, or (None, None) to run unpacked."""
    if execution.pack <= 1 or not todo:
        return None, None
    if pack_fn is not None:
        return pack_fn, None
    # A substitute trial function has no packed counterpart. bnstudy.training.train.run_trial passed
    # itself counts as the default; a caller holding it has imported bnstudy.training.train already.
    train = sys.modules.get("bnstudy.training.train")
    if trial_fn not in (run_trial, getattr(train, "run_trial", None)):
        return None, None
    try:  # (import_module: an installation without it, or a test that hides it)
        packing = importlib.import_module("bnstudy.training.packing")
    except ImportError:
        notes.append(
            "seed packing is not available in this installation (no bnstudy.training.packing): "
            "every trial trains on its own"
        )
        return None, None
    pretrained = [t for t in todo if t.pretrain_stage]
    if pretrained:
        notes.append(
            f"packing does not support pre-trained bodies: those {len(pretrained)} trial"
            f"{'s' if len(pretrained) > 1 else ''} train one at a time"
        )
    dropped = [t for t in todo if t.dropout > 0 and not t.pretrain_stage]
    if dropped:
        notes.append(
            f"packing does not support head dropout: those {len(dropped)} trial"
            f"{'s' if len(dropped) > 1 else ''} train one at a time"
        )
    refused = [
        t for t in todo if not t.pretrain_stage and t.dropout == 0 and not packing.packable(t)
    ]
    if refused:
        heads: dict[str, set[str]] = {}
        for trial in refused:
            heads.setdefault(trial.architecture, set()).add(trial.head)
        what = "; ".join(
            f"{arch} (head{'s' if len(h) > 1 else ''} {', '.join(sorted(h))})"
            for arch, h in sorted(heads.items())
        )
        notes.append(
            f"packing does not support {what}: "
            f"{'its' if len(refused) == 1 else 'those'} {len(refused)} trial"
            f"{'s' if len(refused) > 1 else ''} train one at a time"
        )
    return packing.run_pack, packing.packable


def _pretrain(protocol: Protocol, todo: list[Trial]) -> int:
    """Train the bodies ``todo`` loads, before any trial: every arm loads them. Imported only
    then: pre-training needs torch, which the parent otherwise does without."""
    if not any(t.pretrain_stage for t in todo):
        return 0
    from bnstudy.training.pretrain import ensure_checkpoints

    return ensure_checkpoints(protocol, todo)


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

    return _retrying_dead_workers(tasks, parallel, config)


def _retrying_dead_workers(
    tasks: list[tuple[Trial, ...]],
    parallel: Callable[[list[tuple[Trial, ...]]], Iterator[TaskOutcome]],
    config: WorkerConfig,
) -> Iterator[TaskOutcome]:
    """Each task's outcome from ``parallel``, as tasks finish, going on when a worker dies.

    A dead worker (SIGKILL, the OOM killer, a segfault) ends joblib's results with an error,
    and loky kills the other workers with it, so the tasks that were running cannot tell
    the cause from the bystanders. They are named in their slots (a dead holder never clears
    its name) and each is retried alone, after the tasks not yet started (which go on in
    parallel): one whose worker dies again is the cause, and gets a ``failed`` row per trial
    (``worker died (SIGKILL)``); the others train as usual. Every task is yielded once.
    Without slots (a remote Dask cluster), or with no task named, the error is raised: the
    run stops.
    """
    queue, suspects = list(tasks), []
    while queue or suspects:
        alone = not queue
        batch = queue or [suspects.pop(0)]
        queue = []
        back: set[str] = set()
        results = parallel(batch)
        died = None
        try:
            for outcome in results:
                back.add(_holder(t for t, _ in outcome.results))
                yield outcome
        except worker_died() as exc:
            died = exc
        finally:
            _stop(results)
        if died is None:
            continue
        lost = [task for task in batch if _holder(task) not in back]
        held = _take_holders(config.pool) if config.pool is not None else {}
        if not any(_holder(task) in held for task in lost):
            raise died
        if alone:  # its second death: the cause
            for task in lost:
                yield _died(task, death_cause(died), held.get(_holder(task), ""), config)
            continue
        suspects += [task for task in lost if _holder(task) in held]
        queue = [task for task in lost if _holder(task) not in held]


def _holder(trials: Iterable[Trial]) -> str:
    """A task's name in the slot it leases (see :func:`bnstudy.execution.worker.run_task`)."""
    return ",".join(t.trial_id for t in trials)


def _take_holders(pool: SlotPool) -> dict[str, str]:
    """The tasks named in the slots (holder -> device), and clear the names.

    Called after a worker died: a name left is a task that was running then. (The slots'
    layout is SlotPool's; it offers no public way to read the names yet.)
    """
    held: dict[str, str] = {}
    for path in pool._slot_paths():
        with contextlib.suppress(OSError):
            if name := path.read_text():
                held[name] = pool._device_of(path)
            os.truncate(path, 0)
    return held


def _died(task: tuple[Trial, ...], cause: str, device: str, config: WorkerConfig) -> TaskOutcome:
    """The outcome of a task whose worker died under it twice: a ``failed`` row per trial."""
    started = dt.datetime.now(dt.UTC)
    failed = TrialResult.failed(cause, started_at=started, device=device)
    return TaskOutcome(
        results=[(trial, failed) for trial in task],
        device=device,
        busy_s=math.nan,  # nothing measured (the runner leaves it out of the time left)
        deterministic=config.deterministic,
        threads=config.threads or 0,
    )


def _stop(results: Iterable[Any]) -> None:
    """Close a results generator; joblib's warning about cancelled tasks says nothing new."""
    close = getattr(results, "close", None)
    if close is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            close()


def trial_row(
    trial: Trial,
    result: TrialResult,
    *,
    packed_with: str = "",
    deterministic: bool = True,
    torch_threads: int = 1,
    timeout_s: float | None = None,
    host: str = "",
    cpu_model: str = "",
) -> dict[str, Any]:
    """The results-table row for one trial: ids, settings, outcome, metrics, detail, and how
    it ran (``packed_with``: the trial ids of its pack, "" when unpacked; ``deterministic``;
    the CPU ``torch_threads``; the run's per-trial ``timeout_s``, NaN when none; the ``host``
    and ``cpu_model`` of the worker that trained it: CPU numbers differ between CPU models,
    and a Dask cluster's workers may differ)."""
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
        "packed_with": packed_with,
        # The cached body the trial started from (bnstudy.training.pretrain), "" without
        # pre-training.
        "pretrain_checkpoint": _checkpoint_key(trial),
        "deterministic": deterministic,
        "torch_threads": torch_threads,
        "timeout_s": math.nan if timeout_s is None else float(timeout_s),
        "host": host,
        "cpu_model": cpu_model,
        "bnstudy_version": __version__,
    }


def _checkpoint_key(trial: Trial) -> str:
    if not trial.pretrain_stage:
        return ""
    from bnstudy.training.pretrain import checkpoint_key

    return checkpoint_key(trial)


def _per_class_column(key: str) -> str:
    return key if key.startswith("class_") else f"class_{key}"


#: The metadata keys that describe the protocol (the rest describe how rows were made).
PROTOCOL_KEYS = ("protocol", "protocol_sha256", "protocol_name")


def torch_version() -> str:
    """The installed torch's version, read from its metadata: importing torch for it would
    cost the parent about a second (the same string as ``torch.__version__``)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(
    protocol: Protocol, device: str, execution: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """How the results were made: protocol text and hash, versions, machine, the run's
    execution settings (devices, slots, packing, determinism, time limit) and the files each
    dataset is read from (``dataset_sources``; ProtocolError when they are gone)."""
    import numpy
    import pandas
    import pyarrow

    versions = {
        "bnstudy": __version__,
        "torch": torch_version(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "joblib": joblib.__version__,
    }
    machine = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "device": device,
    }
    gpus = [d for d in device.split(",") if d.startswith("cuda")]
    if gpus:  # names only: no CUDA context in the parent
        import torch

        if torch.cuda.is_available():
            machine["gpus"] = ", ".join(sorted({torch.cuda.get_device_name(d) for d in gpus}))
    recorded = {}
    if protocol.plugins:  # their code makes the numbers as much as bnstudy's does
        from bnstudy.spec import plugins

        recorded["plugins"] = json.dumps(plugins.fingerprints(protocol.plugin_entries()))
        # what their heads take, for reading the results where the plugins are not installed
        heads = getattr(protocol.factors, TREATMENT)
        recorded["head_options"] = json.dumps({h: head_options.options_of(h) for h in heads})
    # Which files each dataset is read from (resolved path, size, mtime; null: generated), so
    # a table says what it was trained on; the pools are cached under the same fingerprints.
    from bnstudy.data import DatasetError, source_fingerprint

    sources = {}
    for name in protocol.factors.dataset:
        try:
            sources[name] = source_fingerprint(name, protocol.dataset_options(name))
        except DatasetError as exc:
            raise ProtocolError(f"datasets.{name}: {exc}") from None
    for stage in [s for s in protocol.factors.pretrain if s in protocol.pretraining]:
        try:  # the bodies' data: a stage may have options of its own
            sources[f"pretraining.{stage}"] = source_fingerprint(
                protocol.pretraining[stage].dataset, protocol.stage_options(stage)
            )
        except DatasetError as exc:
            raise ProtocolError(f"pretraining.{stage}: {exc}") from None
    recorded["dataset_sources"] = json.dumps(sources, sort_keys=True)
    return recorded | {
        "protocol": protocol.source_text,
        "protocol_sha256": protocol.sha256,
        "protocol_name": protocol.name,
        "versions": json.dumps(versions, sort_keys=True),
        "machine": json.dumps(machine, sort_keys=True),
        "execution": json.dumps(dict(execution or {}), sort_keys=True),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
