"""What runs in a worker: one task (a trial, or a pack of seeds) from lease to result.

:func:`run_task` is the function joblib sends to a worker (a loky process, a Dask worker, or
the parent itself with one job). For each task it

1. leases a slot on a device (:class:`~bnstudy.execution.devices.SlotPool`), or takes the
   fixed device of a Dask worker (whose GPU share the Dask scheduler already counted, as a
   resource);
2. sets up torch for the run: deterministic algorithms or not, the CPU thread count;
3. trains under the per-trial time limit: bnstudy's built-in trial (a pack of seeds, or one
   trial), or the protocol's own trial function (:func:`protocol_trial`, through
   :mod:`bnstudy.training.context`), imported here with the protocol's plugins;
4. turns every exception into a row: ``timeout`` (over the limit), ``oom`` (the device ran
   out of memory) or ``failed`` (anything else), so one bad trial never stops the run;
5. returns the slot, whatever happened (the kernel returns it if the worker dies).

**Determinism.** With ``deterministic`` (the default of a run), torch uses deterministic
algorithms, cuDNN its deterministic kernels (and no benchmark autotuning), and cuBLAS a fixed
workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set before this worker first touches CUDA, in
fast runs too: cuBLAS reads it once per process, and loky reuses workers across runs):
the same protocol, versions, device and thread count give the same numbers, on GPUs too
(measured on an H200: 1.64x the time of a quick-study CNN trial). An operation without a
deterministic implementation warns instead of failing the trial, and the trial's row then
says ``deterministic = False``.

**Time limit.** In a thread that can receive signals (a loky worker, the parent) the limit is
a ``SIGALRM`` timer, which also interrupts a sleep or a blocking call; in another thread (a
Dask worker's) an exception is raised in the trial's thread asynchronously, which takes
effect at its next Python instruction.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bnstudy.catalogue import FAILED, OOM, TIMEOUT
from bnstudy.execution.devices import SlotPool, cpu_model, cpu_threads, is_cpu
from bnstudy.spec import plugins, trial_function
from bnstudy.spec.trial import Trial
from bnstudy.training.trial_result import TrialResult

#: Trains one trial: ``(trial, device, data_options)``.
TrialFn = Callable[[Trial, str, Mapping[str, Any]], TrialResult]
#: Trains trials that differ only in their seed as one packed model; a result per trial.
PackFn = Callable[[list[Trial], str, Mapping[str, Any]], list[TrialResult]]

#: cuBLAS's fixed workspace for reproducible results (see the CUDA and torch notes on
#: reproducibility); set only when the user has not chosen one.
CUBLAS_WORKSPACE = ":4096:8"

#: What torch warns (with ``warn_only``) when an operation has no deterministic version.
NONDETERMINISTIC = "does not have a deterministic implementation"

#: A Dask worker's device chosen there: its GPU if it has one, else the CPU.
WORKER_AUTO = "auto"


def run_trial(
    trial: Trial, device: str = "cpu", data_options: Mapping | None = None
) -> TrialResult:
    """:func:`bnstudy.training.train.run_trial`, imported where it runs: the parent that
    schedules it never trains, and so never imports torch (about a second saved on every run
    with workers)."""
    from bnstudy.training.train import run_trial as train

    return train(trial, device, data_options)


def protocol_trial(
    resolved: str, trial: Trial, device: str = "cpu", data_options: Mapping | None = None
) -> TrialResult:
    """Train ``trial`` with the protocol's own trial function (``resolved``: its
    ``CODE:FUNCTION`` with the code's path made absolute, see
    :mod:`bnstudy.spec.trial_function`), imported here, in the worker, once per process."""
    from bnstudy.training.context import run_function

    return run_function(trial_function.load(resolved), trial, device, data_options)


def trial_fn_of(trial: str | None, source_dir: str, default: TrialFn = run_trial) -> TrialFn:
    """What trains a protocol's trials: its ``trial:`` function (``trial``, as written, with
    the protocol's folder ``source_dir``) in place of the built-in ``default``; ``default``
    when the protocol names none, or when ``default`` is a caller's own (a test's
    substitute). A protocol's own function trains each trial alone: no packing."""
    if trial is None or default is not run_trial:
        return default
    return functools.partial(protocol_trial, trial_function.resolve(trial, source_dir))


@dataclass(frozen=True)
class WorkerConfig:
    """How every task of a run is executed (the same for all its tasks)."""

    trial_fn: TrialFn
    pack_fn: PackFn | None
    parent_pid: int
    deterministic: bool = True
    #: CPU torch threads per trial; None: the machine's cores divided by ``cpu_workers`` in a
    #: worker process, and the caller's own setting when the parent trains (one job).
    threads: int | None = None
    cpu_workers: int = 1
    timeout_s: float | None = None
    #: Slots to lease (workers on this machine); None: train on ``device`` (Dask workers).
    pool: SlotPool | None = None
    device: str = "cpu"
    #: The protocol's plugins (:mod:`bnstudy.spec.plugins`), imported before the first trial.
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskOutcome:
    """What a task gives back: a result per trial, and how it ran."""

    results: list[tuple[Trial, TrialResult]]
    device: str
    busy_s: float  # training time in the worker (no start-up, no wait for a slot)
    deterministic: bool  # deterministic mode on, and no operation fell back
    threads: int
    #: Not this process's first task: ``busy_s`` holds no one-time start-up (importing torch,
    #: creating the CUDA context, loading the dataset), so it is what later tasks will take.
    warm: bool = True
    host: str = field(default_factory=socket.gethostname)
    cpu_model: str = field(default_factory=cpu_model)


_tasks_run = 0  # tasks this process has run (see TaskOutcome.warm)


def run_task(config: WorkerConfig, trials: Sequence[Trial], data_options: Mapping) -> TaskOutcome:
    """Worker entry point: lease a slot, train ``trials`` (one, or a pack), return the slot."""
    global _tasks_run
    _exit_with_parent(config.parent_pid)
    warm, _tasks_run = _tasks_run > 0, _tasks_run + 1
    holder = task_name(trials)
    lease = config.pool.lease(holder) if config.pool is not None else _fixed(config.device)
    with lease as device:
        threads = _threads(config, device)
        started, start_s = dt.datetime.now(dt.UTC), time.perf_counter()
        with (
            _torch_setup(config.deterministic, threads, device),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            results = _train(config, list(trials), device, data_options, started)
        busy_s = time.perf_counter() - start_s
    fell_back = any(NONDETERMINISTIC in str(w.message) for w in caught)
    for w in caught:  # pass the others on, as if nothing had recorded them
        if NONDETERMINISTIC not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return TaskOutcome(
        results=list(zip(trials, results, strict=True)),
        device=device,
        busy_s=busy_s,
        deterministic=config.deterministic and not fell_back,
        threads=threads,
        warm=warm,
    )


def task_name(trials: Iterable[Trial]) -> str:
    """A task's name, written in the slot it leases: its trial ids, comma-separated."""
    return ",".join(t.trial_id for t in trials)


@contextlib.contextmanager
def _fixed(device: str) -> Iterator[str]:
    if device == WORKER_AUTO:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    yield device


def _threads(config: WorkerConfig, device: str) -> int:
    if not is_cpu(device):
        return 1  # the GPU does the work; more threads only contend
    if config.threads is not None:
        return config.threads
    if os.getpid() == config.parent_pid:  # one job, in process: as the caller set torch up
        import torch

        return torch.get_num_threads()
    return cpu_threads(os.cpu_count() or 1, config.cpu_workers)


def _train(
    config: WorkerConfig,
    trials: list[Trial],
    device: str,
    data_options: Mapping,
    started: dt.datetime,
) -> list[TrialResult]:
    """Train; every exception becomes a result (timeout, oom or failed) for each trial."""
    # A pack has a time budget of one trial per seed: it cannot know which copy is slow.
    limit = config.timeout_s * len(trials) if config.timeout_s else None
    status = error = None
    try:
        with time_limit(limit):
            plugins.load(config.plugins)  # the protocol's own networks; once per process
            if len(trials) == 1:
                return [config.trial_fn(trials[0], device, data_options)]
            assert config.pack_fn is not None  # the runner packs only with a pack function
            results = config.pack_fn(trials, device, data_options)
            if len(results) != len(trials):
                raise RuntimeError(f"pack of {len(trials)} trials gave {len(results)} results")
            return results
    except TrialTimeout as exc:
        status, error = TIMEOUT, f"TrialTimeout: {exc}"
    except Exception as exc:  # noqa: BLE001 - failure is data, recorded with its cause
        status = OOM if is_out_of_memory(exc) else FAILED
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
    # Out of the except blocks: the traceback (and the tensors its frames hold) is released,
    # so the cached memory can go back to the device for the next trial.
    if status == OOM:
        _release_device_memory(device)
    failed = TrialResult.failed(error, started_at=started, device=device)
    return [replace(failed, status=status) for _ in trials]


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA (or CPU) out of memory, as torch and Python report it."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(exc, oom_type | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _release_device_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _torch_setup(deterministic: bool, threads: int, device: str) -> Iterator[None]:
    """Torch's global switches for one task; put back after (with one job it is the parent)."""
    import torch

    if device.startswith("cuda"):
        # Read once, when cuBLAS first creates its workspace in this process: set it before,
        # in fast runs too, since a reused worker may serve a deterministic run next.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    before = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[3:]


# -- time limit -------------------------------------------------------------------------


class TrialTimeout(BaseException):  # noqa: N818 - the row's status says "timeout"
    """A trial ran past its time limit. A BaseException, so that a trial's own
    ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in this thread if the block runs longer than ``seconds``."""
    if not seconds:
        yield
        return
    message = f"the trial ran past its time limit of {seconds:g} s (--timeout)"
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and hasattr(signal, "setitimer"):

        def expire(signum: int, frame: object) -> None:
            raise TrialTimeout(message)

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    with _async_limit(seconds, message):
        yield


@contextlib.contextmanager
def _async_limit(seconds: float, message: str) -> Iterator[None]:
    """The limit for a thread that cannot take signals: an exception set from a timer."""
    target = threading.get_ident()
    lock, state = threading.Lock(), {"done": False}
    exc_type = type("TrialTimeout", (TrialTimeout,), {"__init__": _with_message(message)})

    def expire() -> None:
        with lock:
            if not state["done"]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(exc_type)
                )

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
        timer.cancel()


def _with_message(message: str) -> Callable[[BaseException], None]:
    """``__init__`` for an exception raised by class (as an asynchronous one is)."""

    def init(self: BaseException, *args: object) -> None:
        BaseException.__init__(self, *(args or (message,)))

    return init


# -- the parent's death -----------------------------------------------------------------

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
