#!/usr/bin/env bash
# Issue 17's 5-seed table on a lent GPU machine, in one call: every (variant, seed) run of bench_selftrain.py at once,
# each its own process on the GPU (one CPU thread each), until DEADLINE seconds; then what finished is tabulated.
#
#   bash benchmarks/gpu_selftrain.sh OUT_DIR [DEADLINE_S] [VARIANT ...]
#
# Every ~90 s OUT_DIR/results.tgz is refreshed with the runs' small files (metrics, stats, analysis, summaries,
# configs, training logs: no weights) and OUT_DIR/table.md with the table of what is done, so a call cut short
# still returns its finished rounds. Packages the machine lacks (pycocotools, orjson, av) come from wheels in .whl/.
set -u
out=${1:?usage: gpu_selftrain.sh OUT_DIR [DEADLINE_S] [VARIANT ...]}
deadline=${2:-520}
shift 2 2>/dev/null || shift $#
variants=${*:-full track share ema plus practical theoretical}
start=$(date +%s)
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
py=${PYTHON:-python3}
if ! $py -c "import pycocotools, orjson, av" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:src || { echo "wheel install failed"; exit 1; }
else
    export PYTHONPATH=src
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $py -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
    nproc
} 2>&1 | tee "$out/env.log"
# fail at once, not in each run: every module a run imports (the selftrain command reads video files too: av)
$py -c "import autoqvis.commands.selftrain, autoqvis.data.inputs, autoqvis.selftrain.loop" 2>&1 | tail -n 1 \
    | grep . && { echo "imports failed: carry the missing wheels in .whl/"; exit 1; }
# MPS lets the runs' small kernels share the GPU at once instead of in turns; without it they still run
if nvidia-cuda-mps-control -d 2>>"$out/env.log" \
        && timeout 60 $py -c "import torch; torch.zeros(1, device='cuda'); print('mps client ok')" >>"$out/env.log" 2>&1; then
    echo "MPS on" | tee -a "$out/env.log"
else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    echo "MPS off" | tee -a "$out/env.log"
fi
work=${WORK:-/tmp/gst}
seeds=${SEEDS:-0 1 2 3 4}  # SEEDS / ROUND_ITERS / WORK: a smaller trial of the script itself
common=(--seeds $seeds --round-iters "${ROUND_ITERS:-1500}" --rounds 2 --other-rounds 1 --tau 0.7
        --init src/autoqvis/assets/toy_init.pt --work "$work" --overrides train.amp=false)
njobs=$(( $(echo $seeds | wc -w) * $(echo $variants | wc -w) ))
$py benchmarks/bench_selftrain.py "${common[@]}" --variants $variants --jobs "$njobs" --no-write \
    >"$out/bench.log" 2>&1 &
bench=$!
pack() {
    (cd "$work" && find . \( -name 'metrics.json' -o -name 'stats.json' -o -name 'analysis.json' -o -name 'summary.json' \
        -o -name 'config.yaml' -o -name 'log.jsonl' -o -name 'commands.log' \) -print0 \
        | tar -czf "$out/results.tgz.part" --null -T - 2>/dev/null) && mv "$out/results.tgz.part" "$out/results.tgz"
    $py benchmarks/bench_selftrain.py "${common[@]}" --variants $variants --collect-only --no-write \
        >"$out/table.md.part" 2>&1 && mv "$out/table.md.part" "$out/table.md"
    local done_rounds
    done_rounds=$(find "$work" -name metrics.json -path '*round_*' 2>/dev/null | wc -l)
    echo "$(( $(date +%s) - start )) s: $done_rounds round metrics; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
}
while kill -0 $bench 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$deadline" ]; do
    sleep 30
    [ $(( ($(date +%s) - start) % 90 )) -lt 30 ] && pack
done
pack
tail -n 40 "$out/bench.log"
cat "$out/table.md"
# the round-1 detections of seed 0 (AutoQ-VIS and the combination) for the selection screen (selection_loss.py)
for v in full plus; do
    d=$(ls -d "$work"/*/seed0/$v 2>/dev/null | head -1)
    [ -n "$d" ] && [ -f "$d/round_1/detections.jsonl" ] && gzip -c "$d/round_1/detections.jsonl" >"$out/det_r1_$v.jsonl.gz"
done
ls -la "$out"
