"""Benchmark: aten operators, host reads, Python calls and time per phase of ``run_pack``, vs K.

    python benchmarks/count_pack_ops.py [--ks 1,4,32] [--epochs 1] [--top 6] [--threads 1]

A CPU proxy for the host cost of a pack on a GPU. Small trials are launch-bound there: every
aten operator costs some microseconds of host time whatever its size, each read of a device
value (``item()``, ``tolist()``) stalls the host until the device catches up, and Python work
between operators (per-copy loops, NumPy metrics) adds to it. Those are what a pack's wall
time grows with beyond the fused training step, and they can be counted on any machine.
Phases (set by wrapping the functions ``run_pack`` calls, so ``run_pack`` itself is not
touched):

- **data**: ``build_dataset`` for each copy; **models**: ``build_model`` for each copy;
  **pack**: ``pack_models``; **set-up**: the rest before training (checks, moving the data);
  **optimizer**: ``optimisation``;
- **train**: the training loop (also reported per step);
- **evaluate**: ``_evaluate_pack`` (forward passes and metrics); **results**: the rest.

Three runs per K of the quick study's CNN trial (``quick_trial``, ``--epochs``
epochs): one plain, timed per phase (``ms``); one under a ``TorchDispatchMode`` that counts
the operators (``ops``) and scalar reads, and times the operators, giving the host time outside
them (``py ms``: the run's wall time less the time inside the operators and the mode's own cost
per operator, calibrated on a loop of tiny operators); one under ``sys.setprofile`` that counts
Python calls (``py calls``) and ``tolist()`` reads. ``reads`` sums both kinds; in the data,
models and pack phases they read CPU tensors, which is no sync on a GPU either. The process
runs with glibc ``malloc`` keeping freed memory (:data:`MALLOC_ENV`), as a GPU's caching
allocator does. Deterministic: ``ops``, ``reads``, ``py calls``; measured: ``ms``, ``py ms``.

What a GPU run needs is an operator count per training step flat in K, set-up and evaluation
counts that grow little with K, and no reads but the curve points' and evaluation's one. The
CPU ``ms`` grow with K wherever the work itself does (convolutions, which a GPU runs in
parallel), so read them with the counts.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bnstudy.spec.trial import Trial
from bnstudy.training import packing
from bnstudy.training.train import TrialResult


def quick_trial(seed: int, epochs: int) -> Trial:
    """The quick study's CNN trial (``bn`` head, ratio 10), shared with ``bench_pack``."""
    return Trial(
        seed=seed, architecture="cnn", head="bn", dataset="synthetic", imbalance_ratio=10.0,
        train_per_class=300, epochs=epochs, batch_size=64, lr=0.05, optimizer="sgd",
        weight_decay=5e-4,
    )  # fmt: skip


#: (function in ``bnstudy.training.packing`` that ``run_pack`` calls, phase while it runs,
#: phase after)
PHASES = (
    ("build_dataset", "data", "set-up"),
    ("build_model", "models", "set-up"),
    ("pack_models", "pack", "set-up"),
    ("optimisation", "optimizer", "train"),
    ("_evaluate_pack", "evaluate", "results"),
)
ORDER = ("data", "models", "pack", "set-up", "optimizer", "train", "evaluate", "results")


class PhaseClock:
    """The current phase, and per phase: wall seconds, aten operators (when counted) and
    seconds inside them. ``sync`` runs before each reading (a device synchronisation, so that
    queued device work counts in the phase that queued it)."""

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self.sync = sync
        self.phase, self.since = "set-up", time.perf_counter()
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.inside: dict[str, float] = collections.defaultdict(float)
        self.ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.reads: collections.Counter = collections.Counter()  # see is_read, CountCalls

    def enter(self, phase: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.seconds[self.phase] += now - self.since
        self.phase, self.since = phase, now

    def count(self, phase: str) -> int:
        return sum(self.ops[phase].values())


class CountOps(TorchDispatchMode):
    """Counts and times every aten operator, in the clock's current phase."""

    def __init__(self, clock: PhaseClock) -> None:
        super().__init__()
        self.clock = clock

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        self.clock.inside[self.clock.phase] += time.perf_counter() - start
        self.clock.ops[self.clock.phase][str(func.overloadpacket)] += 1
        if is_read(func, args, result):
            self.clock.reads[self.clock.phase] += 1
        return result


def is_read(func, args, result) -> bool:
    """Whether an operator brings data to the host: a scalar read (``item()``, ``float()``),
    or a copy from another device to the CPU (``tolist()``, ``cpu()`` of a GPU tensor)."""
    if func.overloadpacket is torch.ops.aten._local_scalar_dense:
        return True
    sources = [a for a in args if isinstance(a, torch.Tensor)]
    return isinstance(result, torch.Tensor) and result.is_cpu and any(not t.is_cpu for t in sources)


@contextlib.contextmanager
def phases(clock: PhaseClock) -> Iterator[None]:
    """Wrap the functions of :data:`PHASES` in ``bnstudy.training.packing`` to switch ``clock``."""

    def wrap(fn: Callable, during: str, after: str) -> Callable:
        def wrapped(*args, **kwargs):
            clock.enter(during)
            try:
                return fn(*args, **kwargs)
            finally:
                clock.enter(after)

        return wrapped

    saved = {name: getattr(packing, name) for name, _, _ in PHASES}
    try:
        for name, during, after in PHASES:
            setattr(packing, name, wrap(saved[name], during, after))
        yield
    finally:
        for name, fn in saved.items():
            setattr(packing, name, fn)
        clock.enter("done")


class CountCalls:
    """Counts Python function calls (``sys.setprofile``), by ``file:function``, in the clock's
    current phase: per-copy Python loops show as counts that grow with K. Counts
    ``tolist()`` calls as reads too: of a CPU tensor it dispatches no copy. (Not ``cpu()``,
    which on a CPU cannot be told from the no-op it is on the host copy of a GPU output.)"""

    def __init__(self, clock: PhaseClock) -> None:
        self.clock = clock

    def __call__(self, frame, event, arg) -> None:
        if event == "call":
            code = frame.f_code
            where = f"{os.path.basename(code.co_filename)}:{code.co_name}"
            self.clock.calls[self.clock.phase][where] += 1
        elif event == "c_call" and getattr(arg, "__name__", None) == "tolist":
            self.clock.reads[self.clock.phase] += 1

    def __enter__(self) -> CountCalls:
        sys.setprofile(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)


def measure(
    trials: Sequence[Trial], count: str = "", device: str = "cpu"
) -> tuple[PhaseClock, list[TrialResult]]:
    """``run_pack(trials)``, timed per phase (the device synchronised at each switch);
    ``count``: "ops" (aten operators and the time inside them) or "calls" (Python calls) per
    phase as well."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    clock = PhaseClock(sync)
    counter = {"ops": CountOps, "calls": CountCalls}.get(count)
    with phases(clock), counter(clock) if counter else contextlib.nullcontext():
        results = packing.run_pack(trials, device)
    return clock, results


def mode_cost_s(repeats: int = 20_000) -> float:
    """Seconds that counting adds to one operator, outside the operator itself."""
    x = torch.zeros(1)
    clock = PhaseClock()
    with CountOps(clock):
        start = time.perf_counter()
        for _ in range(repeats):
            x.add_(1)
        counted = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        x.add_(1)
    plain = time.perf_counter() - start
    return (counted - plain) / repeats


def host_ms(clock: PhaseClock, phase: str, cost_s: float) -> float:
    """Wall ms of an operator-counted phase outside its operators and the counting itself."""
    return 1e3 * (clock.seconds[phase] - clock.inside[phase] - clock.count(phase) * cost_s)


#: glibc ``malloc`` settings that keep freed memory for reuse instead of unmapping it (as a
#: GPU's caching allocator does): otherwise the CPU spends most of a large pack's forward passes
#: mapping and unmapping activations (measured: 6 s -> 2 s for K=32's evaluation forward), and
#: that time, outside the operators, would pass for host overhead.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def grown(small: collections.Counter, large: collections.Counter, top: int) -> str:
    """The ``top`` keys whose counts grow most from ``small`` to ``large``, with the growth."""
    growth = sorted(((large[key] - small[key], key) for key in large), reverse=True)
    return ", ".join(f"{key.removeprefix('aten.')} +{n}" for n, key in growth[:top] if n > 0)


def main() -> None:
    if any(os.environ.get(name) != value for name, value in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="1,4,32", help="pack sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--top", type=int, default=6, help="operators/functions listed per phase")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]

    packing.run_pack([quick_trial(10_000, 1)])  # warm-up: the dataset pool, lazy imports
    cost_s = mode_cost_s()
    runs = {}
    for k in ks:
        trials = [quick_trial(seed, args.epochs) for seed in range(k)]
        timed, results = measure(trials)
        runs[k] = {
            "": timed,
            "ops": measure(trials, "ops")[0],
            "calls": measure(trials, "calls")[0],
        }
    steps = int(results[0].metrics["steps_run"])

    print(
        f"run_pack of the quick CNN, {args.epochs} epoch(s) = {steps} steps, CPU, "
        f"{args.threads} thread(s). Per phase: aten operators, Python calls, wall ms, and host "
        f"ms outside the operators (counting's {1e6 * cost_s:.1f} us an operator taken out; "
        "on a CPU this includes freeing large tensors, so it grows with tensor sizes too). "
        "reads: tolist() and scalar reads (item(), float(), ...; not cpu()); in the train "
        "and evaluate phases each is a host sync on a GPU\n"
    )
    print(f"{'':<10}" + "".join(f"{f'K={k}':>42}" for k in ks))
    print(
        f"{'phase':<10}" + f"{'ops':>8}{'reads':>6}{'py calls':>10}{'ms':>9}{'py ms':>9}" * len(ks)
    )

    def row(name: str, phases: Sequence[str], per: int = 1) -> str:
        cells = f"{name:<10}"
        for run in runs.values():
            ops = sum(run["ops"].count(p) for p in phases) / per
            reads = sum(run["calls"].reads[p] + run["ops"].reads[p] for p in phases) / per
            calls = sum(sum(run["calls"].calls[p].values()) for p in phases) / per
            ms = 1e3 * sum(run[""].seconds[p] for p in phases) / per
            py_ms = sum(host_ms(run["ops"], p, cost_s) for p in phases) / per
            digits = 1 if per > 1 else 0
            cells += f"{ops:>8.{digits}f}{reads:>6.{digits}f}{calls:>10.{digits}f}"
            cells += f"{ms:>9.1f}{py_ms:>9.1f}"
        return cells

    for phase in ORDER:
        print(row(phase, [phase]))
    print(row("train/step", ["train"], steps))
    print(row("total", ORDER))

    small, large = ks[0], ks[-1]
    print(f"\ngrowth from K={small} to K={large} by phase: operators | Python functions")
    for phase in ORDER:
        ops = grown(runs[small]["ops"].ops[phase], runs[large]["ops"].ops[phase], args.top)
        calls = grown(runs[small]["calls"].calls[phase], runs[large]["calls"].calls[phase], 3)
        if ops or calls:
            print(f"  {phase}: {ops or '-'} | {calls or '-'}")


if __name__ == "__main__":
    main()
