#!/usr/bin/env bash
# GPU check of the execution work (issues 8 and 19), on a bare machine that has torch.
#
#   bash benchmarks/gpu_check.sh            # from a checkout; prints a table at the end
#
# What it does (about 4-6 minutes on one H100; each command is capped at 5 minutes):
#   1. the quick study (protocols/quick.yaml, 60 trials) on --devices auto --per-device 4,
#      deterministic (the default), twice: the two results tables must hold identical numbers;
#   2. the same with --fast-nondeterministic: its time, and how far its numbers moved;
#   3. when the first runs packed seeds (bnstudy.training.packing present, --pack auto), once more with
#      --pack off: the time, and the packed-vs-unpacked difference;
#   4. faults on the first device: a trial that asks for far more memory than the GPU has
#      must give an 'oom' row, one that hangs a 'timeout' row (--timeout), and the trials after
#      them must train normally;
#   5. benchmarks/bench_pack.py --quick: packed vs one at a time per trial at K = 1..64, with
#      each phase's time and the operations per training step (bench_pack.txt);
#   6. the deep networks (bench_pack.py --networks; about 30-60 s): ms per training step of
#      resnet20 and vgg11_bn at CIFAR size (3x32x32, batch 128), unpacked and packed at
#      K = 1, 4, 16 (DEEP_KS), fp32 and bf16, and the speed-up per model (bench_deep.txt);
#   7. a table: seconds, trials per second, devices used, the most trials at once on a device
#      (from the rows' start and end times; never above --per-device), deterministic rows.
# It exits non-zero if the two deterministic runs differ, a device held more than
# --per-device trials at once, or the fault check did not give its rows.
#
# Needs python3 with torch, numpy, pandas, pyarrow, scipy, statsmodels, joblib, pyyaml,
# jinja2 and matplotlib; pydantic (and what it needs) is installed from ./.whl if missing
# there. bnstudy runs from src/ (PYTHONPATH), nothing is installed. Results, logs and the
# table go to $OUT if set (the device tool brings that folder back), else a temporary folder.
# For a dry run on a CPU: DEVICES=cpu PER_DEVICE=2 PROTOCOL=some_small.yaml bash ...
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
PROTOCOL=${PROTOCOL:-protocols/quick.yaml}
DEVICES=${DEVICES:-auto}
PER_DEVICE=${PER_DEVICE:-4}
LIMIT_S=${LIMIT_S:-300}
RESULTS=${OUT:-$(mktemp -d)}
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import pydantic" 2>/dev/null; then
    if [ -d .whl ]; then
        "$PY" -m pip install -q --no-index --find-links .whl \
            pydantic pydantic-core annotated-types typing-inspection typing-extensions || exit 2
    else
        echo "gpu_check: pydantic is missing and there is no .whl/ folder to install it from"
        exit 2
    fi
fi

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
"$PY" - <<'EOF'
import os, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"{torch.cuda.device_count()} GPU(s) visible, {os.cpu_count()} CPU cores, "
      f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
EOF

# run NAME [FLAGS...]: one `bnstudy run` into $RESULTS/NAME.parquet; its wall time in NAME.wall
run() {
    local name=$1
    shift
    local start end rc
    echo "== $name: bnstudy run $PROTOCOL --devices $DEVICES --per-device $PER_DEVICE $*"
    start=$(date +%s.%N)
    timeout "$LIMIT_S" "$PY" -m bnstudy run "$PROTOCOL" --devices "$DEVICES" \
        --per-device "$PER_DEVICE" --results "$RESULTS/$name.parquet" --no-report "$@" \
        >"$RESULTS/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    echo "$start $end" >"$RESULTS/$name.wall"
    grep -E "^(training on|note:|[0-9]+ trials:)" "$RESULTS/$name.log"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then  # 3: ran, but no estimate (a tiny protocol)
        echo "gpu_check: $name exited $rc; the end of its log:"
        tail -20 "$RESULTS/$name.log"
    fi
}

run det_a
run det_b
run fast --fast-nondeterministic
packed=$("$PY" -c "
import pandas as pd
t = pd.read_parquet('$RESULTS/det_a.parquet')
print(int((t['packed_with'] != '').any()))" 2>/dev/null || echo 0)
if [ "$packed" = "1" ]; then
    run unpacked --pack off
fi

echo "== faults on the first device: out of memory, time-out, and the run goes on"
timeout 240 "$PY" - "$RESULTS" "$DEVICES" <<'EOF' >"$RESULTS/faults.log" 2>&1
import sys, time
from collections import Counter

import torch

from bnstudy.execution import runner
from bnstudy import study
from bnstudy.execution.devices import parse_devices
from bnstudy.spec.loading import parse_protocol
from bnstudy.training.train import run_trial

out, devices = sys.argv[1], sys.argv[2]
device = parse_devices(devices)[0]
protocol = parse_protocol(
    """name: faults
seeds: 3
factors: {architecture: cnn, head: [plain, bn], dataset: synthetic, train_per_class: 100,
          epochs: 2}
control: plain
""", "faults.yaml", known=study.known_names())


def faulty(trial, device, data_options=None):
    if trial.seed == 0 and trial.head == "bn":  # far more than any device holds: 32 TiB
        torch.empty(1 << 45, dtype=torch.uint8, device=device)
    if trial.seed == 1 and trial.head == "bn":  # hangs (in short steps, as training does)
        while True:
            time.sleep(0.01)
    return run_trial(trial, device, data_options)


summary = runner.run_protocol(
    protocol, f"{out}/faults.parquet", devices=device, per_device=1, jobs=1, timeout_s=20,
    threads=1, trial_fn=faulty,
)
print("statuses:", dict(summary.statuses))
expected = Counter({"oom": 1, "timeout": 1})
got = Counter({k: v for k, v in summary.statuses.items() if k in expected})
measured = summary.statuses["ok"] + summary.statuses["collapsed"]
table = __import__("pandas").read_parquet(f"{out}/faults.parquet")
print(table[["seed", "head", "status", "device", "error"]].to_string(max_colwidth=70))
assert got == expected and measured == 4, summary.statuses
print("faults: ok")
EOF
cat "$RESULTS/faults.log" | tail -12

echo "== packing: per-trial speed-up packed vs one at a time, per-phase times (bench_pack --quick)"
if [ "$DEVICES" = "cpu" ] || ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    PACK_DEVICE=cpu
    PACK_FLAGS=(--device cpu --ks 1,4)  # a dry run: the flow, not the figures
elif [ "$DEVICES" = "auto" ]; then
    PACK_DEVICE=cuda
    PACK_FLAGS=(--device cuda)
else
    PACK_DEVICE=${DEVICES%%,*}  # the first device named
    PACK_FLAGS=(--device "$PACK_DEVICE")
fi
timeout 300 "$PY" benchmarks/bench_pack.py --quick "${PACK_FLAGS[@]}" >"$RESULTS/bench_pack.txt" 2>&1 \
    || echo "gpu_check: bench_pack exited $?"
cat "$RESULTS/bench_pack.txt"

echo "== deep networks: ms per training step, packed vs unpacked (bench_pack --networks)"
if [ "$PACK_DEVICE" = "cpu" ]; then  # a dry run: tiny inputs and batches, two steps
    DEEP_FLAGS=(--networks resnet20:3x8x8:4 vgg11_bn:3x8x8:4 --ks 1,2 --steps 2)
else
    DEEP_FLAGS=(--networks resnet20:3x32x32:128 vgg11_bn:3x32x32:128 --ks "${DEEP_KS:-1,4,16}"
                --steps 20 --precisions fp32,bf16)
fi
timeout 240 "$PY" benchmarks/bench_pack.py --device "$PACK_DEVICE" "${DEEP_FLAGS[@]}" \
    >"$RESULTS/bench_deep.txt" 2>&1 || echo "gpu_check: bench_pack --networks exited $?"
cat "$RESULTS/bench_deep.txt"

echo "== table"
"$PY" - "$RESULTS" "$PER_DEVICE" <<'EOF' | tee "$RESULTS/table.txt"
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS, RECORDED_METRICS

out, per_device = Path(sys.argv[1]), int(sys.argv[2])
numbers = [m for m in (*METRICS, *RECORDED_METRICS) if m != "wall_s"]
problems = []


def most_at_once(table: pd.DataFrame) -> dict[str, int]:
    """Most tasks (a trial, or a pack) at once per device, from the rows' times."""
    key = np.where(table["packed_with"] != "", table["packed_with"], table["trial_id"])
    spans = table.assign(task=key).groupby(["device", "task"]).agg(
        start=("started_at", "min"), end=("ended_at", "max"))
    most = {}
    for device, rows in spans.groupby(level="device"):
        marks = sorted([(s, 1) for s in rows["start"]] + [(e, -1) for e in rows["end"]],
                       key=lambda m: (m[0], m[1]))
        now = peak = 0
        for _, step in marks:
            now += step
            peak = max(peak, now)
        most[device] = peak
    return most


def max_diff(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, float]:
    a, b = a.set_index("trial_id").sort_index(), b.set_index("trial_id").sort_index()
    x, y = a[numbers].to_numpy(float), b.loc[a.index, numbers].to_numpy(float)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    curves_same = all(
        np.array_equal(np.asarray(p, float), np.asarray(q, float), equal_nan=True)
        for p, q in zip(a["curve_train_loss"], b.loc[a.index, "curve_train_loss"])
    )
    diff = np.nanmax(np.abs(x - y)) if (~same).any() else 0.0
    return int((~same).sum()) + (0 if curves_same else 1), float(diff)


runs = [n for n in ("det_a", "det_b", "fast", "unpacked") if (out / f"{n}.parquet").exists()]
tables = {n: pd.read_parquet(out / f"{n}.parquet") for n in runs}
print(f"{'run':<9} {'trials':>6} {'wall s':>7} {'run s':>7} {'trials/s':>8} {'packed':>6} "
      f"{'det rows':>8}  {'most at once per device':<28} {'vs det_a: values differ, max|d|'}")
for name in runs:
    t = tables[name]
    start, end = map(float, (out / f"{name}.wall").read_text().split())
    log = (out / f"{name}.log").read_text()
    run_s = float(log.split(" in ")[-1].split(" s")[0]) if " run (" in log else float("nan")
    most = most_at_once(t)
    if max(most.values(), default=0) > per_device:
        problems.append(f"{name}: {most} exceeds --per-device {per_device}")
    packed = int((t["packed_with"] != "").sum())
    differ, diff = max_diff(tables["det_a"], t) if name != "det_a" else (0, 0.0)
    shown = ", ".join(f"{d} {n}" for d, n in most.items())
    print(f"{name:<9} {len(t):>6} {end - start:>7.1f} {run_s:>7.1f} {len(t) / run_s:>8.2f} "
          f"{packed:>6} {int(t['deterministic'].sum()):>8}  {shown:<28} {differ}, {diff:.3g}")
if "det_b" in tables:
    differ, diff = max_diff(tables["det_a"], tables["det_b"])
    verdict = "IDENTICAL" if differ == 0 else f"DIFFERENT ({differ} values, max |d| {diff:.3g})"
    print(f"\ndeterministic runs det_a and det_b: {verdict}")
    if differ:
        problems.append("the two deterministic runs differ")
if not (out / "faults.log").exists() or "faults: ok" not in (out / "faults.log").read_text():
    problems.append("the fault check (oom, timeout) did not pass; see faults.log")
print("\n" + ("ALL CHECKS PASSED" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems)))
sys.exit(1 if problems else 0)
EOF
