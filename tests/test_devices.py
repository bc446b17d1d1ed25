"""Devices and slot leases: parsing, checks, and the lease invariant without a GPU."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

from bnstudy.execution import devices
from bnstudy.execution.devices import SlotPool, check_device, cpu_threads, parse_devices


def test_auto_is_every_visible_gpu_else_the_cpu(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: [])
    assert parse_devices("auto") == ["cpu"]
    monkeypatch.setattr(devices, "visible_gpus", lambda: ["cuda:0", "cuda:1"])
    assert parse_devices("auto") == ["cuda:0", "cuda:1"]
    assert parse_devices(" cuda:1, cuda:0 ") == ["cuda:1", "cuda:0"]
    assert parse_devices(["cpu"]) == ["cpu"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no device given"),
        ("auto,cuda:0", "'auto' stands alone"),
        ("cuda:0,cuda:0", "cuda:0 named more than once"),
    ],
)
def test_bad_device_lists_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_devices(spec)


def test_a_gpu_this_machine_lacks_is_refused_in_one_sentence(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda:0' is not usable here: no CUDA GPU"):
        check_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1")  # counted, not touched: no CUDA context in the parent
    with pytest.raises(ValueError, match=r"torch sees 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        check_device("cuda:2")
    with pytest.raises(ValueError, match="device 'cdua' is not usable here"):
        check_device("cdua")


def test_cpu_threads_divide_the_cores_among_workers():
    assert cpu_threads(16, 4) == 4
    assert cpu_threads(16, 16) == 1
    assert cpu_threads(2, 3) == 1  # never zero
    assert cpu_threads(16, 0) == 16


def test_the_lease_invariant_holds_over_hundreds_of_random_leases():
    """Fake devices, more holders than slots, random durations and failures: never more
    than K at once on a device, every device used, and every slot free at the end."""
    fake = ["fake:0", "fake:1", "fake:2"]
    per_device = 2
    holding, most = Counter(), Counter()
    used, outcomes = Counter(), Counter()
    lock = threading.Lock()

    def holder(pool: SlotPool, seed: int) -> None:
        rng = random.Random(seed)
        for i in range(40):
            try:
                with pool.lease(f"t{seed}-{i}") as device:
                    with lock:
                        holding[device] += 1
                        most[device] = max(most[device], holding[device])
                        used[device] += 1
                    try:
                        time.sleep(rng.uniform(0, 0.004))
                        if rng.random() < 0.2:
                            raise RuntimeError("simulated failure")
                    finally:
                        with lock:
                            holding[device] -= 1
                outcomes["ok"] += 1
            except RuntimeError:
                outcomes["failed"] += 1

    with SlotPool.create(fake, per_device) as pool:
        threads = [threading.Thread(target=holder, args=(pool, s)) for s in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pool.free() == pool.size == 6
        assert pool.in_flight() == dict.fromkeys(fake, 0)
        root = pool.root
    assert not root.exists()  # the pool is removed with the run
    assert sum(outcomes.values()) == 400 and outcomes["failed"] > 0
    assert set(used) == set(fake)  # every device used
    assert all(most[d] <= per_device for d in fake), most
    assert max(most.values()) == per_device  # the contention was real


def test_a_lease_comes_back_when_its_holder_is_killed(tmp_path):
    """The kernel drops the lock of a dead process: no slot leaks with a dead worker."""
    with SlotPool.create(["fake:0"], 1) as pool:
        script = textwrap.dedent(
            f"""
            import sys, time
            from pathlib import Path
            from bnstudy.execution.devices import SlotPool
            pool = SlotPool(Path({str(pool.root)!r}), ("fake:0",), 1)
            with pool.lease("doomed"):
                print("held", flush=True)
                time.sleep(300)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "held"
            assert pool.free() == 0 and pool.in_flight() == {"fake:0": 1}
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert pool.free() == 1
            with pool.lease("next") as device:  # usable again at once
                assert device == "fake:0"
        finally:
            if proc.poll() is None:
                proc.kill()


def test_leases_spread_over_devices_lowest_rank_first():
    with (
        SlotPool.create(["a", "b"], 2) as pool,
        pool.lease("1") as first,
        pool.lease("2") as second,
        pool.lease("3") as third,
    ):
        assert (first, second, third) == ("a", "b", "a")
        assert pool.in_flight() == {"a": 2, "b": 1}


def test_holders_name_what_each_slot_holds_and_can_be_cleared():
    with SlotPool.create(["a", "b"], 1) as pool:
        assert pool.holders() == {}
        with pool.lease("t1,t2"), pool.lease("t3"):
            assert pool.holders() == {"t1,t2": "a", "t3": "b"}
            assert pool.holders(clear=True) == {"t1,t2": "a", "t3": "b"}
            assert pool.holders() == {}  # cleared; the leases stay held
            assert pool.free() == 0
        assert pool.holders() == {} and pool.free() == 2
