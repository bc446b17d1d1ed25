"""Benchmark: dataset generation and single-trial wall time, one torch thread (as in a worker).

    python benchmarks/bench_train.py [--repeats 3]

Prints a table; the numbers depend on the machine, so the script also prints what it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from bnstudy.data.synthetic import synthetic_pool
from bnstudy.protocol import Trial
from bnstudy.train import run_trial


def trial(architecture: str, head: str, ratio: float) -> Trial:
    return Trial(
        seed=0, architecture=architecture, head=head, dataset="synthetic",
        imbalance_ratio=ratio, train_per_class=300, epochs=10, batch_size=64, lr=0.05,
        optimizer="sgd", weight_decay=5e-4,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, 1 thread")  # fmt: skip

    times = []
    for _ in range(args.repeats):
        synthetic_pool.cache_clear()
        start = time.perf_counter()
        synthetic_pool()
        times.append(time.perf_counter() - start)
    print(f"\nsynthetic pool generation: median {statistics.median(times):.3f} s")

    print(f"\n{'architecture':<12} {'head':<15} {'ratio':>5} {'median s':>9} {'bal. acc':>8}")
    for architecture in ["mlp", "cnn"]:
        for head in ["plain", "bn", "hidden_bn_relu"]:
            for ratio in [1.0, 100.0]:
                walls, acc = [], float("nan")
                for _ in range(args.repeats):
                    result = run_trial(trial(architecture, head, ratio))
                    walls.append(result.metrics["wall_s"])
                    acc = result.metrics["balanced_acc"]
                print(
                    f"{architecture:<12} {head:<15} {ratio:>5g} "
                    f"{statistics.median(walls):>9.2f} {acc:>8.3f}"
                )


if __name__ == "__main__":
    main()
