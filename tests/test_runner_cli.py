"""The run verb's execution flags reach the runner, the rows and the metadata."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
from joblib.externals.loky.backend.reduction import cloudpickle  # the pickler loky uses

from bnstudy import study
from bnstudy.catalogue import METRICS
from bnstudy.cli import _unfinished, main
from bnstudy.execution import runner
from bnstudy.store import ResultStore
from bnstudy.training.train import TrialResult
from tiny_protocol import tiny_text

TINY = tiny_text(seeds=1, epochs=1)


def instant(trial, device, data_options=None):
    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def killing(trial, device, data_options=None, *, once: str):
    """SIGKILLs its worker under one trial every time, and under another the first time
    (``once``: a file that says it happened)."""
    if (trial.head, trial.imbalance_ratio, trial.seed) == ("bn", 10, 0):
        os.kill(os.getpid(), signal.SIGKILL)
    if (trial.head, trial.imbalance_ratio, trial.seed) == ("plain", 1, 1):
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return instant(trial, device)


# Workers cannot import this test module: send the functions above by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_execution_flags_reach_rows_and_metadata(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    argv = ["run", "tiny.yaml", "--devices", "cpu", "--jobs", "1", "--threads", "1"]
    flags = ["--fast-nondeterministic", "--timeout", "100", "--pack", "off", "--no-report"]
    assert main([*argv, *flags]) == 0
    out = capsys.readouterr().out
    assert "training on 1 worker on cpu (loky), nondeterministic (fast)" in out
    assert "[4/4] " in out and "4 trials: 0 already done, 4 run" in out
    results = study.read_results("data/results/tiny.parquet")
    table = results.table
    assert not table["deterministic"].any() and (table["timeout_s"] == 100).all()
    assert (table["torch_threads"] == 1).all() and (table["packed_with"] == "").all()
    execution = json.loads(results.metadata["execution"])
    assert execution == {
        "backend": "loky",
        "deterministic": False,
        "devices": ["cpu"],
        "pack": 1,
        "per_device": 1,
        "scheduler": None,
        "threads": 1,
        "timeout_s": 100.0,
        "workers": 1,
    }
    # --device, the older spelling, still works; a resume says how far it got
    assert main(["run", "tiny.yaml", "--device", "cpu", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "4 trials: 4 already done, 0 run" in out and "resuming: 4 of 4" in out


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--pack", "many"], "--pack: expected a number, auto or off, got 'many'"),
        (["--per-device", "0"], "--per-device must be at least 1, got 0"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--backend", "dask"], "--backend dask needs the cluster's --scheduler"),
        (["--devices", "auto,cpu"], "--devices: 'auto' stands alone"),
        (["--devices", "cuda:0"], "device 'cuda:0' is not usable here"),
        (["--devices", "cpu,cpu"], "--devices: cpu named more than once"),
    ],
)
def test_bad_execution_flags_exit_2_with_one_line(flags, expected, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    Path("tiny.yaml").write_text(TINY)
    assert main(["run", "tiny.yaml", *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not Path("data/results/tiny.parquet").exists()


def test_the_exit_message_says_what_a_resume_does_with_each_kind_of_problem():
    assert _unfinished({"failed": 2, "ok": 5}) == (
        "2 trials failed (retried by the next run); see the 'error' column"
    )
    assert _unfinished({"failed": 1, "oom": 2, "timeout": 3}) == (
        "1 trial failed and 2 ran out of memory (retried by the next run); 3 timed out "
        "(retried only with a longer --timeout); see the 'error' column"
    )
    assert _unfinished({"timeout": 1}) == (
        "1 trial timed out (retried only with a longer --timeout); see the 'error' column"
    )


def test_a_trial_that_kills_its_worker_fails_alone_and_the_run_goes_on(
    tmp_path, monkeypatch, capsys
):
    """2 workers; one trial's worker is SIGKILLed every time, another's the first time only.
    The second is retried and trains; the first is retried once, then recorded failed; every
    other trial trains, once; the exit code says some trials failed."""
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(tiny_text(seeds=2))
    once = tmp_path / "died-once"
    trial_fn = functools.partial(killing, once=str(once))
    monkeypatch.setattr(
        runner, "run_protocol", functools.partial(runner.run_protocol, trial_fn=trial_fn)
    )
    argv = ["run", "tiny.yaml", "--devices", "cpu", "--jobs", "2", "--no-report"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert once.exists()  # the die-once trial did kill its worker
    assert "8 trials: 0 already done, 8 run (1 failed, 7 ok)" in out
    assert "1 trial failed (retried by the next run)" in err
    table = pd.read_parquet("data/results/tiny.parquet")
    assert len(table) == 8 and table["trial_id"].is_unique
    key = list(zip(table["head"], table["imbalance_ratio"], table["seed"], strict=True))
    failed = table[[k == ("bn", 10, 0) for k in key]]
    assert failed["status"].tolist() == ["failed"]
    assert failed["error"].tolist() == ["worker died (SIGKILL)"]
    assert (table.drop(failed.index)["status"] == "ok").all()


def test_no_results_line_for_a_run_interrupted_before_any_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_task", interrupted)  # Ctrl-C during the first trial
    assert main(["run", "tiny.yaml", "--devices", "cpu", "--jobs", "1"]) == 130
    out = capsys.readouterr().out
    assert "interrupted" in out and "results:" not in out
    assert not Path("data/results/tiny.parquet").exists()


def test_the_training_line_waits_for_the_results_lock_and_trials_to_train(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    argv = ["run", "tiny.yaml", "--devices", "cpu", "--jobs", "1", "--no-report"]
    with ResultStore("data/results/tiny.parquet").writer():  # another run holds the results
        assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "another bnstudy run is writing these results" in err
    assert "training on" not in out
    assert main(argv) == 0
    assert "training on 1 worker on cpu" in capsys.readouterr().out
    assert main(argv) == 0  # all done: nothing to train
    out = capsys.readouterr().out
    assert "4 trials: 4 already done, 0 run" in out and "training on" not in out
