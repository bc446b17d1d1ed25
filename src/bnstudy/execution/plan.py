"""How a run executes: its backend, devices and slots, packing, determinism and limits.

:func:`plan_execution` resolves and checks the options a user gives (``--jobs``,
``--devices``, ``--per-device``, ``--pack``, ...) into an :class:`Execution`, in the parent,
before any trial: a typo or a missing GPU is a usage error, not a failed row for every trial.
The runner takes the Execution (:func:`bnstudy.execution.runner.run_protocol`), and records
its settings in the results' metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import joblib

from bnstudy.execution.backends import check_backend
from bnstudy.execution.devices import check_device, is_cpu, parse_devices
from bnstudy.execution.worker import WORKER_AUTO

#: Trials at once on one GPU by default: measured on an H100 with the quick study, 4 workers
#: took 14.6 s and 8 took 13.0 s against 27.5 s for one (small models are launch-bound).
DEFAULT_PER_GPU = 4
#: Seeds per pack with ``pack="auto"`` on CUDA (the quick CNN: 12x per model at K=16 on an
#: H100; a CIFAR ResNet-20 6.9x at K=16 on an H200).
AUTO_PACK = 16


def default_jobs() -> int:
    return max(1, joblib.cpu_count(only_physical_cores=False))


@dataclass(frozen=True)
class Execution:
    """How a run executes: backend, devices and slots, packing, determinism, limits."""

    backend: str  # loky | dask-local | dask
    devices: tuple[str, ...]  # with dask: what each worker uses (auto, cpu or cuda)
    per_device: int  # trials at once per device (with dask: the workers' GPU resource)
    workers: int  # tasks at once (-1 with dask: every thread of the cluster)
    pack: int  # seeds per packed model; 1: unpacked
    deterministic: bool = True
    timeout_s: float | None = None  # per trial
    threads: int | None = None  # torch threads per CPU trial; None: cores / CPU workers
    scheduler: str | None = None

    @property
    def local(self) -> bool:
        """Workers on this machine, leasing slots of a :class:`SlotPool`."""
        return self.backend != "dask"

    @property
    def slots(self) -> int:
        return len(self.devices) * self.per_device

    @property
    def cpu_workers(self) -> int:
        """Workers that may train on the CPU at once (they share its cores)."""
        on_cpu = sum(is_cpu(d) for d in self.devices) * self.per_device
        return max(1, min(on_cpu, self.workers if self.workers > 0 else on_cpu))

    def metadata(self) -> dict[str, Any]:
        return asdict(self) | {"devices": list(self.devices)}

    def describe(self) -> str:
        where = ", ".join(self.devices)
        if self.backend == "dask":
            return f"Dask cluster {self.scheduler}, each worker on {where}"
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        each = f", {self.per_device} per device" if len(self.devices) > 1 else ""
        mode = "deterministic" if self.deterministic else "nondeterministic (fast)"
        return f"{workers} on {where} ({self.backend}{each}), {mode}"


def plan_execution(
    jobs: int | None = None,
    devices: str | Sequence[str] = "auto",
    per_device: int | None = None,
    pack: int | str = "auto",
    deterministic: bool = True,
    timeout_s: float | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
) -> Execution:
    """Resolve and check a run's execution options; ValueError names the bad one.

    Devices are checked here, in the parent, before any trial (a typo or a missing GPU is a
    usage error, not a failed row for every trial). ``jobs`` caps the workers; without
    ``per_device`` it also sets it (``jobs`` spread over the devices). Defaults: on the CPU
    one slot per core, on a GPU :data:`DEFAULT_PER_GPU`.
    """
    backend = backend or ("dask" if scheduler else "loky")
    check_backend(backend, scheduler)
    for name, value in (("--jobs", jobs), ("--per-device", per_device), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    if backend == "dask":
        spec = devices if isinstance(devices, str) else ",".join(devices)
        if spec not in (WORKER_AUTO, "cpu", "cuda"):
            raise ValueError(
                f"--devices {spec}: with --backend dask each worker trains on its own device; "
                "give auto, cpu or cuda (start GPU workers with --resources GPU=K)"
            )
        found = (spec,)
        per_device = per_device or 1
        workers = jobs or -1
    else:
        found = tuple(parse_devices(devices))
        for device in found:
            check_device(device)
        if per_device is None:
            if jobs is not None:
                per_device = math.ceil(jobs / len(found))
            elif all(is_cpu(d) for d in found):
                per_device = default_jobs()
            else:
                per_device = DEFAULT_PER_GPU
        workers = min(jobs or len(found) * per_device, len(found) * per_device)
    on_gpu = any(d.startswith("cuda") for d in found)
    return Execution(
        backend=backend,
        devices=found,
        per_device=per_device,
        workers=workers,
        pack=_pack_size(pack, on_gpu),
        deterministic=deterministic,
        timeout_s=timeout_s,
        threads=threads,
        scheduler=scheduler,
    )


def _pack_size(pack: int | str, on_gpu: bool) -> int:
    """``"auto"`` -> AUTO_PACK on CUDA, else 1; ``"off"`` -> 1; ``"K"``/K -> K."""
    if pack == "auto":
        return AUTO_PACK if on_gpu else 1
    if pack == "off":
        return 1
    try:
        size = int(pack)
    except (TypeError, ValueError):
        raise ValueError(f"--pack: expected a number, auto or off, got {pack!r}") from None
    if size < 1:
        raise ValueError(f"--pack must be at least 1 (1 or off: no packing), got {size}")
    return size
