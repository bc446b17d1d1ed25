"""Benchmark: training-step speed of every architecture, and single-trial wall time.

    python benchmarks/bench_train.py [--only steps|trials] [--threads 1] [--repeats 3]

``steps``: for every registered architecture (``plain`` head, SGD with Nesterov momentum as
in ``train.py``, random data already on the device), the median milliseconds per training step
and images per second at batch 128, on the CPU and, when available, on CUDA. Image
architectures run at 3x16x16 (the ``synthetic`` dataset) and 3x32x32 (CIFAR); ``cnn1d`` at 1x40
(MNIST-1D). ``trials``: dataset generation, loading its cache file (what each worker does),
and whole ``synthetic`` trials of ``mlp``/``cnn``.

The numbers depend on the machine, so the script first prints what it ran on. CPU runs use
``--threads`` intra-op threads (default 1, as in a runner worker).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import zlib

import torch
import torch.nn.functional as F

from bnstudy.data import pool
from bnstudy.data.synthetic import synthetic_pool
from bnstudy.execution.devices import cpu_model
from bnstudy.models import architecture_info, architecture_names, build_model
from bnstudy.spec.trial import Trial
from bnstudy.training.train import run_trial

BATCH = 128
IMAGE_SHAPES = [(3, 16, 16), (3, 32, 32)]
SIGNAL_SHAPES = [(1, 40)]


def describe_machine(threads: int) -> str:
    lines = [
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores, {threads} torch thread(s)",
        f"torch {torch.__version__}, python {platform.python_version()}, {platform.system()}",
    ]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        lines.append(
            f"cuda: {name}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
    else:
        lines.append("cuda: not available")
    return "\n".join(lines)


def trial(architecture: str, head: str, ratio: float) -> Trial:
    return Trial(
        seed=0, architecture=architecture, head=head, dataset="synthetic",
        imbalance_ratio=ratio, train_per_class=300, epochs=10, batch_size=64, lr=0.05,
        optimizer="sgd", weight_decay=5e-4,
    )  # fmt: skip


def step_ms(architecture: str, shape: tuple[int, ...], device: str, steps: int) -> float:
    """Median wall milliseconds of one training step (forward, backward, SGD update)."""
    model = build_model(architecture, "plain", shape, 10, lambda n: zlib.crc32(n.encode()))
    model.to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    x = torch.randn(BATCH, *shape, device=device)
    y = torch.randint(0, 10, (BATCH,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for i in range(steps + 2):  # two warm-up steps (allocator, cuDNN autotuning)
        sync()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_steps(steps: int) -> None:
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    print(f"\ntraining step at batch {BATCH} (plain head, SGD), median of {steps} steps")
    header = f"{'architecture':<16} {'input':<11} {'params':>9} {'device':<6} {'ms/step':>9}"
    print(f"{header} {'img/s':>9}")
    for architecture in architecture_names():
        inputs = architecture_info(architecture).inputs
        shapes = SIGNAL_SHAPES if inputs == ("signal",) else IMAGE_SHAPES
        for shape in shapes:
            model = build_model(architecture, "plain", shape, 10, lambda n: 0)
            params = sum(p.numel() for p in model.parameters())
            for device in devices:
                ms = step_ms(architecture, shape, device, steps)
                size = "x".join(map(str, shape))
                print(
                    f"{architecture:<16} {size:<11} {params:>9,} {device:<6} "
                    f"{ms:>9.1f} {BATCH / ms * 1000:>9.0f}",
                    flush=True,
                )


def bench_trials(repeats: int) -> None:
    times = []
    for _ in range(repeats):
        synthetic_pool.cache_clear()
        start = time.perf_counter()
        synthetic_pool()
        times.append(time.perf_counter() - start)
    print(f"\nsynthetic pool generation: median {statistics.median(times):.3f} s")
    pool.prepare_dataset("synthetic")  # what a run's parent does once; workers then load it
    times = []
    for _ in range(repeats):
        pool._load_cache.cache_clear()
        start = time.perf_counter()
        pool.load_pool("synthetic")
        times.append(time.perf_counter() - start)
    print(f"synthetic pool loaded from its cache file: median {statistics.median(times):.3f} s")

    print(f"\n{'architecture':<12} {'head':<15} {'ratio':>5} {'median s':>9} {'bal. acc':>8}")
    for architecture in ["mlp", "cnn"]:
        for head in ["plain", "bn", "hidden_bn_relu"]:
            for ratio in [1.0, 100.0]:
                walls, acc = [], float("nan")
                for _ in range(repeats):
                    result = run_trial(trial(architecture, head, ratio))
                    walls.append(result.metrics["wall_s"])
                    acc = result.metrics["balanced_acc"]
                print(
                    f"{architecture:<12} {head:<15} {ratio:>5g} "
                    f"{statistics.median(walls):>9.2f} {acc:>8.3f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["steps", "trials"], default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="trials per cell")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per cell")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine(args.threads))
    if args.only in (None, "steps"):
        bench_steps(args.steps)
    if args.only in (None, "trials"):
        bench_trials(args.repeats)


if __name__ == "__main__":
    main()
