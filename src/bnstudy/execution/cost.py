"""What a protocol costs before it runs: device time per device kind, from measured ms/step.

``step_times.csv`` next to this module holds measured milliseconds per training step, one row
per device, network, input shape, batch size and pack size K (the step of the whole packed
model of K copies), with where each number came from; ``benchmarks/step_times.py`` measures
and adds the rows of the machine it runs on. No torch: ``bnstudy plan`` prints the estimate.

A trial costs its steps (``steps``, else ``epochs`` passes of ``n // batch_size`` steps, ``n``
its training-set size from the imbalance profile, or the whole pool's at ``train_per_class:
all``, as ``training.loop.optimisation`` counts them) times the ms/step of the row with the
same network and input shape at the nearest batch size, scaled linearly in the batch. A
network or input shape the table lacks for a device is reported as such, never guessed.
Packed (GPU kinds): the trials are grouped as the runner packs them (``tasks.make_tasks`` at
``--pack auto``'s :data:`~bnstudy.execution.plan.AUTO_PACK`), each pack costing its steps
times the ms/step at its size K, interpolated linearly between measured K (beyond the largest
measured K: linearly in K). Only fp32 rows count (``bnstudy run``'s
precision). Pre-training stages and evaluation are not counted.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bnstudy.data import (
    DatasetError,
    dataset_spec,
    input_shape,
    num_classes,
    pool_class_counts,
    training_counts,
)
from bnstudy.execution.plan import AUTO_PACK
from bnstudy.execution.tasks import make_tasks
from bnstudy.spec.trial import ALL_TRAIN, Trial
from bnstudy.training.packable import packable

if TYPE_CHECKING:
    from bnstudy.spec.protocol import Protocol

#: The committed table of measured step times (package data).
TABLE = Path(__file__).with_name("step_times.csv")
#: The precision ``bnstudy run`` trains in; rows in another are kept for reference only.
PRECISION = "fp32"
COLUMNS = [
    "device",
    "kind",
    "network",
    "input",
    "batch",
    "pack",
    "ms_per_step",
    "precision",
    "source",
]


@dataclass(frozen=True)
class StepTime:
    """One measured row: ``ms`` per step of ``pack`` packed copies of ``network``."""

    device: str
    kind: str  # "gpu" or "cpu"
    network: str
    input: tuple[int, ...]
    batch: int
    pack: int
    ms: float
    precision: str
    source: str


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.lower().replace("×", "x").split("x"))


def read_table(path: str | Path = TABLE) -> list[StepTime]:
    """The rows of a step-time CSV (lines starting with ``#`` are comments)."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    return [
        StepTime(
            device=row["device"],
            kind=row["kind"],
            network=row["network"],
            input=parse_shape(row["input"]),
            batch=int(row["batch"]),
            pack=int(row["pack"]),
            ms=float(row["ms_per_step"]),
            precision=row["precision"],
            source=row["source"],
        )
        for row in csv.DictReader(lines)
    ]


def _dataset_facts(protocol: Protocol, name: str) -> tuple[tuple[int, ...], int]:
    """Input shape and class count; a dataset whose files are not there yet but whose shape
    is fixed (CIFAR, MNIST) is still known."""
    options = protocol.datasets.get(name)
    try:
        return tuple(input_shape(name, options)), num_classes(name, options)
    except DatasetError:
        spec = dataset_spec(name)
        if spec.input_shape is None or spec.num_classes is None:
            raise
        return tuple(spec.input_shape), spec.num_classes


def trial_steps(trial: Trial, classes: int, pool_counts: Sequence[int] | None = None) -> int:
    """Optimiser steps of ``trial`` on a dataset of ``classes`` classes. ``pool_counts`` (its
    training pool's images per class) is needed by a trial of ``train_per_class: all`` whose
    length is in epochs only: it trains on the whole pool."""
    if trial.steps:
        return trial.steps
    if trial.train_per_class == ALL_TRAIN and pool_counts is None:
        raise ValueError("trial_steps: train_per_class all in epochs needs the pool's counts")
    # A profile reads the number of classes only: without the pool, a stand-in of that length.
    pool = list(pool_counts) if pool_counts is not None else [0] * classes
    counts = training_counts(
        trial.imbalance_profile,
        trial.train_per_class,
        pool,
        trial.imbalance_ratio,
        trial.step_fraction,
    )
    return sum(counts) // trial.batch_size * trial.epochs


def _at_batch(rows: list[StepTime], batch: int) -> float:
    """ms/step at ``batch`` from the row of the nearest measured batch, scaled linearly."""
    near = min(rows, key=lambda r: (abs(r.batch - batch), -r.batch))
    return near.ms * batch / near.batch


def step_ms(
    rows: Sequence[StepTime], network: str, shape: tuple[int, ...], batch: int, pack: int = 1
) -> float | None:
    """ms per step of ``pack`` packed copies (1: unpacked) from ``rows`` of one device, or
    None where nothing measured applies (the network or input shape is missing; unpacked
    without a K=1 row; packed without a K>1 row)."""
    same = [
        r
        for r in rows
        if r.network == network and r.input == tuple(shape) and r.precision == PRECISION
    ]
    by_k: dict[int, list[StepTime]] = {}
    for r in same:
        by_k.setdefault(r.pack, []).append(r)
    if pack == 1:
        return _at_batch(by_k[1], batch) if 1 in by_k else None
    if not any(k > 1 for k in by_k):
        return None
    ks = sorted(by_k)
    ms = {k: _at_batch(by_k[k], batch) for k in ks}
    if pack in ms:
        return ms[pack]
    if pack > ks[-1]:
        return ms[ks[-1]] * pack / ks[-1]
    if pack < ks[0]:
        return ms[ks[0]]  # an upper bound: fewer copies are not slower
    hi = next(k for k in ks if k > pack)
    lo = max(k for k in ks if k < pack)
    return ms[lo] + (ms[hi] - ms[lo]) * (pack - lo) / (hi - lo)


@dataclass
class DeviceEstimate:
    """The estimate for one device of the table: seconds over the trials it has numbers for,
    and the trials (per network) it has none for."""

    device: str
    kind: str
    trials: int
    unpacked_s: float = 0.0
    missing: Counter = field(default_factory=Counter)
    pack: int = 0  # 0: no packed numbers for this device
    packed_s: float = 0.0
    packed_missing: Counter = field(default_factory=Counter)

    def line(self, name: str) -> str:
        unit = "GPU" if self.kind == "gpu" else "CPU"
        if self.missing and sum(self.missing.values()) == self.trials:
            nets = ", ".join(sorted(self.missing))
            return f"{name}: {self.trials} trials, no measurement on {self.device} for {nets}"
        else:
            how = " unpacked" if self.pack else ""
            text = (
                f"{name}: {self.trials} trials, ≈ {duration(self.unpacked_s, unit)}{how}"
                f" on {self.device}"
            )
            if self.pack and sum(self.packed_missing.values()) < self.trials:
                text += f", ≈ {duration(self.packed_s, unit)} packed (K={self.pack})"
        notes = _missing("no measurement for", self.missing)
        if self.pack and self.packed_missing and self.packed_missing != self.missing:
            notes += _missing(f"no packed measurement (K={self.pack}) for", self.packed_missing)
        return text + "".join(notes)


def _missing(what: str, counts: Counter) -> list[str]:
    if not counts:
        return []
    listed = ", ".join(f"{net} ({n} trials)" for net, n in sorted(counts.items()))
    return [f"; {what} {listed}"]


def duration(seconds: float, unit: str = "GPU") -> str:
    """``11.6 GPU-h``, ``42 GPU-min``, ``30 GPU-s``: three significant digits at most."""
    for size, suffix in ((3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or size == 1:
            value = seconds / size
            digits = max(0, 2 - int(math.floor(math.log10(value)))) if value > 0 else 0
            return f"{value:.{min(digits, 1)}f} {unit}-{suffix}"
    raise AssertionError("unreachable")


def estimate(
    protocol: Protocol,
    trials: Sequence[Trial] | None = None,
    table: str | Path | Sequence[StepTime] = TABLE,
    pack: int = AUTO_PACK,
) -> list[DeviceEstimate]:
    """The protocol's device time on each device of ``table``, in the table's order."""
    trials = list(protocol.expand() if trials is None else trials)
    rows = list(table) if isinstance(table, Sequence) and not isinstance(table, str) else None
    rows = read_table(table) if rows is None else rows  # type: ignore[arg-type]
    facts = {name: _dataset_facts(protocol, name) for name in {t.dataset for t in trials}}
    whole = {t.dataset for t in trials if t.train_per_class == ALL_TRAIN and not t.steps}
    pools = {name: pool_class_counts(name, protocol.datasets.get(name)) for name in whole}
    steps = {t.trial_id: trial_steps(t, facts[t.dataset][1], pools.get(t.dataset)) for t in trials}
    devices: dict[str, list[StepTime]] = {}
    for r in rows:
        devices.setdefault(r.device, []).append(r)
    out = []
    for device, measured in devices.items():
        est = DeviceEstimate(device, measured[0].kind, len(trials))
        for t in trials:
            ms = step_ms(measured, t.architecture, facts[t.dataset][0], t.batch_size)
            if ms is None:
                est.missing[t.architecture] += 1
            else:
                est.unpacked_s += steps[t.trial_id] * ms / 1e3
        if est.kind == "gpu" and pack > 1 and any(r.pack > 1 for r in measured):
            est.pack = pack
            # What the runner cannot pack runs alone (tasks.choose_packing): plugin networks,
            # pre-trained bodies, head dropout, a plugin's optimiser, and every trial of a
            # protocol with its own trial function (it has no packed counterpart).
            own_trial = protocol.trial is not None
            tasks = make_tasks(trials, pack, (lambda t: False) if own_trial else packable)
            for task in tasks:
                t = task[0]
                ms = step_ms(measured, t.architecture, facts[t.dataset][0], t.batch_size, len(task))
                if ms is None:
                    est.packed_missing[t.architecture] += len(task)
                else:
                    est.packed_s += steps[t.trial_id] * ms / 1e3
        out.append(est)
    return out
