"""Going on when a worker dies: the trials it held are retried, each alone.

A worker that dies (SIGKILL, the OOM killer, a segfault) ends joblib's results with an error
(loky's TerminatedWorkerError, Dask's KilledWorker), and loky kills the other workers with
it. :func:`retrying_dead_workers` finds the tasks that were running in the slots they leased
(:meth:`bnstudy.execution.devices.SlotPool.holders`), retries each alone, and turns a task
whose worker dies again into a ``failed`` row per trial (``worker died (SIGKILL)``).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bnstudy.execution.backends import death_cause, worker_died
from bnstudy.execution.worker import TaskOutcome, WorkerConfig, task_name
from bnstudy.spec.trial import Trial
from bnstudy.training.trial_result import TrialResult


def retrying_dead_workers(
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
    Where no slot names a lost task (a restarted Dask worker took the slot first), every lost
    task is a suspect. Without slots (a remote Dask cluster) the error is raised: the run
    stops.
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
                back.add(task_name(t for t, _ in outcome.results))
                yield outcome
        except worker_died() as exc:
            died = exc
        finally:
            close_results(results)
        if died is None:
            continue
        lost = [task for task in batch if task_name(task) not in back]
        if config.pool is None:  # a remote cluster: no slots name the cause
            raise died
        held = config.pool.holders(clear=True)
        if alone:  # its second death, running alone: the cause
            for task in lost:
                yield _died(task, death_cause(died), held.get(task_name(task), ""), config)
            continue
        named = [task for task in lost if task_name(task) in held]
        # None named: a restarted worker (Dask's nanny) took the dead one's slot before it was
        # read; then every lost task is a suspect and runs alone.
        suspects += named or lost
        queue = [task for task in lost if named and task not in named]


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


def close_results(results: Iterable[Any]) -> None:
    """Close a results generator; joblib's warning about cancelled tasks says nothing new."""
    close = getattr(results, "close", None)
    if close is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            close()
