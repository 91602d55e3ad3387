#!/usr/bin/env bash
# Every GPU check of the project in one go, for a lent GPU machine with its own python3 + torch:
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [SECONDS]
#
# 1. the reference comparisons on the GPU (check_model_device.py) and the CUDA-only test;
# 2. the quality predictor and criterion at the R50 sizes, fp32 and bf16 (bench_criterion.py --check);
# 3. where the model's time goes on the GPU (profile_model.py --write), and inference frames/s + training
#    iterations/s against the device's peak, top kernels, official model side by side if installed (gpu_speed.py);
# 4. the fast-path switches at the paper's sizes without torch.compile (bench_gpu.py --write), then
# 5. torch.compile, with whatever is left of SECONDS (default 480): compilation alone takes minutes.
# Each step has its own time limit, so a hanging step costs only its share; logs and the updated
# benchmarks/RESULTS.md land in OUT_DIR after every step. Packages the machine lacks (pycocotools, orjson) are
# installed from wheels in .whl/ (`pip download --no-deps --only-binary=:all: -d .whl ...` for its Python) into /tmp/site.
set -u
out=${1:?usage: gpu_checks.sh OUT_DIR [SECONDS]}
budget=${2:-480}
start=$(date +%s)
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:src || { echo "wheel install failed"; exit 1; }
else
    export PYTHONPATH=src
fi

step() {  # step NAME LIMIT_S COMMAND...: run with a limit, log to OUT_DIR/NAME.log, keep RESULTS.md
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    echo "=== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "=== $name rc=$rc $(( $(date +%s) - t0 ))s"
    tail -n 25 "$out/$name.log"
    cp benchmarks/RESULTS.md "$out/RESULTS.md"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
    nproc
} >"$out/env.log" 2>&1
cat "$out/env.log"
step check_device 150 python3 benchmarks/check_model_device.py --device cuda
step test_cuda 150 python3 -m pytest -q -p no:cacheprovider tests/test_trainer.py -k cuda
step criterion 150 bash -c "python3 benchmarks/bench_criterion.py --device cuda --check && python3 benchmarks/bench_criterion.py --device cuda --amp"
step profile 200 python3 benchmarks/profile_model.py --device cuda --train-batch 2 --write
step gpu_speed 240 python3 benchmarks/gpu_speed.py --frames 36 --train-batch 2 --reps 5 --out "$out/gpu_speed.json"
step bench_gpu 300 python3 benchmarks/bench_gpu.py --switches fp32 bf16 channels_last --write
left=$(( budget - ($(date +%s) - start) ))
if [ "$left" -gt 60 ]; then
    step bench_gpu_compile "$left" python3 benchmarks/bench_gpu.py --modes infer train_b4 --switches compile all
else
    echo "no time left for torch.compile ($left s)"
fi
echo "total $(( $(date +%s) - start ))s"
