"""The runner's execution options on CPU: device slots with fake devices, trial faults
(timeout, out of memory), determinism switches, packing plumbing and thread division."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from joblib.externals.loky.backend.reduction import cloudpickle  # the pickler loky uses

from bnstudy import study
from bnstudy.catalogue import METRICS
from bnstudy.execution import plan, runner
from bnstudy.execution.tasks import choose_packing
from tiny_protocol import tiny

FAKE = ["fake:0", "fake:1", "fake:2"]


@pytest.fixture
def fake_devices(monkeypatch):
    """Let the parent accept made-up device names (workers only pass them to trial_fn)."""
    monkeypatch.setattr(plan, "check_device", lambda device: None)
    return FAKE


def instant(trial, device, data_options=None):
    import datetime as dt
    import math

    from bnstudy.training.train import TrialResult

    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def fate(trial) -> tuple[str, float]:
    """What a simulated trial does, drawn from its id: (outcome, seconds)."""
    rng = random.Random(trial.trial_id)
    draw, seconds = rng.random(), rng.uniform(0, 0.03)
    if draw < 0.04:
        return "timeout", 30.0
    if draw < 0.14:
        return "failed", seconds
    if draw < 0.20:
        return "oom", seconds
    return "ok", seconds


def simulated(log: str, trial, device, data_options=None):
    """Sleeps its drawn time while logging its interval on the device; may fail or OOM."""
    import torch

    outcome, seconds = fate(trial)
    start = time.monotonic()
    try:
        time.sleep(seconds)  # a timed-out one is interrupted by the limit
    finally:
        with open(log, "a") as fh:
            fh.write(f"{device} {start!r} {time.monotonic()!r} {os.getpid()}\n")
    if outcome == "failed":
        raise RuntimeError("simulated failure")
    if outcome == "oom":
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return instant(trial, device)


def reports_torch_state(trial, device, data_options=None):
    """A result whose extra columns say how torch was set up in the worker."""
    import torch

    result = instant(trial, device)
    result.metrics.update(
        det_algorithms=float(torch.are_deterministic_algorithms_enabled()),
        cudnn_deterministic=float(torch.backends.cudnn.deterministic),
        threads_seen=float(torch.get_num_threads()),
        cublas_fixed=float(os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"),
    )
    if trial.head == "bn":  # as torch warns for an op without a deterministic version
        warnings.warn(
            "scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
            "'torch.use_deterministic_algorithms(True, warn_only=True)'",
            UserWarning,
            stacklevel=1,
        )
    return result


def sleeps(trial, device, data_options=None):
    """Runs long on the bn arm of seed 1 (in short sleeps, as training runs in short steps)."""
    if trial.head == "bn" and trial.seed == 1:
        for _ in range(3000):
            time.sleep(0.01)
    return instant(trial, device)


def runs_out_of_memory(trial, device, data_options=None):
    import torch

    if trial.head == "bn" and trial.seed == 1:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return instant(trial, device)


def packed(trials, device, data_options):
    """A stand-in for packing.run_pack: one result per trial, in order."""
    settings = {
        json.dumps({k: v for k, v in t.settings().items() if k != "seed"}, sort_keys=True)
        for t in trials
    }
    assert len(settings) == 1, "a pack mixes settings other than the seed"
    results = [instant(t, device) for t in trials]
    for result in results:
        result.metrics["pack_size"] = float(len(trials))
    return results


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def most_at_once(log: Path) -> tuple[dict[str, int], Counter]:
    """The largest number of overlapping intervals per device in a log of simulated trials."""
    events: dict[str, list[tuple[float, int]]] = {}
    used = Counter()
    for line in log.read_text().splitlines():
        device, start, end, _ = line.split()
        events.setdefault(device, []).extend([(float(start), 1), (float(end), -1)])
        used[device] += 1
    most = {}
    for device, marks in events.items():
        now = peak = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # ends before starts
            now += step
            peak = max(peak, now)
        most[device] = peak
    return most, used


def test_slots_bound_every_device_over_hundreds_of_simulated_trials(tmp_path, fake_devices):
    """240 trials on 3 fake devices x 2 slots in 6 worker processes, with random durations,
    failures, out-of-memory errors and time-outs: never more than 2 at once on a device,
    every device used, every trial a row with its outcome, and the run goes on."""
    log = tmp_path / "intervals.log"
    protocol = tiny(seeds=60)
    path = tmp_path / "tiny.parquet"
    # Start the 6 workers first (loky keeps them for the next run), so that no worker still
    # importing torch leaves the work to the others and a device unused.
    warm = runner.run_protocol(
        tiny(seeds=3), tmp_path / "warm.parquet", devices=fake_devices, per_device=2,
        trial_fn=instant,
    )  # fmt: skip
    assert warm.ran == 12
    summary = runner.run_protocol(
        protocol,
        path,
        devices=fake_devices,
        per_device=2,
        timeout_s=0.5,
        trial_fn=functools.partial(simulated, str(log)),
    )
    trials = protocol.expand()
    expected = Counter(fate(t)[0] for t in trials)
    assert summary.statuses == expected and summary.ran == 240
    assert min(expected["failed"], expected["oom"], expected["timeout"]) > 0

    most, used = most_at_once(log)
    assert set(used) == set(fake_devices) and sum(used.values()) == 240
    assert all(n <= 2 for n in most.values()), most
    table = pd.read_parquet(path)
    assert len(table) == 240 and table["trial_id"].is_unique
    assert set(table["device"]) == set(fake_devices)
    by_id = table.set_index("trial_id")
    for trial in trials:
        assert by_id.loc[trial.trial_id, "status"] == fate(trial)[0]
    timed_out = table[table["status"] == "timeout"]
    assert timed_out["error"].str.contains("time limit of 0.5 s").all()
    assert (timed_out["timeout_s"] == 0.5).all()
    oom = table[table["status"] == "oom"]
    assert oom["error"].str.startswith("OutOfMemoryError: CUDA out of memory").all()

    # failed and oom are retried; a timeout is final under the same limit...
    again = runner.run_protocol(
        protocol, path, devices=fake_devices, per_device=2, timeout_s=0.5, trial_fn=instant
    )
    assert again.ran == expected["failed"] + expected["oom"]
    # ...and retried when the new run allows more time
    longer = runner.run_protocol(
        protocol, path, devices=fake_devices, per_device=2, timeout_s=5, trial_fn=instant
    )
    assert longer.ran == expected["timeout"]
    assert set(pd.read_parquet(path)["status"]) == {"ok"}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_trial_past_its_time_limit_is_a_timeout_row_and_the_run_goes_on(tmp_path, jobs):
    path = tmp_path / "tiny.parquet"
    start = time.monotonic()
    summary = runner.run_protocol(tiny(), path, jobs=jobs, timeout_s=0.5, trial_fn=sleeps)
    assert time.monotonic() - start < 25  # the 30 s trial was cut short
    assert summary.statuses == Counter(ok=6, timeout=2) and summary.unfinished == 2
    rows = pd.read_parquet(path).query("status == 'timeout'")
    assert (rows["head"] == "bn").all() and (rows["seed"] == 1).all()
    assert rows["error"].str.startswith("TrialTimeout").all()
    assert runner.run_protocol(tiny(), path, jobs=jobs, timeout_s=0.5).ran == 0  # final
    assert runner.run_protocol(tiny(), path, jobs=jobs, trial_fn=instant).ran == 2  # no limit


def test_the_time_limit_works_in_a_thread_that_cannot_take_signals(tmp_path):
    """As in a Dask worker's thread: the limit is raised asynchronously in the trial."""
    path = tmp_path / "tiny.parquet"
    summaries = []
    thread = threading.Thread(
        target=lambda: summaries.append(
            runner.run_protocol(tiny(), path, jobs=1, timeout_s=0.5, trial_fn=sleeps)
        )
    )
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert summaries[0].statuses == Counter(ok=6, timeout=2)


def test_out_of_memory_is_an_oom_row_retried_on_resume(tmp_path):
    path = tmp_path / "tiny.parquet"
    summary = runner.run_protocol(tiny(), path, jobs=1, trial_fn=runs_out_of_memory)
    assert summary.statuses == Counter(ok=6, oom=2) and summary.failed == 0
    assert summary.unfinished == 2
    assert runner.run_protocol(tiny(), path, jobs=1, trial_fn=instant).ran == 2


@pytest.mark.parametrize("deterministic", [True, False])
def test_determinism_switches_reach_the_worker_and_every_row(tmp_path, fake_devices, deterministic):
    """On a (fake) CUDA device: deterministic algorithms, cuDNN and the cuBLAS workspace."""
    path = tmp_path / "tiny.parquet"
    summary = runner.run_protocol(
        tiny(),
        path,
        devices="cuda:0",
        per_device=2,
        deterministic=deterministic,
        trial_fn=reports_torch_state,
    )
    table = pd.read_parquet(path)
    assert (table["det_algorithms"] == float(deterministic)).all()
    assert (table["cudnn_deterministic"] == float(deterministic)).all()
    assert (table["threads_seen"] == 1).all() and (table["torch_threads"] == 1).all()
    assert (table["cublas_fixed"] == 1).all()  # before CUDA starts, whatever the mode
    if deterministic:
        # the bn arm hit an operation without a deterministic version: its rows say so
        assert table.groupby("head")["deterministic"].all().to_dict() == {
            "bn": False,
            "plain": True,
        }
        assert any("deterministic=False" in note for note in summary.notes)
    else:
        assert not table["deterministic"].any() and not summary.notes
    execution = json.loads(study.read_results(path).metadata["execution"])
    assert execution["deterministic"] is deterministic
    assert execution["devices"] == ["cuda:0"] and execution["per_device"] == 2


def test_in_process_runs_put_torch_back_as_they_found_it(tmp_path):
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    runner.run_protocol(tiny(), tmp_path / "t.parquet", jobs=1, trial_fn=reports_torch_state)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ or before[1]  # CPU: not touched


def test_cpu_threads_are_divided_among_workers_unless_pinned(tmp_path, monkeypatch):
    """One CPU worker beside a (fake) GPU worker gets every core; GPU trials one thread; a
    run in process keeps the caller's setting; ``threads`` pins the count."""
    import torch

    monkeypatch.setattr(plan, "check_device", lambda device: None)
    cores = os.cpu_count() or 1
    path = tmp_path / "a.parquet"
    runner.run_protocol(
        tiny(seeds=4), path, devices="cpu,fake:0", per_device=1, trial_fn=reports_torch_state
    )
    table = pd.read_parquet(path)
    seen = table.groupby("device")["threads_seen"].agg(set).to_dict()
    # (a worker that starts late may find every trial taken: check the devices that were used)
    assert seen.pop("cpu", {float(cores)}) == {float(cores)} and seen.pop("fake:0", {1.0}) == {1.0}
    assert not seen
    assert (table["torch_threads"] == table["threads_seen"]).all()

    runner.run_protocol(tiny(), tmp_path / "b.parquet", jobs=1, trial_fn=reports_torch_state)
    caller = torch.get_num_threads()  # (the test session's: one)
    assert (pd.read_parquet(tmp_path / "b.parquet")["threads_seen"] == caller).all()
    runner.run_protocol(
        tiny(), tmp_path / "c.parquet", jobs=2, threads=1, trial_fn=reports_torch_state
    )
    assert (pd.read_parquet(tmp_path / "c.parquet")["threads_seen"] == 1).all()


@pytest.mark.parametrize("jobs", [1, 2])
def test_trials_differing_only_in_seed_are_packed_and_stored_one_row_each(tmp_path, jobs):
    path = tmp_path / "tiny.parquet"
    protocol = tiny(seeds=10)  # 4 arm x condition cells of 10 seeds: packs of 4, 4 and 2
    summary = runner.run_protocol(
        protocol, path, jobs=jobs, pack=4, trial_fn=instant, pack_fn=packed
    )
    assert summary.ran == 40
    table = pd.read_parquet(path)
    assert len(table) == 40 and table["trial_id"].is_unique
    packs = table["packed_with"].str.split(",")
    assert all(tid in pack for tid, pack in zip(table["trial_id"], packs, strict=True))
    assert sorted(Counter(table["packed_with"]).values()) == [2] * 4 + [4] * 8
    assert (table["pack_size"] == packs.map(len)).all()
    unpacked = runner.run_protocol(
        protocol, tmp_path / "u.parquet", jobs=jobs, pack="off", pack_fn=packed, trial_fn=instant
    )
    assert unpacked.ran == 40
    assert (pd.read_parquet(tmp_path / "u.parquet")["packed_with"] == "").all()


def test_real_packs_through_the_runner_match_unpacked_runs(tmp_path, float64):
    """bnstudy.training.packing.run_pack via the runner: rows one per trial, their pack named, the
    numbers those of unpacked runs. In float64 (one worker trains in this process), where the
    two agree to about 1e-12 on any CPU; in float32 they differ by summation order, which
    training amplifies (8e-3 in train_loss on one CPU against 1e-6 on another)."""
    pytest.importorskip("bnstudy.training.packing", reason="seed packing not present")
    protocol = tiny(seeds=4)
    packed_run = runner.run_protocol(protocol, tmp_path / "p.parquet", jobs=1, threads=1, pack=4)
    alone = runner.run_protocol(protocol, tmp_path / "u.parquet", jobs=1, threads=1, pack="off")
    assert packed_run.ran == alone.ran == 16 and not packed_run.notes
    p = pd.read_parquet(tmp_path / "p.parquet").set_index("trial_id").sort_index()
    u = pd.read_parquet(tmp_path / "u.parquet").set_index("trial_id").sort_index()
    assert (p["packed_with"].str.split(",").map(len) == 4).all()
    assert (u["packed_with"] == "").all() and (p["status"] == u["status"]).all()
    for metric in ("train_loss", "nll", "balanced_acc"):
        assert (p[metric] - u[metric]).abs().max() < 1e-9, metric


def test_make_tasks_packs_by_everything_but_the_seed_and_leaves_unpackable_alone():
    trials = tiny(seeds=5).expand()
    tasks = runner.make_tasks(trials, 3, packable=lambda t: t.imbalance_ratio == 1)
    assert sorted(len(t) for t in tasks) == [1] * 10 + [2, 2, 3, 3]
    for task in tasks:
        assert len({dataclasses.replace(t, seed=0) for t in task}) == 1
    assert sorted(t.trial_id for task in tasks for t in task) == sorted(t.trial_id for t in trials)
    assert [len(t) for t in runner.make_tasks(trials, 1)] == [1] * 20


def test_packing_falls_back_to_one_at_a_time_and_says_so_once(monkeypatch):
    import types

    execution = runner.plan_execution(devices="cpu", pack=8)
    trials = tiny().expand()
    monkeypatch.setitem(sys.modules, "bnstudy.training.packing", None)  # not installed: ImportError
    notes: list[str] = []
    assert choose_packing(execution, runner.run_trial, None, trials, notes) == (None, None)
    assert len(notes) == 1 and "not available" in notes[0]

    fake = types.ModuleType("bnstudy.training.packing")
    fake.packable = lambda trial: trial.head == "plain"
    fake.run_pack = packed
    monkeypatch.setitem(sys.modules, "bnstudy.training.packing", fake)
    mixed = [dataclasses.replace(t, architecture="cnn") for t in trials[:2]] + trials
    notes = []
    pack_fn, packable = choose_packing(execution, runner.run_trial, None, mixed, notes)
    assert pack_fn is packed and packable is fake.packable
    assert notes == [
        "packing does not support cnn (head bn); mlp (head bn): those 5 trials train one at a time"
    ]
    fake.packable = lambda trial: trial.architecture == "mlp"
    notes = []
    choose_packing(execution, runner.run_trial, None, mixed, notes)
    assert notes == [
        "packing does not support cnn (heads bn, plain): those 2 trials train one at a time"
    ]
    # bnstudy.training.train's run_trial, passed itself, packs as the default
    # (worker.run_trial) does
    from bnstudy.training.train import run_trial as train_run_trial

    assert choose_packing(execution, train_run_trial, None, mixed, [])[0] is packed
    # a substitute trial function has no packed version: unpacked, silently
    assert choose_packing(execution, instant, None, trials, []) == (None, None)
    # pack off: nothing to say
    off = runner.plan_execution(devices="cpu", pack="off")
    assert choose_packing(off, runner.run_trial, None, trials, notes) == (None, None)


def test_execution_defaults_and_checks(monkeypatch, fake_devices):
    from bnstudy.execution import devices

    cpu = runner.plan_execution(devices="cpu")
    assert cpu.devices == ("cpu",) and cpu.pack == 1 and cpu.deterministic
    assert cpu.workers == cpu.per_device == runner.default_jobs()
    assert runner.plan_execution(devices="cpu", jobs=1).workers == 1
    monkeypatch.setattr(devices, "visible_gpus", lambda: ["cuda:0", "cuda:1"])
    gpus = runner.plan_execution()  # auto
    assert gpus.devices == ("cuda:0", "cuda:1") and gpus.per_device == runner.DEFAULT_PER_GPU
    assert gpus.workers == 2 * runner.DEFAULT_PER_GPU and gpus.pack == runner.AUTO_PACK
    assert runner.plan_execution(jobs=3).per_device == 2  # jobs spread over the devices
    assert runner.plan_execution(jobs=3).workers == 3
    assert runner.plan_execution(per_device=1, jobs=8).workers == 2  # never more than slots
    assert runner.plan_execution(pack="off").pack == 1
    for kwargs, message in [
        ({"pack": "many"}, "--pack: expected a number, auto or off"),
        ({"pack": 0}, "--pack must be at least 1"),
        ({"per_device": 0}, "--per-device must be at least 1"),
        ({"jobs": 0}, "--jobs must be at least 1"),
        ({"timeout_s": 0}, "--timeout must be a positive number"),
        ({"backend": "ray"}, "--backend: expected one of loky, dask-local, dask"),
        ({"backend": "dask"}, "--backend dask needs the cluster's --scheduler"),
        ({"backend": "loky", "scheduler": "tcp://h:1"}, "--scheduler is for --backend dask"),
    ]:
        with pytest.raises(ValueError, match=message):
            runner.plan_execution(**kwargs)


def test_the_older_device_argument_still_works(tmp_path):
    summary = runner.run_protocol(tiny(), tmp_path / "t.parquet", jobs=1, device="cpu",
                                  trial_fn=instant)  # fmt: skip
    assert summary.ran == 8 and summary.execution.devices == ("cpu",)


def test_a_planned_execution_is_taken_as_it_is(tmp_path):
    execution = runner.plan_execution(jobs=1, devices="cpu", threads=1)
    summary = runner.run_protocol(
        tiny(), tmp_path / "t.parquet", execution=execution, trial_fn=instant
    )
    assert summary.ran == 8 and summary.execution is execution
    with pytest.raises(TypeError, match=r"give execution or its options \(jobs, pack\)"):
        runner.run_protocol(tiny(), tmp_path / "u.parquet", 2, execution=execution, pack=1)
