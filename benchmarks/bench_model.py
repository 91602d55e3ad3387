"""Model speed: forward-only frames/s (``inference``) and training iterations/s (``forward_train`` + backward +
AdamW step), with peak memory, for configs/toy.yaml and the paper's R50 config.

Each (config, mode) runs in a fresh subprocess so that the peak-RSS figure belongs to it alone.

    python benchmarks/bench_model.py                         # both configs, CPU, the sizes below
    python benchmarks/bench_model.py --configs toy --device cuda
Prints one JSON line per measurement and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# config -> (frames, H, W) of a clip; R50 at the paper's test scale (shortest edge 360)
CLIP = {"toy": (3, 128, 128), "ytvis19_r50": (3, 360, 640)}


def _clip(t: int, h: int, w: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, 3, h, w, generator=g) * 255


def _sample(t: int, h: int, w: int, seed: int) -> dict:
    """A training sample with three box-shaped objects moving right."""
    import torch

    masks = torch.zeros(3, t, h, w, dtype=torch.bool)
    for i in range(3):
        for f in range(t):
            y0, x0 = h // 8 + i * h // 4, w // 8 + f * w // 32
            masks[i, f, y0:y0 + h // 5, x0:x0 + w // 4] = True
    return {"frames": _clip(t, h, w, seed), "masks": masks, "labels": torch.zeros(3, dtype=torch.int64),
            "source": "synthetic"}


def _peak_mb(device) -> dict:
    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(config: str, mode: str, iters: int, device_name: str, batch: int | None, warmup: int = 1) -> dict:
    """One measurement in this process: ``mode`` is "forward" or "train"."""
    import torch

    from autoqvis import load_config
    from autoqvis.model.vis_model import build_model

    torch.manual_seed(0)
    device = torch.device(device_name)
    cfg = load_config(REPO / "configs" / f"{config}.yaml")
    model = build_model(cfg).to(device)
    t, h, w = CLIP[config]
    res = {"config": config, "mode": mode, "device": device_name, "clip": f"{t}x{h}x{w}",
           "threads": torch.get_num_threads(), "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if mode == "forward":
        model.eval()
        clip = _clip(t, h, w, 0).to(device)
        with torch.no_grad():
            for _ in range(warmup):
                model.inference(clip)
            _sync(device)
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(iters):
                model.inference(clip)
            _sync(device)
        sec = (time.perf_counter() - start) / iters
        res.update(sec_per_clip=round(sec, 3), frames_per_s=round(t / sec, 2),
                   cpu_sec_per_clip=round((time.process_time() - cpu) / iters, 3))
    else:
        model.train()
        batch = batch or cfg.train.batch_size
        samples = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in _sample(t, h, w, i).items()}
                   for i in range(batch)]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        use_amp = device.type == "cuda" and cfg.train.amp

        def step():
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                losses = model.forward_train(samples)
            sum(v.float() for v in losses.values()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            step()
        _sync(device)
        sec = (time.perf_counter() - start) / iters
        res["cpu_sec_per_iter"] = round((time.process_time() - cpu) / iters, 3)
        res.update(batch=batch, amp=use_amp, warmup=warmup, sec_per_iter=round(sec, 3), iters_per_s=round(1 / sec, 3))
    res.update(_peak_mb(device))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CLIP), choices=list(CLIP))
    ap.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations (after --warmup untimed ones)")
    ap.add_argument("--r50-train-iters", type=int, default=1, help="timed train iterations for R50 (slow on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="train batch (default: the config's train.batch_size)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        iters = args.r50_train_iters if (args.one == ["ytvis19_r50", "train"]) else args.iters
        print(json.dumps(measure(args.one[0], args.one[1], iters, args.device, args.batch, args.warmup)))
        return 0
    rows = []
    for config in args.configs:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", config, mode, "--iters", str(args.iters), "--device", args.device,
                   "--r50-train-iters", str(args.r50_train_iters), "--warmup", str(args.warmup)] + (["--batch", str(args.batch)] if args.batch else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print("| config | mode | device | clip | batch | wall time | rate | CPU time | peak RSS MB | peak CUDA MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "forward":
            time_s, rate, cpu = f"{r['sec_per_clip']} s/clip", f"{r['frames_per_s']} frames/s", r["cpu_sec_per_clip"]
        else:
            time_s, rate, cpu = f"{r['sec_per_iter']} s/iter", f"{r['iters_per_s']} iters/s", r["cpu_sec_per_iter"]
        print(f"| {r['config']} | {r['mode']} | {r['device']} | {r['clip']} | {r.get('batch', 1)} | {time_s} | {rate} | {cpu} s "
              f"| {r['peak_rss_mb']} | {r.get('peak_cuda_mb', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
