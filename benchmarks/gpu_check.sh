#!/usr/bin/env bash
# GPU check, at most 10 minutes on one GPU (run it when a GPU is lent):
#   1. the reference-based refinement of 100,000 particles of 128 px on CUDA from top-5
#      candidates, without and with 4 global starts, with refine_star's default search (8 global
#      starts, 8 survivors, tracks 16 deg apart), and the floor (global search
#      then local refinement) of 20,000 of them, each within 60 s of device time, against the
#      same code on the machine's CPU cores, with the CUDA-vs-CPU pose difference and the
#      accuracy (gpu_bench.py refine)                                          <= 5 min
#   2. the tests marked gpu (tests/gpu: CUDA reconstruction vs the CPU kernel, deterministic
#      CUDA prediction, a few training steps with trainer=gpu, refinement and floor on CUDA
#      against the CPU's poses)                                             <= 2 min
#   3. the reconstruction of 100,000 particles of 256 px on the GPU          <= 1.5 min
#   4. the paper configuration's training and inference throughput, 50 s      <= 1.3 min
# Each step prints JSON lines; all go to benchmarks/results/gpu_<date>.jsonl (with the GPU's
# name, nvidia-smi's line and the load). On a machine without CUDA it prints a clear skip and
# exits 0.
#
# Usage: bash benchmarks/gpu_check.sh            (PY=path/to/python to choose the interpreter;
#        GPU_CHECK_LOGS=dir keeps the steps' logs there)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): skipped"
    exit 0
fi
if ! "$PY" -c "import importlib.resources as r, sys; sys.exit(0 if r.files('cesped.configs').joinpath('train.yaml').is_file() else 1)" 2>/dev/null; then
    echo "gpu_check: cesped is not installed for $PY (its Hydra configs ship as the package cesped.configs only through pip): run '$PY -m pip install --no-deps -e .' first"
    exit 1
fi
mkdir -p benchmarks/results
OUT="benchmarks/results/gpu_$(date -u +%Y-%m-%d_%H%M).jsonl"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
status=0
gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
echo "{\"name\": \"gpu_check_start\", \"value\": \"$gpu\", \"unit\": \"\", \"reference\": null, \"ratio\": null, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | tee -a "$OUT"

timeout 300 "$PY" benchmarks/gpu_bench.py refine --n 100000 --box 128 --px 1.5 --global-top 0 4 default --floor-n 20000 --max-seconds 60 2> "$WORK/refine.err" | tee -a "$OUT"
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || { tail -5 "$WORK/refine.err"; echo "gpu_check: refinement failed ($rc)"; status=1; }

t0=$(date +%s)
timeout 120 "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider > "$WORK/pytest.log" 2>&1
rc=$?
tail -5 "$WORK/pytest.log"
summary=$(tail -1 "$WORK/pytest.log" | tr -d '"=')
echo "{\"name\": \"gpu_tests\", \"value\": $rc, \"unit\": \"exit code\", \"reference\": null, \"ratio\": null, \"summary\": \"$summary\", \"seconds\": $(( $(date +%s) - t0 )), \"command\": \"python -m pytest tests/gpu -m gpu\"}" | tee -a "$OUT"
[ $rc -eq 0 ] || status=1

timeout 90 "$PY" benchmarks/gpu_bench.py reconstruct --n 100000 --box 256 --workdir "$WORK" 2> "$WORK/rec.err" | tee -a "$OUT"
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || { tail -5 "$WORK/rec.err"; echo "gpu_check: reconstruction failed ($rc)"; status=1; }

timeout 80 "$PY" benchmarks/gpu_bench.py throughput --seconds 50 2> "$WORK/throughput.err" | tee -a "$OUT"
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || { tail -5 "$WORK/throughput.err"; echo "gpu_check: throughput failed ($rc)"; status=1; }

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -n "${GPU_CHECK_LOGS:-}" ] && mkdir -p "$GPU_CHECK_LOGS" && cp "$WORK"/*.log "$WORK"/*.err "$GPU_CHECK_LOGS"/ 2>/dev/null
echo "gpu_check: figures in $OUT (exit $status)"
exit $status
