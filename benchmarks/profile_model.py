"""Where the model's time goes: is the grid_sample deformable attention the bottleneck?

    python benchmarks/profile_model.py [--config ytvis19_r50] [--frames 3] [--train-batch 1] [--threads 1] [--write]
    python benchmarks/profile_model.py --device cuda --train-batch 2       # the same on a GPU (device time)

Two measurements, one torch thread by default on CPU (the stable setting on a shared machine):
1. parts: wall seconds of the backbone, the pixel decoder (6 MSDeformAttn encoder layers), the video transformer
   decoder and post-processing of ``model.inference`` on one clip of --frames frames at 360x640, timed one by one;
2. ops: ``torch.profiler`` over that inference and over one training step (forward_train + backward at
   --train-batch clips of 3x360x640), self time per aten op (CPU, or GPU kernels), grouped into grid_sample (fwd/bwd:
   the deformable attention's sampling, and in training also the criterion's point sampling), convolutions,
   matrix products and the rest; plus the pixel decoder alone, forward and forward + backward.
The decision it informs: a fused / Triton MSDeformAttn kernel only pays when grid_sample is a large share.

Stage table (issue 19), CPU or GPU:

    python benchmarks/profile_model.py --stages --frames 3 12 36 --threads 1 2 --path reference fast [--write]

wall seconds and peak memory growth (CPU: VmHWM reset through /proc/self/clear_refs before each stage; GPU:
max_memory_allocated) of every stage of ``model.inference`` on a clip of T x 360 x 640: backbone, pixel-decoder
encoder (without its sampling), the deformable attention's sampling (inside the encoder, timed by wrapping the
sampling function), transformer decoder, mask upsampling + post-processing, quality predictor on the kept
queries. ``--path reference`` is the float32 reference path (grid_sample sampling, every decoder layer's masks
at full size, as the official code); ``fast`` the default inference path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

GRID = "grid_sample (MSDeformAttn; in training also point sampling)"
GROUPS = {  # group -> substrings of aten op names
    GRID: ("grid_sampler",),
    "convolution": ("convolution", "conv2d", "mkldnn_conv", "_slow_conv", "conv_depthwise", "thnn_conv"),
    "matmul / linear": ("addmm", "::mm", "bmm", "matmul", "linear", "baddbmm", "einsum"),
    "interpolate / point_sample": ("upsample", "interpolate"),
}


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(k in name for k in keys):
            return group
    return "other"


def op_shares(prof, cuda: bool = False) -> dict[str, float]:
    """Self seconds per group from a finished torch.profiler run (GPU kernel time of each aten op with ``cuda``)."""
    out: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key.startswith("aten::") or evt.key.startswith("mkldnn"):
            sec = (evt.self_device_time_total if cuda else evt.self_cpu_time_total) / 1e6
            out[group_of(evt.key)] = out.get(group_of(evt.key), 0.0) + sec
    return out


def activities(device) -> list:
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU, ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def parts(model, clip) -> dict[str, float]:
    """Wall seconds of each stage of ``model.inference`` on ``clip`` (T, 3, H, W)."""
    import torch

    from autoqvis.model.vis_model import postprocess_video

    times = {}
    device = clip.device
    with torch.no_grad():
        images, padded = model.preprocess([clip])
        sync(device)
        t0 = time.perf_counter()
        features = model.backbone(images)
        sync(device)
        t1 = time.perf_counter()
        mask_features, multi_scale = model.sem_seg_head.pixel_decoder(features)
        sync(device)
        t2 = time.perf_counter()
        out = model.sem_seg_head.predictor(multi_scale, mask_features, clip.shape[0], score_all=False, score_last=False)
        sync(device)
        t3 = time.perf_counter()
        res = postprocess_video(out["pred_logits"][0], out["pred_masks"][0], tuple(clip.shape[-2:]),
                                tuple(clip.shape[-2:]), model.test_topk, padded_size=padded)
        if model.has_quality:
            model.sem_seg_head.predictor.maskiou_feature_extractor(multi_scale[0], out["pred_masks"][:, res["query_indices"]])
        sync(device)
        t4 = time.perf_counter()
    times.update({"backbone": t1 - t0, "pixel decoder (MSDeformAttn encoder)": t2 - t1,
                  "transformer decoder": t3 - t2, "post-processing + quality of top-k": t4 - t3})
    return times


def pixel_decoder_grid_sample(model, clip, train: bool) -> tuple[float, float]:
    """(grid_sample seconds, all ops' seconds) of the pixel decoder alone, profiled; with ``train``, forward +
    backward of its outputs (what a training step spends there)."""
    import torch
    from torch.profiler import profile

    with torch.no_grad():
        images, _ = model.preprocess([clip])
        features = model.backbone(images)
    decoder = model.sem_seg_head.pixel_decoder
    decoder.train(train)
    with torch.set_grad_enabled(train), profile(activities=activities(clip.device)) as prof:
        mask_features, multi_scale = decoder(features)
        if train:
            (mask_features.sum() + sum(x.sum() for x in multi_scale)).backward()
        sync(clip.device)
    decoder.eval()
    shares = op_shares(prof, clip.device.type == "cuda")
    return shares.get(GRID, 0.0), sum(shares.values())


def _reset_peak() -> int:
    """Reset this process's peak RSS (Linux clear_refs 5) and return the current RSS in KiB."""
    from pathlib import Path as P

    try:
        P("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def _status_kb(field: str) -> int:
    from pathlib import Path as P

    for line in P("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class StageClock:
    """Accumulates wall seconds and the largest peak-memory growth (MB) per stage name."""

    def __init__(self, device):
        self.device, self.sec, self.mem = device, {}, {}

    def run(self, name: str, fn, *args, **kwargs):
        import torch

        cuda = self.device.type == "cuda"
        sync(self.device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _reset_peak()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(self.device)
        self.sec[name] = self.sec.get(name, 0.0) + time.perf_counter() - t0
        grow = ((torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else (_status_kb("VmHWM") - base) / 1024)
        self.mem[name] = max(self.mem.get(name, 0.0), grow)
        return out


ENCODER, SAMPLING = "pixel-decoder encoder (w/o sampling)", "deformable attention sampling"
STAGES = ["backbone", ENCODER, SAMPLING, "transformer decoder", "mask upsampling + post-processing",
          "quality predictor (kept queries)"]


def stages(model, clip, path: str) -> tuple[dict, dict]:
    """(seconds, peak growth MB) per stage of one ``model.inference``-equivalent pass over ``clip`` (T, 3, H, W)."""
    import torch

    from autoqvis.model import ms_deform_attn as mda
    from autoqvis.model import onednn
    from autoqvis.model.vis_model import ENCODE_CHUNK, postprocess_video

    clock = StageClock(clip.device)
    fast = path == "fast"
    mda.MSDeformAttn.gather_at_inference = onednn.ENABLED = fast
    originals = (mda.ms_deform_attn_sample, mda.ms_deform_attn_gather_pixels)
    sampling = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            sync(clip.device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(clip.device)
            sampling[0] += time.perf_counter() - t0
            return out
        return wrapper

    mda.ms_deform_attn_sample, mda.ms_deform_attn_gather_pixels = (timed(f) for f in originals)
    try:
        with torch.no_grad():
            images, padded = model.preprocess([clip])
            masks, levels = [], []
            for chunk in images.split(ENCODE_CHUNK):  # as model.encode at inference
                feats = clock.run("backbone", model.backbone, chunk)
                m, ms = clock.run(ENCODER, model.sem_seg_head.pixel_decoder, feats)
                masks.append(m)
                levels.append(ms)
                del feats
            mask_features, multi_scale = torch.cat(masks), [torch.cat(x) for x in zip(*levels)]
            del masks, levels
            predictor = model.sem_seg_head.predictor
            out = clock.run("transformer decoder", predictor, multi_scale, mask_features, clip.shape[0],
                            score_all=False, score_last=False, aux=not fast)
            res = clock.run("mask upsampling + post-processing", postprocess_video, out["pred_logits"][0],
                            out["pred_masks"][0], tuple(clip.shape[-2:]), tuple(clip.shape[-2:]), model.test_topk,
                            padded_size=padded)
            if model.has_quality:
                kept = out["pred_masks"][:, res["query_indices"]]
                clock.run("quality predictor (kept queries)", predictor.maskiou_feature_extractor, multi_scale[0], kept)
    finally:
        mda.ms_deform_attn_sample, mda.ms_deform_attn_gather_pixels = originals
        mda.MSDeformAttn.gather_at_inference = onednn.ENABLED = True
    clock.sec[ENCODER] -= sampling[0]
    clock.sec[SAMPLING] = sampling[0]
    clock.mem[SAMPLING] = float("nan")  # inside the encoder's peak
    return clock.sec, clock.mem


def stage_table(args) -> str:
    import os

    import torch

    from autoqvis import build_model, load_config
    from bench_gpu import CLIP_HW
    from results_md import machine

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(load_config(args.config)).to(device).eval()
    hw = CLIP_HW if args.config != "toy" else (96, 128)
    rows = []
    for t in args.frames:
        clip = torch.rand(t, 3, *hw, device=device) * 255
        for threads in args.threads:
            torch.set_num_threads(threads)
            for path in args.path:
                stages(model, clip[:1], path)  # warm-up
                load = os.getloadavg()[0]
                sec, mem = stages(model, clip, path)
                rss = _status_kb("VmRSS") / 1024
                row = {"frames": t, "threads": threads, "path": path, "load": round(load, 1), "sec": sec, "mem": mem,
                       "rss_mb": rss}
                print(json.dumps({**row, "sec": {k: round(v, 3) for k, v in sec.items()},
                                  "mem": {k: round(v) for k, v in mem.items() if v == v}}), flush=True)
                rows.append(row)
    lines = [f"`python benchmarks/profile_model.py {' '.join(sys.argv[1:])}` on {machine()}, {args.device}; "
             f"{args.config}, clips T x {hw[0]} x {hw[1]}; seconds (share) and peak memory growth MB of each stage; "
             "load = 1-min load average when the row started.", "",
             "| T | threads | path | load | " + " | ".join(STAGES) + " | total s |",
             "|---|---|---|---|" + "---|" * (len(STAGES) + 1)]
    for r in rows:
        total = sum(r["sec"].values())
        cells = []
        for st in STAGES:
            v, m = r["sec"].get(st, 0.0), r["mem"].get(st, float("nan"))
            cells.append(f"{v:.2f} ({100 * v / total:.0f}%)" + (f", {m:.0f} MB" if m == m else ""))
        lines.append(f"| {r['frames']} | {r['threads']} | {r['path']} | {r['load']} | " + " | ".join(cells) + f" | {total:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="ytvis19_r50")
    ap.add_argument("--frames", type=int, nargs="+", default=[3], help="clip length(s) (several with --stages)")
    ap.add_argument("--train-batch", type=int, default=1, help="clips of the profiled training step (0: skip it)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads (several with --stages)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", action="store_true", help="add the tables to benchmarks/RESULTS.md (## Scale-out)")
    ap.add_argument("--stages", action="store_true", help="the per-stage time / memory table (see above)")
    ap.add_argument("--path", nargs="+", default=["reference", "fast"], choices=["reference", "fast"])
    args = ap.parse_args()
    if args.stages:
        text = stage_table(args)
        print(text)
        if args.write:
            from results_md import write_block

            write_block("Inference speed", f"profile_model:stages:{args.device}:{args.config}", text)
        return 0
    args.frames, args.threads = args.frames[0], args.threads[0]

    import torch
    from torch.profiler import profile

    from autoqvis import build_model, load_config
    from bench_gpu import CLIP_HW, train_sample
    from results_md import machine, write_block

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    cfg = load_config(args.config)
    model = build_model(cfg).to(device).eval()
    hw = CLIP_HW if args.config != "toy" else (96, 128)
    clip = torch.rand(args.frames, 3, *hw, device=device) * 255
    with torch.no_grad():
        model.inference(clip[:1])  # warm-up
    stage = parts(model, clip)
    pd_grid, _ = pixel_decoder_grid_sample(model, clip, train=False)
    pd_train_grid, pd_train_all = pixel_decoder_grid_sample(model, clip, train=True)
    with profile(activities=activities(device)) as prof, torch.no_grad():
        model.inference(clip)
        sync(device)
    infer_ops = op_shares(prof, cuda)
    train_ops = {}
    if args.train_batch:
        model.train()
        batch = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in train_sample(i, hw).items()}
                 for i in range(args.train_batch)]
        with profile(activities=activities(device)) as prof:
            losses = model.forward_train(batch)
            sum(losses.values()).backward()
            sync(device)
        train_ops = op_shares(prof, cuda)

    total = sum(stage.values())
    lines = [f"`python benchmarks/profile_model.py {' '.join(sys.argv[1:])}` on {machine()}, {args.device}, {args.threads} thread(s); "
             f"{args.config}, clip {args.frames}x{hw[0]}x{hw[1]}.", "",
             "| inference stage | wall s | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {100 * v / total:.0f}% |" for k, v in stage.items()]
    lines += [f"| grid_sample inside the pixel decoder (profiled) | {pd_grid:.2f} | "
              f"{100 * pd_grid / total:.0f}% of inference, {100 * pd_grid / max(stage['pixel decoder (MSDeformAttn encoder)'], 1e-9):.0f}% of the pixel decoder |",
              f"| pixel decoder forward + backward (profiled, training) | {pd_train_all:.2f} | grid_sample fwd+bwd "
              f"{pd_train_grid:.2f} s = {100 * pd_train_grid / max(pd_train_all, 1e-9):.0f}% of it |", ""]
    header = f"| op group (self {'GPU' if cuda else 'CPU'} time) | inference s | share |" + (" training step s | share |" if train_ops else "")
    lines += [header, "|---|---|---|" + ("---|---|" if train_ops else "")]
    ti, tt = sum(infer_ops.values()), sum(train_ops.values())
    for group in [*GROUPS, "other"]:
        row = f"| {group} | {infer_ops.get(group, 0):.2f} | {100 * infer_ops.get(group, 0) / ti:.1f}% |"
        if train_ops:
            row += f" {train_ops.get(group, 0):.2f} | {100 * train_ops.get(group, 0) / tt:.1f}% |"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_block("Scale-out", f"profile_model:{args.device}:{args.config}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
