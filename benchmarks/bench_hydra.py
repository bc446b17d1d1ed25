"""Benchmark: ``bnstudy run`` against Hydra multirun with its joblib launcher.

    pip install hydra-core hydra-joblib-launcher   # for this benchmark only
    python benchmarks/bench_hydra.py [--repeats 3] [--jobs 2]

The same 64 tiny trials (``mlp``, ``plain``/``bn`` heads, 32 seeds, 40 images per class,
2 epochs, the ``synthetic`` dataset), trained by the same
``bnstudy.training.train.run_trial``, both on
``--jobs`` loky workers with one torch thread each, end to end from a fresh process:

- ``bnstudy run PROTOCOL --jobs J --no-report -q``: validation, dataset preparation, the
  trials, every row stored durably in one Parquet table (and, in a second row, also the
  analysis and the HTML report);
- ``python app.py -m trial.seed=range(0,32) trial.head=plain,bn hydra/launcher=joblib``: a
  Hydra app whose task builds the Trial from its config, trains it and writes a JSON file in
  its job directory (what a Hydra user writes), then, as a user must, a script that gathers
  the 64 JSON files into a table.

The commands alternate, ``--repeats`` times each; the table shows the minimum and median
wall time. The machine is described first, with its load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROTOCOL = """\
name: tiny64
seeds: 32
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  imbalance_ratio: 10
  train_per_class: 40
  epochs: 2
  batch_size: 32
  lr: 0.05
control: plain
"""

APP = """\
import json

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bnstudy.spec.trial import Trial
from bnstudy.training.train import run_trial


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    torch.set_num_threads(1)  # as bnstudy's workers: one thread per worker
    trial = Trial(**OmegaConf.to_container(cfg.trial))
    result = run_trial(trial, "cpu")
    row = {"trial_id": trial.trial_id, "status": result.status, **trial.settings()}
    out = HydraConfig.get().runtime.output_dir  # the job's own directory
    with open(f"{out}/result.json", "w") as fh:
        json.dump(row | result.metrics, fh)
    return result.metrics["balanced_acc"]


if __name__ == "__main__":
    main()
"""

CONFIG = """\
trial:
  seed: 0
  architecture: mlp
  head: plain
  dataset: synthetic
  imbalance_ratio: 10.0
  train_per_class: 40
  epochs: 2
  batch_size: 32
  lr: 0.05
  optimizer: sgd
  weight_decay: 0.0005
"""

GATHER = """\
import json, sys
from pathlib import Path

import pandas as pd

rows = [json.loads(p.read_text()) for p in Path(sys.argv[1]).rglob("result.json")]
assert len(rows) == 64, len(rows)
pd.DataFrame(rows).to_parquet(sys.argv[2])
"""


def describe_machine() -> str:
    import hydra
    import torch

    from bnstudy.execution.devices import cpu_model

    cpu = cpu_model() or platform.machine()

    return (
        f"cpu: {cpu}, {os.cpu_count()} logical cores; load average: {load()}\n"
        f"torch {torch.__version__}, python {platform.python_version()}, hydra-core "
        f"{hydra.__version__}"
    )


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    print(describe_machine())
    py, jobs = sys.executable, str(args.jobs)
    times: dict[str, list[float]] = {
        "bnstudy": [],
        "bnstudy+report": [],
        "hydra": [],
        "hydra+gather": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tiny64.yaml").write_text(PROTOCOL)
        (root / "app.py").write_text(APP)
        (root / "config.yaml").write_text(CONFIG)
        (root / "gather.py").write_text(GATHER)
        for n in range(args.repeats):
            bn = [py, "-m", "bnstudy", "run", "tiny64.yaml", "--jobs", jobs, "--devices", "cpu"]
            times["bnstudy"].append(
                timed([*bn, "--results", f"r{n}.parquet", "--no-report", "-q"], root)
            )
            times["bnstudy+report"].append(
                timed([*bn, "--results", f"q{n}.parquet", "--report", f"q{n}.html", "-q"], root)
            )
            sweep = root / f"multirun{n}"
            hydra_s = timed(
                [py, "app.py", "-m", "trial.seed=range(0,32)", "trial.head=plain,bn",
                 "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
                 f"hydra.sweep.dir={sweep}"],
                root,
            )  # fmt: skip
            gather_s = timed([py, "gather.py", str(sweep), f"h{n}.parquet"], root)
            times["hydra"].append(hydra_s)
            times["hydra+gather"].append(hydra_s + gather_s)
    print(f"\n64 tiny trials, {args.jobs} workers, 1 torch thread each; {args.repeats} runs each")
    print(f"{'command':<46} {'min s':>7} {'median s':>9}")
    labels = {
        "bnstudy": "bnstudy run --no-report (table written)",
        "bnstudy+report": "bnstudy run (table, analysis, HTML report)",
        "hydra": "hydra multirun, joblib launcher",
        "hydra+gather": "hydra multirun + gather JSON into a table",
    }
    for key, label in labels.items():
        print(f"{label:<46} {min(times[key]):>7.1f} {statistics.median(times[key]):>9.1f}")
    ratio = min(times["hydra+gather"]) / min(times["bnstudy"])
    bare = min(times["hydra"]) / min(times["bnstudy"])
    print(f"\nbnstudy (table) is {ratio:.2f}x faster than hydra + gather ({bare:.2f}x than the")
    print(f"multirun alone), minimum over runs; load average at the end: {load()}")


if __name__ == "__main__":
    main()
