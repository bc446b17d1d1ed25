"""The runner as a process: killed or terminated, it leaves no worker behind and no row lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bnstudy import study

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds processes through /proc"
)

#: Trials for these tests: the first two finish at once, every later one records the pid of
#: its worker and sleeps far longer than any test waits.
TRIALS = """
import datetime as dt
import os
import pathlib
import time

from bnstudy.catalogue import METRICS
from bnstudy.training.train import TrialResult

STATE = pathlib.Path(os.environ["BNSTUDY_TEST_STATE"])


def trial(trial, device, data_options=None):
    for slot in ("fast-0", "fast-1"):
        try:
            os.close(os.open(STATE / slot, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return result(device)
    with open(STATE / "sleepers", "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(300)
    return result(device)


def result(device):
    now = dt.datetime.now(dt.UTC)
    return TrialResult("ok", None, {m: 0.5 for m in METRICS}, {}, {}, now, now, device)
"""

RUN = '''
import json
import sys

import trials
from bnstudy.execution import runner
from bnstudy import study
from bnstudy.protocol import parse_protocol

PROTOCOL = """\\
name: tiny
seeds: 4
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  train_per_class: 40
  epochs: 2
control: plain
"""


def stored(done, todo, trial, result):
    (trials.STATE / "stored").write_text(str(done))


protocol = parse_protocol(PROTOCOL, "tiny.yaml", known=study.known_names())
summary = runner.run_protocol(
    protocol, sys.argv[1], jobs=2, on_result=stored, trial_fn=trials.trial
)
print(json.dumps({"interrupted": summary.interrupted, "ran": summary.ran}))
'''


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Start a run of 8 trials on 2 workers; return it once both workers sleep in a trial."""
    (tmp_path / "trials.py").write_text(textwrap.dedent(TRIALS))
    (tmp_path / "run.py").write_text(textwrap.dedent(RUN))
    state = tmp_path / "state"
    state.mkdir()
    env = {
        **os.environ,
        "BNSTUDY_TEST_STATE": str(state),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    results = tmp_path / "tiny.parquet"
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(results)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(sleepers(state)) < 2 or _stored(state) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the run did not reach two sleeping workers:\n{out}\n{err}")
        time.sleep(0.1)
    return proc, state, results


def sleepers(state: Path) -> list[int]:
    path = state / "sleepers"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _stored(state: Path) -> int:
    path = state / "stored"
    return int(path.read_text() or 0) if path.exists() else 0


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever adopted it, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: list[int], within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:  # only the workers this test started, should the fix fail
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_workers_exit_soon_after_their_parent_is_killed(tmp_path: Path):
    proc, state, _ = start_run(tmp_path)
    workers = sleepers(state)
    try:
        assert all(alive(p) for p in workers)
        proc.kill()  # SIGKILL: the parent can do nothing about it
        proc.wait(timeout=10)
        assert wait_until_gone(workers, within_s=10) == []
    finally:
        kill_leftovers(workers)


def test_sigterm_stops_the_run_keeps_finished_trials_and_stops_the_workers(tmp_path: Path):
    proc, state, results = start_run(tmp_path)
    workers = sleepers(state)
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"interrupted": True, "ran": 2}
        assert "warn" not in err.lower(), err
        recorded = study.load_results(results)
        assert recorded.protocol.name == "tiny" and len(recorded.results.table) == 2
        assert not results.with_suffix(".pending").exists()  # folded into the table
        assert wait_until_gone(workers, within_s=10) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers(workers)
