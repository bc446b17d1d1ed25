"""The run verb's execution flags reach the runner, the rows and the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.cli import _unfinished, main
from tiny_protocol import tiny_text

TINY = tiny_text(seeds=1, epochs=1)


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
