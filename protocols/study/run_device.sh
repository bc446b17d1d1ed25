#!/usr/bin/env bash
# The study's parts that ran on the lent GPU machine (one H100 with 16 CPU cores), in one
# command: the deep networks (claims12_deep) on the GPU and claims 3 and 4 on the machine's
# CPU cores at the same time (claims12 and claim5 ran on a 2-core CPU machine). Each run is
# capped (CAP seconds, SIGTERM): a stopped run keeps every finished trial and `bnstudy run`
# resumes the rest anywhere. The machine lacked the mnist1d package, so claim4 was re-run
# with it (and the dataset cache) carried; see README "What we found".
#
#   OUT=/some/dir bash protocols/study/run_device.sh      # results, log and times in $OUT
#
# bnstudy runs from $SRC (default src/; nothing is installed); pydantic comes from ./.whl
# when the machine lacks it.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
CAP=${CAP:-420}
SRC=${SRC:-src}
GPU=${GPU:-cuda:0}
export PYTHONUNBUFFERED=1 PYTHONPATH="$SRC"
if ! python3 -c "import pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$SRC:/tmp/site" || exit 1
fi
{ date -u; nproc; nvidia-smi -L 2>/dev/null; python3 -c "import torch; print('torch', torch.__version__)"; } \
    | tee "$OUT/times.txt"

run() {  # run NAME [bnstudy run options]: one protocol of protocols/study/, capped and timed
    local name=$1 start=$SECONDS rc
    shift
    timeout -s TERM "$CAP" python3 -m bnstudy run "protocols/study/$name.yaml" --no-report \
        --quiet "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s wall, options: $*" | tee -a "$OUT/times.txt"
}

run claims12_deep --devices "$GPU" --per-device 6 &
run claim4 --devices cpu --jobs 7 --threads 1 &
run claim3 --devices cpu --jobs 3 --threads 1 &
wait
python3 benchmarks/bench_step.py resnet32 --device "$GPU" --batch 128 2>&1 | tee -a "$OUT/times.txt"
cat "$OUT"/*.log > "$OUT/log.txt" && rm -f "$OUT"/*.log
for name in claims12_deep claim4 claim3; do cp "data/results/study_$name.parquet" "$OUT/"; done
ls -la "$OUT"
