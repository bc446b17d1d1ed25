"""Where workers come from: joblib's loky processes, or a Dask cluster through joblib.

The runner always calls ``joblib.Parallel``; the backend is chosen with
``joblib.parallel_config``, so no scheduling code of our own sits between joblib and Dask.

- ``loky`` (default): worker processes on this machine.
- ``dask-local``: a ``distributed.LocalCluster`` on the loopback interface (one worker
  process per slot, one thread each), started and stopped with the run. Useful to check a
  Dask set-up on one machine; results are the same as loky's.
- ``dask`` with ``--scheduler tcp://HOST:PORT``: an existing ``dask.distributed`` cluster.
  Each worker trains on its own device: its GPU if it has one (``--devices auto``), or the
  CPU. With ``--devices cuda`` every task asks the scheduler for the worker resource
  ``GPU=1``, so a worker started with ``--resources GPU=K`` trains at most K trials at once
  on its GPU (K plays ``--per-device``). On a multi-GPU node, dask-cuda starts one worker
  per GPU, each seeing only its own::

      dask scheduler --port 8786
      dask cuda worker tcp://HOST:8786 --resources GPU=4 --nthreads 4
      # or, in Python: LocalCUDACluster(threads_per_worker=4, resources={"GPU": 4})
      bnstudy run protocols/quick.yaml --backend dask --scheduler tcp://HOST:8786 --devices cuda

  The parent process still writes every row; workers only train and send results back.
  Workers need bnstudy and torch installed, and the datasets the protocol reads (its local
  files, and the ``data/datasets`` cache, which a worker rebuilds if it cannot see it).
  Install the client with ``pip install 'bnstudy[dask]'``.

A Dask worker that dies under a task (SIGKILL, the OOM killer) is reported as Dask's
``KilledWorker``, as loky's dead worker is by ``TerminatedWorkerError`` (see
:func:`worker_died`). joblib's Dask backend (1.6) never tells its result loop of a task whose
future failed in Dask itself, and the loop would wait for it forever: :func:`_dask_backend`
reports it. On the local cluster Dask does not run such a task again itself
(``allowed-failures`` 0): the runner retries it alone, as with loky.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import joblib
from joblib.externals.loky.process_executor import TerminatedWorkerError

BACKENDS = ("loky", "dask-local", "dask")


def check_backend(backend: str, scheduler: str | None) -> None:
    """Raise ValueError for an unknown backend, a missing scheduler, or Dask not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "dask" and not scheduler:
        raise ValueError("--backend dask needs the cluster's --scheduler tcp://HOST:PORT")
    if backend != "dask" and scheduler:
        raise ValueError(f"--scheduler is for --backend dask, not {backend!r}")
    if backend.startswith("dask") and not dask_installed():
        raise ValueError(f"--backend {backend} needs dask.distributed: pip install 'bnstudy[dask]'")


def dask_installed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def joblib_backend(
    backend: str,
    workers: int,
    scheduler: str | None = None,
    resources: dict[str, float] | None = None,
) -> Iterator[int]:
    """Configure joblib for the run's workers; yields the ``n_jobs`` to give ``Parallel``."""
    if backend == "loky":
        with joblib.parallel_config(backend="loky"):
            yield workers
        return
    import dask
    from distributed import Client, LocalCluster

    submit: dict[str, Any] = {"resources": resources} if resources else {}
    if backend == "dask-local":
        with (
            # A task whose worker dies is the runner's to retry (alone), not Dask's.
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                memory_limit=0,  # the OS, not Dask, decides when a trial is too big
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
            joblib.parallel_config(backend=_dask_backend(client, submit)),
        ):
            yield workers
        return
    with (
        Client(scheduler, timeout="30s") as client,
        joblib.parallel_config(backend=_dask_backend(client, submit)),
    ):
        yield -1  # every thread of the cluster


def _dask_backend(client: Any, submit: dict[str, Any]) -> Any:
    """joblib's Dask backend on ``client``, reporting tasks that fail in Dask itself.

    joblib's backend calls a task's completion callback only when its future succeeds (an
    exception in the task is a result too); a future that Dask fails (``KilledWorker``: its
    worker died) is never reported, so the results loop waits for it forever. Here its error
    is reported as the task's outcome, which joblib then raises, as it does loky's.

    And the workers asked for (``n_jobs`` > 0, the local cluster's) are the workers there
    are: joblib counts the cluster's threads at each call, and while a dead worker's nanny
    starts it again that may be 1, which joblib takes as "run in this process" (where the
    task that killed its worker would kill the run).
    """
    from joblib._dask import DaskDistributedBackend

    class Backend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs: int) -> int:
            return n_jobs if n_jobs > 0 else super().effective_n_jobs(n_jobs)

        def submit(self, func: Any, callback: Callable[[Any], None] | None = None) -> Any:
            future = super().submit(func, callback)
            if callback is not None:
                future.add_done_callback(functools.partial(_report_failure, callback))
            return future

    return Backend(client=client, **submit)


def _report_failure(callback: Callable[[Any], None], future: Any) -> None:
    """Give a failed future's exception to joblib's completion callback (once done: a
    success was reported by joblib already, and a second report is ignored)."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        callback(exc)


def worker_died() -> tuple[type[BaseException], ...]:
    """The exceptions joblib raises when a worker process died under a task."""
    errors: list[type[BaseException]] = [TerminatedWorkerError]
    with contextlib.suppress(ImportError):
        from distributed import KilledWorker

        errors.append(KilledWorker)
    return tuple(errors)


def death_cause(exc: BaseException) -> str:
    """``"worker died (SIGKILL)"``: what killed the worker, as far as the error says.

    loky names the exit codes of the workers it found dead (``{SIGKILL(-9)}``, ``{EXIT(1)}``);
    Dask's KilledWorker names none.
    """
    found = re.search(r"exit codes of the workers are \{([^}]*)\}", str(exc))
    codes = re.findall(r"(\w+)\((-?\d+)\)", found.group(1)) if found else []
    causes = [name if name.startswith("SIG") else f"exit code {code}" for name, code in codes]
    return f"worker died ({', '.join(causes)})" if causes else "worker died"
