"""Dask backends on loopback: the same rows as loky, GPU slots as Dask worker resources."""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import signal
import sys
import time

import pandas as pd
import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'bnstudy[dask]'"
)
import cloudpickle  # noqa: E402 - the pickler Dask uses (after the skip: it comes with dask)

import tiny_protocol  # noqa: E402
from bnstudy import study  # noqa: E402
from bnstudy.catalogue import METRICS  # noqa: E402
from bnstudy.execution import runner  # noqa: E402

#: The tiny protocol with one seed unless a test says otherwise.
tiny = functools.partial(tiny_protocol.tiny, seeds=1)


def on_a_gpu_worker(trial, device, data_options=None):
    """Simulated GPU trial: records its worker process and interval; seed 3's bn arm runs
    far past the time limit (in short steps, as training does)."""
    from bnstudy.training.train import TrialResult

    start = time.monotonic()
    steps = 3000 if (trial.seed == 3 and trial.head == "bn") else 10
    for _ in range(steps):
        time.sleep(0.01)
    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    metrics.update(pid=float(os.getpid()), start=start, end=time.monotonic())
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def kills_its_worker(trial, device, data_options=None):
    """SIGKILLs its worker process on the bn arm of seed 1 (as the OOM killer would)."""
    if trial.head == "bn" and trial.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return on_a_gpu_worker(trial, device, data_options)


cloudpickle.register_pickle_by_value(sys.modules[__name__])

COMPARED = [m for m in METRICS if m != "wall_s"]


def metrics_by_trial(path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    return table.set_index("trial_id").sort_index()[COMPARED]


@pytest.mark.slow
def test_dask_local_gives_the_same_rows_as_loky(tmp_path):
    loky = runner.run_protocol(tiny(), tmp_path / "loky.parquet", jobs=2, threads=1)
    dask = runner.run_protocol(
        tiny(), tmp_path / "dask.parquet", jobs=2, threads=1, backend="dask-local"
    )
    assert loky.ran == dask.ran == 4 and dask.unfinished == 0
    pd.testing.assert_frame_equal(
        metrics_by_trial(tmp_path / "loky.parquet"), metrics_by_trial(tmp_path / "dask.parquet")
    )
    meta = study.read_results(tmp_path / "dask.parquet").metadata
    assert '"backend": "dask-local"' in meta["execution"]


@pytest.mark.slow
def test_dask_local_goes_on_when_a_worker_is_killed(tmp_path, deadline):
    """A trial whose worker dies is retried alone, then failed; the others are unaffected
    (joblib's Dask backend alone would wait for the dead worker's task forever)."""
    path = tmp_path / "dask.parquet"
    with deadline(240):
        summary = runner.run_protocol(
            tiny(seeds=2), path, jobs=2, threads=1, backend="dask-local",
            trial_fn=kills_its_worker,
        )  # fmt: skip
    assert summary.aborted is None and not summary.interrupted
    assert summary.statuses == {"ok": 6, "failed": 2}
    table = pd.read_parquet(path)
    died = (table["head"] == "bn") & (table["seed"] == 1)
    assert len(table) == 8 and table["trial_id"].is_unique
    assert (table.loc[died, "error"] == "worker died").all()
    assert (table.loc[~died, "status"] == "ok").all()


@pytest.fixture(scope="module")
def cluster():
    """An existing cluster on loopback: 2 worker processes of 2 threads, each with one GPU
    (as a Dask resource: nothing here touches a real GPU)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        resources={"GPU": 1},
    ) as cluster:
        yield cluster


@pytest.mark.slow
def test_an_existing_cluster_trains_and_the_parent_writes_every_row(tmp_path, cluster):
    summary = runner.run_protocol(
        tiny(),
        tmp_path / "dask.parquet",
        backend="dask",
        scheduler=cluster.scheduler_address,
        devices="cpu",
        threads=1,
    )
    assert summary.ran == 4 and summary.unfinished == 0
    reference = tmp_path / "loky.parquet"
    runner.run_protocol(tiny(), reference, jobs=2, threads=1)
    pd.testing.assert_frame_equal(
        metrics_by_trial(tmp_path / "dask.parquet"), metrics_by_trial(reference)
    )


@pytest.mark.slow
def test_gpu_workers_take_one_trial_per_gpu_resource_and_time_limits_hold(tmp_path, cluster):
    """Workers with 2 threads but the resource GPU=1 train one trial at a time; a trial past
    the time limit (in a worker thread, where no signal can reach it) is a timeout row."""
    summary = runner.run_protocol(
        tiny(seeds=4),
        tmp_path / "gpu.parquet",
        backend="dask",
        scheduler=cluster.scheduler_address,
        devices="cuda",
        timeout_s=2,
        trial_fn=on_a_gpu_worker,
    )
    assert summary.ran == 16 and summary.statuses["timeout"] == 2
    table = pd.read_parquet(tmp_path / "gpu.parquet")
    assert (table["device"] == "cuda").all() and len(table) == 16
    done = table[table["status"] == "ok"]
    assert done["pid"].nunique() == 2  # both workers used
    for _, rows in done.groupby("pid"):
        spans = sorted(zip(rows["start"], rows["end"], strict=True))
        gaps = [b_start - a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)]
        assert min(gaps) >= 0, gaps


@pytest.mark.slow
def test_on_an_existing_cluster_a_killed_worker_stops_the_run_and_keeps_the_rest(
    tmp_path, cluster, deadline
):
    """Dask retries the task on other workers; when it has killed too many, the trial cannot
    be named, and the run stops (it used to wait forever); the next run resumes."""
    path = tmp_path / "dask.parquet"
    with deadline(240):
        summary = runner.run_protocol(
            tiny(seeds=2), path, backend="dask", scheduler=cluster.scheduler_address,
            devices="cpu", threads=1, trial_fn=kills_its_worker,
        )  # fmt: skip
    assert "all those workers died while running it" in summary.aborted
    assert summary.ran < 8 and set(summary.statuses) <= {"ok"}  # nothing for the killer
    again = runner.run_protocol(
        tiny(seeds=2), path, backend="dask", scheduler=cluster.scheduler_address,
        devices="cpu", threads=1, trial_fn=on_a_gpu_worker,
    )  # fmt: skip
    assert again.skipped == summary.ran and again.ran == 8 - summary.ran
