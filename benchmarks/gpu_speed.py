"""Inference frames/s and training iterations/s of the paper's R50 model on one GPU, against the device's peak.

    python benchmarks/gpu_speed.py [--frames 36] [--train-batch 2] [--reps 5] [--peak-tflops TF32 BF16] [--out F.json]
    python benchmarks/gpu_speed.py --device cpu --config toy --frames 2 --train-batch 1 --reps 1   # the plumbing

For one clip of --frames frames at 360x640 (the paper's test scale) and one training iteration at --train-batch
clips of 3x360x640 (forward_train + backward + AdamW, quality predictor trained as in the initial stage):
1. FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; the deformable
   sampling, norms and element-wise ops are not counted, so the achieved rate is a lower bound): per clip and per
   frame at inference, per iteration in training;
2. wall time, medians of --reps after one warm-up, in fp32 (TF32 matmuls allowed, as PyTorch's cuDNN default for
   convolutions) and bf16 autocast (``train.amp`` / ``inference.amp_dtype``): frames/s, iterations/s, achieved
   TFLOP/s and the share of the device's dense peak (TF32 for fp32, BF16 for bf16: --peak-tflops, or the table
   PEAK_TFLOPS by device name);
3. the top three kernels by device time (``torch.profiler``), for one inference and one training iteration;
4. the official VideoMask2Former side by side (raw forward, same weights and clip) when ``detectron2`` and CutLER's
   ``videocutler`` are importable on this machine (benchmarks/bench_model.py ``--vs-official``); else it says so.
Prints one json object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

# dense (no sparsity) peak TFLOP/s: (TF32 tensor core, BF16 tensor core), from the vendors' data sheets
PEAK_TFLOPS = {
    "H200": (494.7, 989.4),
    "H100 80GB HBM3": (494.7, 989.4),  # SXM
    "H100 PCIe": (378.0, 756.0),
    "A100": (156.0, 312.0),
    "L40S": (183.0, 362.0),
}


def peak_for(name: str) -> tuple[float, float] | None:
    for key, peak in PEAK_TFLOPS.items():
        if key in name:
            return peak
    return None


def count_flops(fn) -> float:
    """FLOPs of running ``fn()`` (FlopCounterMode: matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, device, reps: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def top_kernels(fn, device, n: int = 3) -> list[dict]:
    """The ``n`` ops / kernels with the most self device time (CPU time off a GPU) in one ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    cuda = device.type == "cuda"
    events = [e for e in prof.key_averages() if (e.self_device_time_total if cuda else e.self_cpu_time_total) > 0]
    if cuda:  # kernels, not the aten ops that launch them
        events = [e for e in events if not e.key.startswith("aten::")] or events
    key = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in events) or 1.0
    return [{"name": e.key[:90], "ms": round(key(e) / 1e3, 2), "share": round(key(e) / total, 3)}
            for e in sorted(events, key=key, reverse=True)[:n]]


def measure(args) -> dict:
    import torch

    from autoqvis import build_model, load_config
    from autoqvis.engine import fast_path
    from bench_gpu import CLIP_HW, train_sample

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    hw = CLIP_HW if args.config != "toy" else (96, 128)
    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval()
    clip = torch.rand(args.frames, 3, *hw, device=device) * 255
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = tuple(args.peak_tflops) if args.peak_tflops else peak_for(name)
    res = {"device": name, "config": args.config, "clip": f"{args.frames}x{hw[0]}x{hw[1]}",
           "train_batch": args.train_batch, "peak_tflops_tf32_bf16": peak}

    trainable = [p for p in model.parameters() if p.requires_grad]
    model.requires_grad_(False)  # FlopCounterMode's module tracker trips on leaves that need grad under no_grad
    with torch.no_grad():
        infer_flops = count_flops(lambda: model.inference(clip))
    for p in trainable:
        p.requires_grad_(True)
    res["inference_gflop_per_frame"] = round(infer_flops / args.frames / 1e9, 2)
    for precision in ("fp32", "bf16"):
        amp = precision == "bf16" and cuda

        def infer():
            with torch.no_grad(), fast_path.autocast(device, amp):
                model.inference(clip)

        sec = _median_time(infer, device, args.reps)
        tflops = infer_flops / sec / 1e12
        row = {"sec_per_clip": round(sec, 4), "frames_per_s": round(args.frames / sec, 2),
               "achieved_tflops": round(tflops, 4)}
        if peak:
            row["share_of_peak"] = round(tflops / peak[precision == "bf16"], 4)
        res[f"inference_{precision}"] = row
    res["inference_top_kernels"] = top_kernels(
        lambda: torch.no_grad()(lambda: model.inference(clip))(), device)

    if args.train_batch:
        model.train()
        batch = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in train_sample(i, hw).items()}
                 for i in range(args.train_batch)]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def forward_backward():
            sum(model.forward_train(batch).values()).backward()

        train_flops = count_flops(forward_backward)
        optimizer.zero_grad(set_to_none=True)
        res["train_tflop_per_iter"] = round(train_flops / 1e12, 3)
        for precision in ("fp32", "bf16"):
            amp = precision == "bf16" and cuda

            def step():
                with fast_path.autocast(device, amp):
                    losses = model.forward_train(batch)
                optimizer.zero_grad(set_to_none=True)
                sum(v.float() for v in losses.values()).backward()
                optimizer.step()

            sec = _median_time(step, device, args.reps)
            tflops = train_flops / sec / 1e12
            row = {"sec_per_iter": round(sec, 4), "iters_per_s": round(1 / sec, 3), "achieved_tflops": round(tflops, 4)}
            if peak:
                row["share_of_peak"] = round(tflops / peak[precision == "bf16"], 4)
            res[f"train_{precision}"] = row
        res["train_top_kernels"] = top_kernels(step, device)
        model.eval()

    res["official"] = official_side_by_side(model, clip, device, args.reps) if args.config != "toy" else \
        "skipped: the official side by side is at the R50 size only"
    return res


def official_side_by_side(model, clip, device, reps: int) -> dict | str:
    """Raw forward of the official model and ours on the same weights and clip (fp32), alternating, medians."""
    import torch

    from bench_model import _official_model, _official_runners, _ours_runners

    state = {k: v.cpu() for k, v in model.state_dict().items()}
    official = _official_model(state)
    if official is None:
        return "skipped: detectron2 / videocutler not importable on this machine"
    official.to(device)
    fns = {"official": _official_runners(official)[0], "autoqvis": _ours_runners(model)[0]}
    times = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn(clip)  # warm-up
        for rep in range(reps):
            for name in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
                _sync(device)
                t0 = time.perf_counter()
                fns[name](clip)
                _sync(device)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"raw_forward_s": {k: round(v, 4) for k, v in med.items()},
            "official_over_autoqvis": round(med["official"] / med["autoqvis"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="ytvis19_r50")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=36, help="frames of the inference clip (360x640)")
    ap.add_argument("--train-batch", type=int, default=2, help="clips per training iteration (0: skip training)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, nargs=2, metavar=("TF32", "BF16"), default=None,
                    help="the device's dense peak TFLOP/s (default: PEAK_TFLOPS by device name)")
    ap.add_argument("--out", default=None, help="also write the json here")
    args = ap.parse_args()
    res = measure(args)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
