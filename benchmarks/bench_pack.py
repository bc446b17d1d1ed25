"""Benchmark: seed packing, per-trial throughput packed vs one at a time (issue #8).

    python benchmarks/bench_pack.py [--device cuda|cpu] [--ks 1,4,16,32,64] [--epochs 10]
                                    [--singles 3] [--threads 1] [--quick]
    python benchmarks/bench_pack.py --networks resnet20:3x32x32:128 vgg11_bn:3x32x32:128 \
                                    [--ks 1,4,16] [--precisions fp32,bf16] [--steps 20]

The trial is the quick study's CNN (``protocols/quick.yaml``: ``cnn`` with head ``bn`` on the
synthetic 3x16x16 images, 300 per class at imbalance ratio 10, batches of 64, SGD lr 0.05,
weight decay 5e-4, 10 epochs), whole: dataset, training and every evaluation metric.

- **one at a time**: ``run_trial`` on ``--singles`` seeds in sequence, before and again after
  the packs; the median wall time of a trial over both.
- **packed**: ``run_pack`` on K seeds; its wall time over K is the time per trial; the speedup
  is one-at-a-time over packed, per trial. Same process, same device, after a warm-up.
- **steps**: milliseconds per training step of the packed model alone (forward, backward,
  SGD) on random data, as in the prototype table of MEASURED.md.
- **phases**: the packs above, wall milliseconds per trial (phase time over K) in each phase
  of ``run_pack`` (see ``count_pack_ops.py``; the device is synchronised at each phase switch,
  so device work counts where it was queued). A phase whose time per trial does not fall as K
  grows is work per copy.
- **operators**: aten operators per training step and per phase, and host reads in training
  and evaluation (``item()``, ``tolist()``: each a sync on a GPU; on a CPU only the scalar
  reads count), counted on a one-epoch pack of each K. The counts are the same on any
  device; on a GPU each operator costs some microseconds of host time, so a count that grows
  with K is launch time that grows with K.
- **agreement**: the seeds run both ways are compared: largest difference of the final
  training loss and of the balanced accuracy, and whether the statuses match (float32 on the
  device, so rounding, not zero).

**Networks** (``--networks NET:INPUT:BATCH ...``, e.g. the deep ones at CIFAR size; only this
table is printed then): milliseconds per training step of each network (head ``bn``, SGD,
random data, ``--steps`` after 5 warm-up), unpacked (one plain model) and packed at each K
of ``--ks``, in each of ``--precisions`` (``bf16``: autocast, as ``--precision bf16``), with
deterministic kernels as ``bnstudy run`` uses them by default (``--fast-nondeterministic``:
as that flag). The speed-up per model is ``K x unpacked / packed``: what K seeds packed save
over the same K steps taken one model at a time.

``--quick`` (2 single trials, 20 timed steps; still the whole 10-epoch trials, since shorter
ones overweight the fixed costs of a pack) keeps the whole run well under a minute on a GPU
(about 15 s on an H200 before the operator table, which adds a one-epoch pack per K, run
under an operator counter). The machine is described first; CPU runs use ``--threads`` torch
threads (default 1, as in a runner worker).
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

import torch
import torch.nn.functional as F
from bench_train import describe_machine  # same folder
from count_pack_ops import ORDER, PhaseClock, measure, phases, quick_trial  # same folder

from bnstudy.execution.cost import parse_shape
from bnstudy.execution.worker import _torch_setup
from bnstudy.models import build_model
from bnstudy.models.packed import pack_inputs, pack_models
from bnstudy.training import loop
from bnstudy.training.packing import run_pack
from bnstudy.training.train import run_trial


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def step_ms(
    network: str,
    shape: tuple[int, ...],
    batch: int,
    copies: int,
    device: str,
    steps: int,
    precision: str = "fp32",
    packed: bool = True,
) -> float:
    """Mean wall milliseconds of one training step of K packed copies of ``network`` (head
    ``bn``, ``batch`` images each), or with ``packed`` False of one plain model (K = 1)."""
    if not packed and copies != 1:
        raise ValueError("step_ms: an unpacked step is one model's")
    models = [
        build_model(network, "bn", shape, 10, lambda n, k=k: zlib.crc32(f"{k}/{n}".encode()))
        for k in range(copies)
    ]
    model = (pack_models(models) if packed else models[0]).to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    x = torch.randn(batch, copies, *shape, device=device)
    x = pack_inputs(x) if packed else x[:, 0]
    y = torch.randint(0, 10, (batch * copies,), device=device)

    def step():
        with loop.autocast(precision, device):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(batch * copies, 10), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    seconds, _ = timed(device, lambda: [step() for _ in range(steps)])
    return 1e3 * seconds / steps


def networks_table(specs: list[str], ks: list[int], args: argparse.Namespace) -> None:
    """The packed-vs-unpacked step table of ``--networks`` (see the module docstring)."""
    precisions = args.precisions.split(",")
    how = "non-deterministic" if args.fast_nondeterministic else "deterministic"
    print(f"ms per training step, packed vs unpacked ({how} kernels, {args.steps} steps after 5)")
    print(
        f"{'network':<16} {'input':>8} {'batch':>5} {'precision':>9} {'unpacked':>9} {'K':>4} "
        f"{'packed':>9} {'per copy':>9} {'speed-up':>9}"
    )
    setup = _torch_setup(not args.fast_nondeterministic, torch.get_num_threads(), args.device)
    with setup:
        for spec in specs:
            network, shape, batch = spec.split(":")
            size, batch = parse_shape(shape), int(batch)
            for precision in precisions:
                alone = step_ms(network, size, batch, 1, args.device, args.steps, precision, False)
                for copies in ks:
                    ms = step_ms(network, size, batch, copies, args.device, args.steps, precision)
                    print(
                        f"{network:<16} {shape:>8} {batch:>5} {precision:>9} {alone:>9.2f} "
                        f"{copies:>4} {ms:>9.2f} {ms / copies:>9.3f} {copies * alone / ms:>8.1f}x",
                        flush=True,
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ks", default="1,4,16,32,64", help="pack sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--singles", type=int, default=3, help="trials run one at a time")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per K (steps table)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--quick", action="store_true", help="2 singles, 20 timed steps")
    parser.add_argument(
        "--networks", nargs="+", metavar="NET:INPUT:BATCH",
        help="only the packed-vs-unpacked step table of these, e.g. resnet20:3x32x32:128",
    )  # fmt: skip
    parser.add_argument("--precisions", default="fp32", help="with --networks: fp32,bf16")
    parser.add_argument("--fast-nondeterministic", action="store_true", help="with --networks")
    args = parser.parse_args()
    if args.quick:
        args.singles, args.steps = 2, 20
    ks = [int(k) for k in args.ks.split(",")]
    device = args.device
    torch.set_num_threads(args.threads)

    print(describe_machine(args.threads))
    if args.networks:
        print(f"device {device}\n")
        networks_table(args.networks, ks, args)
        return
    print(
        f"device {device}; quick CNN trial (cnn, head bn), synthetic 3x16x16, 300/class at "
        f"ratio 10, batch 64, SGD, {args.epochs} epochs\n"
    )
    run_trial(quick_trial(10_000, 1), device)  # warm-up: pool cache, kernels, cuDNN
    run_pack([quick_trial(10_000 + k, 1) for k in range(2)], device)

    def one_at_a_time() -> tuple[list[float], list]:
        seconds, results = [], []
        for seed in range(args.singles):
            trial = quick_trial(seed, args.epochs)
            elapsed, result = timed(device, lambda trial=trial: run_trial(trial, device))
            seconds.append(elapsed)
            results.append(result)
        return seconds, results

    before, single_results = one_at_a_time()
    print(f"one at a time: {statistics.median(before):.3f} s per trial (median of {args.singles})")
    packs, clocks = {}, {}
    for copies in ks:
        trials = [quick_trial(seed, args.epochs) for seed in range(copies)]
        clocks[copies] = PhaseClock(lambda: sync(device))
        with phases(clocks[copies]):
            packs[copies] = timed(device, lambda trials=trials: run_pack(trials, device))
    # Measured again after the packs, so that a change of load (a shared CPU) shows.
    after, _ = one_at_a_time()
    one_s = statistics.median(before + after)
    print(
        f"one at a time, after the packs: {statistics.median(after):.3f} s; "
        f"baseline: {one_s:.3f} s per trial (median of all {2 * args.singles})\n"
    )

    print(f"{'K':>4} {'pack s':>8} {'s/trial':>8} {'trials/min':>11} {'speedup':>8}")
    for copies, (seconds, _) in packs.items():
        per_trial = seconds / copies
        print(
            f"{copies:>4} {seconds:>8.2f} {per_trial:>8.3f} {60 / per_trial:>11.1f} "
            f"{one_s / per_trial:>7.1f}x"
        )

    print("\nwall ms per trial in each phase of the pack (phase time / K)")
    print(f"{'K':>4}" + "".join(f"{phase:>10}" for phase in ORDER))
    for copies, clock in clocks.items():
        cells = "".join(f"{1e3 * clock.seconds[phase] / copies:>10.2f}" for phase in ORDER)
        print(f"{copies:>4}{cells}")

    print("\naten operators in a one-epoch pack: per training step, per phase; host reads")
    print(f"{'K':>4}{'per step':>9}" + "".join(f"{phase:>10}" for phase in ORDER) + f"{'reads':>6}")
    for copies in ks:
        trials = [quick_trial(seed, 1) for seed in range(copies)]
        clock, results = measure(trials, "ops", device)
        per_step = clock.count("train") / results[0].metrics["steps_run"]
        reads = clock.reads["train"] + clock.reads["evaluate"]
        cells = "".join(f"{clock.count(phase):>10}" for phase in ORDER)
        print(f"{copies:>4}{per_step:>9.1f}{cells}{reads:>6}", flush=True)

    print(f"\nms per training step, packed model alone ({args.steps} steps after 5 warm-up)")
    print(f"{'K':>4} {'ms/step':>8} {'ms/step/copy':>13}")
    for copies in ks:
        ms = step_ms("cnn", (3, 16, 16), 64, copies, device, args.steps)
        print(f"{copies:>4} {ms:>8.2f} {ms / copies:>13.3f}", flush=True)

    largest = max(ks)
    shared = min(largest, args.singles)
    pairs = list(zip(packs[largest][1][:shared], single_results[:shared], strict=True))
    loss = max(abs(p.metrics["train_loss"] - s.metrics["train_loss"]) for p, s in pairs)
    acc = max(abs(p.metrics["balanced_acc"] - s.metrics["balanced_acc"]) for p, s in pairs)
    statuses = all(p.status == s.status for p, s in pairs)
    print(
        f"\nagreement, seeds 0-{shared - 1} packed (K={largest}) vs alone: max |d train_loss| "
        f"{loss:.2g}, max |d balanced_acc| {acc:.2g}, same statuses: {statuses}"
    )


if __name__ == "__main__":
    main()
