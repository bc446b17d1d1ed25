"""How long each study protocol takes on this CPU, from a sample of its own trials.

    python protocols/study/cpu_cost.py [--per-protocol 6] [--workers 2]

For each committed table, re-runs a seeded sample of its trials here (one thread each, one
at a time, as a worker of a 2-core run would), compares their time with the time recorded
where the table was made (another CPU, or a GPU), and scales the table's summed trial time by
that ratio: the estimated wall time of the whole protocol with ``--workers`` workers on this
machine. Prints a table with the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from summary import PROTOCOLS, ROOT, made_on  # this folder's summary.py

from bnstudy import study
from bnstudy.execution.devices import cpu_model
from bnstudy.training.train import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-protocol", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Pay once, untimed, what a process pays at its first optimizer (torch imports its
    # compiler there, about 1 s), so the first sampled trial is not charged for it.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    print(f"machine: {cpu_model()}, {platform.platform()}, torch {torch.__version__}")
    print(
        "| protocol | trials | made on | recorded trial-hours | sample | here / there "
        f"| estimated wall here, {args.workers} workers |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in PROTOCOLS:
        path = ROOT / "data" / "results" / f"study_{name}.parquet"
        if not path.exists():
            continue
        recorded = study.load_results(path)
        table = recorded.results.table
        there = made_on(json.loads(recorded.results.metadata.get("machine", "{}")))
        by_id = {t.trial_id: t for t in recorded.protocol.expand()}
        ok = table[table["status"] == "ok"]
        sample = ok.sample(n=min(args.per_protocol, len(ok)), random_state=args.seed)
        here = 0.0
        for trial_id in sample["trial_id"]:
            trial = by_id[trial_id]
            start = time.perf_counter()
            run_trial(trial, "cpu", recorded.protocol.dataset_options(trial.dataset))
            here += time.perf_counter() - start
        ratio = here / sample["wall_s"].sum()
        total_h = table["wall_s"].sum() / 3600
        estimate_min = total_h * ratio * 60 / args.workers
        print(
            f"| {name} | {len(table)} | {there} | {total_h:.2f} | {len(sample)} | "
            f"{ratio:.2f} | {estimate_min:.0f} min |",
            flush=True,
        )


if __name__ == "__main__":
    main()
