"""Benchmark: what the framework costs, and how it scales with workers.

    python benchmarks/bench_runner.py [--only overhead|scaling] [--repeats 5] [--epochs 10]

``overhead``: one quick-study CNN trial (``cnn``, ``bn`` head, ratio 10, 300 images per class)
three ways, on one CPU thread, alternating, ``--repeats`` times each:

- a bare PyTorch loop: the same model, data tensors and SGD steps, then the test accuracy;
- ``train.run_trial``: the same training plus every metric bnstudy records (validation,
  PreciseBN, fold check, train/eval gap, calibration, dead units, ...);
- the framework: ``bnstudy.execution.runner.run_protocol`` on a one-trial protocol with one job (in
  process): dataset preparation, slot lease, determinism switches, the row written durably
  (fsync) and folded into the Parquet table with its metadata.

Two comparisons, because the framework measures more than a bare loop does: *training*
(data, model and the SGD steps: the bare loop without its test accuracy against
``run_trial`` without its evaluation, timed around ``train._evaluate``) and the *whole
trial* (each with its own measurements: one test accuracy against every recorded metric).

``scaling``: 24 trials (mlp and cnn, 2 heads, 3 ratios, 2 seeds, ``--scaling-epochs``) with
``bnstudy run`` in a fresh process, 1 worker against 2 (one torch thread each), and 1 worker
with the default thread division (every core). Times: the run as the summary reports it
(worker start-up included), the whole command (Python start-up, imports, validation), and
the trials' span (first start to last end, from the rows: what the workers add, without the
fixed start-up of a worker process, importing torch, which one job pays once in process).

The machine is described first, with its load average: other work on it moves the numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from bnstudy import study
from bnstudy.data import build_dataset
from bnstudy.execution import runner
from bnstudy.execution.devices import cpu_model
from bnstudy.models import build_model
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.trial import Trial
from bnstudy.training import train


def describe_machine() -> str:
    cpu = cpu_model() or platform.machine()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (
        f"cpu: {cpu}, {os.cpu_count()} logical cores; load average (1, 5, 15 min): {load}\n"
        f"torch {torch.__version__}, python {platform.python_version()}, "
        f"{platform.system()}; gpu: {gpu}"
    )


QUICK = dict(
    architecture="cnn", head="bn", dataset="synthetic", imbalance_ratio=10.0,
    train_per_class=300, batch_size=64, lr=0.05, optimizer="sgd", weight_decay=5e-4,
)  # fmt: skip


def bare_loop(trial: Trial) -> tuple[float, float]:
    """The trial as a bare PyTorch loop: same data, model, SGD steps; test accuracy.

    Returns the seconds of the training (everything before the test accuracy) and in all.
    """
    start = time.perf_counter()
    data = build_dataset(trial, None)
    model = build_model(
        trial.architecture,
        trial.head,
        data.input_shape,
        data.num_classes,
        init_seed=lambda name: trial.stream_seed("init/" + name),
    )
    x, y = data.x_train, data.y_train
    steps_per_epoch = len(y) // trial.batch_size
    total = steps_per_epoch * trial.epochs
    optimizer = torch.optim.SGD(
        model.parameters(), lr=trial.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
    )
    generator = torch.Generator().manual_seed(trial.seed)
    model.train()
    for _ in range(trial.epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(steps_per_epoch):
            index = order[i * trial.batch_size : (i + 1) * trial.batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if not math.isfinite(loss.item()):  # the one host sync per pass, as train.py does
            break
    trained = time.perf_counter()
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert 0 <= accuracy <= 1
    end = time.perf_counter()
    return trained - start, end - start


def timed_run_trial(trial: Trial) -> tuple[float, float]:
    """``run_trial``: the seconds of everything but its evaluation, and in all."""
    spent = []
    evaluate = train._evaluate

    def timed(*args):
        begin = time.perf_counter()
        try:
            return evaluate(*args)
        finally:
            spent.append(time.perf_counter() - begin)

    train._evaluate = timed
    try:
        start = time.perf_counter()
        train.run_trial(trial)
        total = time.perf_counter() - start
    finally:
        train._evaluate = evaluate
    return total - sum(spent), total


def framework(protocol_text: str, work: Path, n: int) -> float:
    protocol = parse_protocol(protocol_text, "bench.yaml", known=study.known_names())
    start = time.perf_counter()
    summary = runner.run_protocol(protocol, work / f"run{n}.parquet", jobs=1, threads=1)
    assert summary.ran == 1 and summary.unfinished == 0, summary.describe()
    return time.perf_counter() - start


def bench_overhead(repeats: int, epochs: int) -> None:
    torch.set_num_threads(1)
    trial = Trial(seed=0, epochs=epochs, **QUICK)
    settings = {**QUICK, "epochs": epochs, "head": "[bn, plain]"}
    text = "name: bench\nseeds: [0]\nfactors:\n" + "".join(
        f"  {k}: {v}\n" for k, v in settings.items()
    )
    text += "control: plain\nexclude: [{head: plain}]\n"  # the one trial: cnn with bn
    train.run_trial(trial)  # warm-up: dataset pool cached, allocator, kernels
    times: dict[str, list[float]] = {k: [] for k in ("bare", "bare_train", "run", "run_train")}
    times["framework"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(repeats):
            for key, (training, total) in (
                ("bare", bare_loop(trial)),
                ("run", timed_run_trial(trial)),
            ):
                times[f"{key}_train"].append(training)
                times[key].append(total)
            times["framework"].append(framework(text, Path(tmp), n))
    print(f"\none quick CNN trial ({epochs} epochs), 1 CPU thread, {repeats} runs each")
    print(f"{'what':<46} {'min s':>7} {'median s':>9} {'vs bare (min)':>14} {'(median)':>9}")
    rows = [
        ("training: data, model, SGD steps", None),
        ("bare_train", "  bare PyTorch loop"),
        ("run_train", "  train.run_trial, its evaluation left out"),
        ("whole trial, each with its measurements", None),
        ("bare", "  bare PyTorch loop (test accuracy)"),
        ("run", "  train.run_trial (every recorded metric)"),
        ("framework", "  runner, 1 job (every metric, stored row)"),
    ]
    for key, label in rows:
        if label is None:
            print(key)
            continue
        base = times["bare_train" if key.endswith("_train") else "bare"]
        lo, mid = min(times[key]), statistics.median(times[key])
        ratio_lo, ratio_mid = lo / min(base), mid / statistics.median(base)
        print(f"{label:<46} {lo:>7.2f} {mid:>9.2f} {ratio_lo:>13.3f}x {ratio_mid:>8.3f}x")
    over = min(times["framework"]) / min(times["run"])
    print(f"runner overhead over run_trial (min): {over:.3f}x")


SCALING = """\
name: scaling
seeds: 2
factors:
  architecture: [mlp, cnn]
  head: [plain, bn]
  dataset: synthetic
  imbalance_ratio: [1, 10, 100]
  train_per_class: 300
  epochs: {epochs}
  batch_size: 64
  lr: 0.05
control: plain
"""


#: The three times of a scaling run, in the order :func:`run_cli` returns them.
WHAT = ("run", "command", "trials")


def run_cli(protocol: Path, results: Path, *flags: str) -> tuple[float, float, float]:
    """``bnstudy run`` in a fresh process: the run's own seconds, the whole command's, and
    the trials' span (first trial's start to last trial's end, from the rows)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bnstudy", "run", str(protocol), "--results", str(results),
         "--no-report", "-q", "--devices", "cpu", *flags],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = time.perf_counter() - start
    match = re.search(r"run \(.*\) in ([\d.]+) s", out.stdout)
    assert match and "24 run" in out.stdout, out.stdout + out.stderr
    rows = pd.read_parquet(results, columns=["started_at", "ended_at"])
    span = (rows["ended_at"].max() - rows["started_at"].min()).total_seconds()
    return float(match.group(1)), total, span


def bench_scaling(repeats: int, epochs: int) -> None:
    configs = [
        ("1 worker, 1 thread", ["--jobs", "1", "--threads", "1"]),
        ("2 workers, 1 thread each", ["--jobs", "2", "--threads", "1"]),
        ("1 worker, default threads", ["--jobs", "1"]),
    ]
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in configs}
    with tempfile.TemporaryDirectory() as tmp:
        protocol = Path(tmp) / "scaling.yaml"
        protocol.write_text(textwrap.dedent(SCALING.format(epochs=epochs)))
        for n in range(repeats):
            for k, (name, flags) in enumerate(configs):
                results = Path(tmp) / f"{n}-{k}.parquet"
                runs[name].append(run_cli(protocol, results, *flags))
    print(f"\n24 trials (mlp+cnn, {epochs} epochs) with `bnstudy run`, {repeats} runs each (min)")
    print(
        "run: as the summary reports it (worker start-up included); command: the whole process;"
        "\ntrials: first trial's start to last trial's end (no start-up): the scaling itself"
    )
    head = f"{'workers':<28}" + "".join(f"{w + ' s':>11} {'speed-up':>9}" for w in WHAT)
    print(head)
    base = [min(r[i] for r in runs[configs[0][0]]) for i in range(len(WHAT))]
    for name, _ in configs:
        best = [min(r[i] for r in runs[name]) for i in range(len(WHAT))]
        cells = "".join(f"{b:>11.1f} {b0 / b:>8.2f}x" for b, b0 in zip(best, base, strict=True))
        print(f"{name:<28}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["overhead", "scaling"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="of the overhead trial")
    parser.add_argument("--scaling-repeats", type=int, default=2)
    parser.add_argument("--scaling-epochs", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine())
    if args.only in (None, "overhead"):
        bench_overhead(args.repeats, args.epochs)
    if args.only in (None, "scaling"):
        bench_scaling(args.scaling_repeats, args.scaling_epochs)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
