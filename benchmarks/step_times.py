"""Measure ms per training step on this machine and add the rows to the table ``bnstudy plan``
estimates from (``src/bnstudy/execution/step_times.csv``).

    PYTHONPATH=src python benchmarks/step_times.py                      # the small networks
    PYTHONPATH=src python benchmarks/step_times.py --only resnet32:3x32x32:128 --device cuda \
        --packs 1,4,16 --device-name H100

Each measurement is ``--steps`` SGD steps (after ``--warmup`` untimed ones) of ``network`` with
head ``bn`` on random inputs, deterministic kernels as ``bnstudy run`` uses them, at K packed
copies (``--packs``; K=1 is one unpacked network). Rows of the same device, network, input,
batch, pack and precision are replaced; the others are kept. ``--dry-run`` prints the rows only.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from bnstudy.execution.cost import COLUMNS, TABLE, parse_shape
from bnstudy.execution.devices import cpu_model
from bnstudy.execution.worker import _torch_setup
from bnstudy.models import build_model
from bnstudy.models.packed import pack_inputs, pack_models

#: The small networks at their protocols' inputs and batch sizes (network:input:batch).
DEFAULT = [
    "mlp:3x16x16:64",  # quick, heads, claim4, claim5 (synthetic)
    "cnn:3x16x16:64",
    "cnn_flatten:3x16x16:16",  # claim3 (batch 8 and 16)
    "mlp:1x8x8:32",  # digits
    "cnn:1x8x8:32",
    "cnn1d:1x40:64",  # mnist1d, claim4
    "mlp:1x40:64",
]


def step_ms(network: str, shape: tuple[int, ...], batch: int, copies: int, args) -> float:
    """Mean wall milliseconds of one SGD step of ``copies`` packed copies (1: unpacked)."""
    models = [
        build_model(network, "bn", shape, 10, lambda n, k=k: zlib.crc32(f"{k}/{n}".encode()))
        for k in range(copies)
    ]
    model = (models[0] if copies == 1 else pack_models(models)).to(args.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, copies, *shape, device=args.device)
    x = x[:, 0] if copies == 1 else pack_inputs(x)
    y = torch.randint(0, 10, (batch * copies,), device=args.device)

    def step() -> None:
        loss = F.cross_entropy(model(x).reshape(batch * copies, 10), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return (time.perf_counter() - start) / args.steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NET:INPUT:BATCH", default=DEFAULT)
    parser.add_argument("--packs", default="1", help="pack sizes K, e.g. 1,4,16 (default 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--device-name", help="the table's device column (default: detected)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()

    gpu = args.device.startswith("cuda")
    name = args.device_name or (
        torch.cuda.get_device_name(args.device)
        if gpu
        else f"{cpu_model()} ({os.cpu_count()} cores, {args.threads} threads)"
    )
    how = f"benchmarks/step_times.py, torch {torch.__version__}, deterministic"
    rows = []
    with _torch_setup(deterministic=True, threads=args.threads, device=args.device):
        for spec in args.only:
            network, shape, batch = spec.split(":")
            for k in (int(k) for k in args.packs.split(",")):
                ms = step_ms(network, parse_shape(shape), int(batch), k, args)
                rows.append(
                    [name, "gpu" if gpu else "cpu", network, shape, batch, k, f"{ms:.2f}",
                     "fp32", f"{how}, {time.strftime('%Y-%m-%d')}"]
                )  # fmt: skip
                print(",".join(map(str, rows[-1])), flush=True)
    if args.dry_run:
        return
    key = lambda r: (r[0], r[2], r[3], str(r[4]), str(r[5]), r[7])  # noqa: E731
    new = {key(r) for r in rows}
    text = args.table.read_text()
    comments = [line for line in text.splitlines(keepends=True) if line.startswith("#")]
    body = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    kept = [r for r in list(csv.reader(body))[1:] if r and key(r) not in new]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(kept + rows)
    args.table.write_text("".join(comments) + out.getvalue())
    print(f"{len(rows)} rows written to {args.table}")


if __name__ == "__main__":
    main()
