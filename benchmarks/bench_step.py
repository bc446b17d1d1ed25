"""Milliseconds per training step of one registered network, for sizing GPU-scale protocols.

    PYTHONPATH=src python benchmarks/bench_step.py resnet32 --shape 3 32 32 --device cuda

Times ``--steps`` SGD steps (after ``--warmup`` untimed ones) of ``architecture`` + ``head`` on
random inputs of ``--shape``, deterministic kernels as ``bnstudy run`` uses them by default,
and prints one table row with the machine. Multiply by a protocol's steps to estimate the
time per trial (unpacked).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bnstudy.execution.worker import _torch_setup
from bnstudy.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("architecture")
    parser.add_argument("--head", default="bn")
    parser.add_argument("--shape", type=int, nargs="+", default=[3, 32, 32])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    with _torch_setup(deterministic=True, threads=threads, device=args.device):
        ms, machine = _time(args)
    print("| network | input | batch | ms per step | device |")
    print("| --- | --- | --- | --- | --- |")
    shape = "x".join(map(str, args.shape))
    print(f"| {args.architecture} + {args.head} | {shape} | {args.batch} | {ms:.2f} | {machine} |")


def _time(args: argparse.Namespace) -> tuple[float, str]:
    model = build_model(
        args.architecture, args.head, tuple(args.shape), args.classes, init_seed=lambda _: 0
    )
    model = model.to(args.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, *args.shape, device=args.device)
    y = torch.randint(0, args.classes, (args.batch,), device=args.device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    ms = (time.perf_counter() - start) / args.steps * 1e3
    machine = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    return ms, machine


if __name__ == "__main__":
    main()
