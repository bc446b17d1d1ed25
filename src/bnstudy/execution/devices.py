"""Devices a run trains on, and the slots its trials lease on them.

A run has a list of devices (``cpu``, or ``cuda:0,cuda:1,...``; ``auto`` is every GPU torch
sees, honouring ``CUDA_VISIBLE_DEVICES``, else the CPU) and ``per_device`` slots on each. A
trial (or a pack of seeds) holds one slot while it trains, so never more than ``per_device``
trials share a device.

**Why lock files.** A slot is a file in a directory the run creates on this machine; a worker
leases it by taking an exclusive ``flock`` on it, and returns it by closing the file. The
kernel drops the lock when the process holding it dies however it dies (SIGKILL, the OOM
killer, a segfault), so a lease can never outlive its worker, and no parent-side bookkeeping
has to notice the death. Workers choose their own slot, so the parent can keep using joblib
unchanged (loky, or Dask workers on this machine): it only needs at most as many workers as
slots, and every worker finds a free one. Slots are tried lowest rank first across devices
(rank 0 of every device, then rank 1, ...), which spreads trials evenly over the devices.

The holder writes its trial ids into the slot file, so the parent can show what is in flight
on each device without disturbing anyone's lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no leases (every trial gets a slot at once)
    fcntl = None

#: ``--devices auto``: every visible GPU, else the CPU.
AUTO = "auto"

#: How often a worker that found every slot taken looks again.
LEASE_POLL_S = 0.02


#: What a loaded GPU driver leaves on Linux: NVIDIA's (CUDA) module and device files, AMD's
#: (ROCm, also ``torch.cuda``), and WSL2's GPU bridge. /dev/nvidiactl alone is not enough: on
#: a headless machine it may appear only when CUDA first starts.
GPU_DRIVER_PATHS = (
    "/proc/driver/nvidia/version",
    "/sys/module/nvidia",
    "/dev/nvidiactl",
    "/sys/module/amdgpu",
    "/dev/kfd",
    "/dev/dxg",
)


def gpu_driver_absent() -> bool:
    """Whether this is Linux with no GPU driver loaded: then no GPU, known without torch."""
    return sys.platform == "linux" and not any(os.path.exists(p) for p in GPU_DRIVER_PATHS)


def visible_gpus() -> list[str]:
    """``["cuda:0", ...]`` for every GPU torch sees (``CUDA_VISIBLE_DEVICES`` applies)."""
    if gpu_driver_absent():
        return []  # importing torch to hear "none" would cost about a second
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def parse_devices(spec: str | Sequence[str]) -> list[str]:
    """``"auto"``, ``"cpu"`` or ``"cuda:0,cuda:1"`` (or a list) -> the device strings.

    ``auto`` is resolved here (every visible GPU, else ``["cpu"]``). Raises ValueError for an
    empty list, ``auto`` mixed with devices, or a device named twice.
    """
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError("--devices: no device given (expected auto, cpu or cuda:0,cuda:1,...)")
    if AUTO in parts:
        if len(parts) > 1:
            raise ValueError(f"--devices: 'auto' stands alone, got {','.join(parts)!r}")
        return visible_gpus() or ["cpu"]
    twice = sorted({p for p in parts if parts.count(p) > 1})
    if twice:
        raise ValueError(f"--devices: {', '.join(twice)} named more than once")
    return parts


def check_device(device: str) -> None:
    """Raise ValueError unless torch can place tensors on ``device`` in this process.

    Checked once up front: a typo or a missing GPU is a usage error, not a failed row for
    every trial of the run. A CUDA device is checked against the device count only: touching
    it would create a CUDA context (hundreds of MB) that the parent would hold all run long.
    """
    if device == "cpu":
        return  # always usable; no need to import torch to know it
    import torch

    try:
        parsed = torch.device(device)
        if parsed.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise RuntimeError("no CUDA GPU is visible to torch")
            if parsed.index is not None and parsed.index >= count:
                raise RuntimeError(f"torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        elif parsed.type != "cpu":
            torch.empty(0, device=parsed)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad device
        raise ValueError(f"device {device!r} is not usable here: {first_sentence(exc)}") from None


def first_sentence(exc: BaseException, limit: int = 160) -> str:
    """The gist of an exception message: torch's can run to a thousand characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def cpu_model() -> str:
    """This machine's CPU model name (CPU numbers differ between models); where /proc/cpuinfo
    does not say, ``platform.processor()`` (which may be "")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def is_cpu(device: str) -> bool:
    return device.split(":")[0] == "cpu"


def cpu_threads(cores: int, cpu_workers: int) -> int:
    """Torch threads per CPU trial when ``cpu_workers`` trials share ``cores`` cores."""
    return max(1, cores // max(1, cpu_workers))


@dataclass(frozen=True)
class SlotPool:
    """``per_device`` slots on each of ``devices``: lock files under ``root`` (this machine)."""

    root: Path
    devices: tuple[str, ...]
    per_device: int

    @classmethod
    @contextlib.contextmanager
    def create(cls, devices: Sequence[str], per_device: int) -> Iterator[SlotPool]:
        """A fresh pool for one run; its directory is removed when the run ends."""
        if per_device < 1:
            raise ValueError(f"--per-device must be at least 1, got {per_device}")
        root = Path(tempfile.mkdtemp(prefix="bnstudy-slots-"))
        pool = cls(root, tuple(devices), per_device)
        try:
            for path in pool._slot_paths():
                path.touch()
            yield pool
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def size(self) -> int:
        return len(self.devices) * self.per_device

    def _slot_paths(self) -> list[Path]:
        """Every slot, lowest rank first across devices (the order workers try them in)."""
        return [
            self.root / f"{rank:03d}-{index:03d}.slot"
            for rank in range(self.per_device)
            for index in range(len(self.devices))
        ]

    def _device_of(self, path: Path) -> str:
        return self.devices[int(path.stem.split("-")[1])]

    @contextlib.contextmanager
    def lease(self, holder: str = "") -> Iterator[str]:
        """Hold a free slot (waiting for one if need be); yields its device.

        ``holder`` (the trial ids) is written into the slot for :meth:`in_flight`. The slot
        is returned when the block ends, whether it ends normally or with an exception, and
        by the kernel if the process dies inside it.
        """
        if fcntl is None:  # pragma: no cover - no flock: every trial on the first device
            yield self.devices[0]
            return
        while True:
            for path in self._slot_paths():
                fd = os.open(path, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, holder.encode() or b"?", 0)
                    yield self._device_of(path)
                finally:
                    os.ftruncate(fd, 0)
                    os.close(fd)  # closing the file drops the lock
                return
            time.sleep(LEASE_POLL_S)

    def holders(self, clear: bool = False) -> dict[str, str]:
        """The names written in the slots now (holder -> device), read without locking.

        With ``clear``, each name is erased as it is read. A holder that dies never erases
        its own name, so after a worker died, the names left (cleared, so that the next death
        is not confused with this one) are the tasks that were running then.
        """
        held: dict[str, str] = {}
        for path in self._slot_paths():
            with contextlib.suppress(OSError):  # the run ended and removed the pool
                if name := path.read_text():
                    held[name] = self._device_of(path)
                if clear:
                    os.truncate(path, 0)
        return held

    def in_flight(self) -> dict[str, int]:
        """Slots held now, per device (read from the slot files; for display only)."""
        held = dict.fromkeys(self.devices, 0)
        for path in self._slot_paths():
            with contextlib.suppress(OSError):  # the run ended and removed the pool
                if path.stat().st_size > 0:
                    held[self._device_of(path)] += 1
        return held

    def free(self) -> int:
        """Slots nobody holds now (probes every lock; for tests and diagnostics)."""
        if fcntl is None:  # pragma: no cover
            return self.size
        count = 0
        for path in self._slot_paths():
            with open(path, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                fcntl.flock(fh, fcntl.LOCK_UN)
                count += 1
        return count
