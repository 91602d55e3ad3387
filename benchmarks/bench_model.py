"""Model speed: forward-only frames/s (``inference``) and training iterations/s (``forward_train`` + backward +
AdamW step), with peak memory, for configs/toy.yaml and the paper's R50 config.

Each (config, mode) runs in a fresh subprocess so that the peak-RSS figure belongs to it alone.

    python benchmarks/bench_model.py                         # both configs, CPU, the sizes below
    python benchmarks/bench_model.py --configs toy --device cuda
Prints one JSON line per measurement and a markdown table.

Side by side with the official model (R50, CPU, one process, alternating runs, medians):

    python benchmarks/bench_model.py --vs-official [--frames 3 12] [--threads 1 2] [--reps 3]
        [--vs-src /path/to/other/autoqvis/src]
    python benchmarks/bench_model.py --route-diffs --frames 12     # numbers only: fast vs reference vs official

times the official VideoMask2Former (detectron2 + CutLER's ``videocutler`` code, which must be importable:
``detectron2``, ``mask2former`` and ``mask2former_video`` on the path) and autoqvis on the same random R50
weights and the same clip, float32: the raw forward (backbone -> class and mask logits; autoqvis's quality
predictor is not run, the official model has none) and the full inference (+ top-10 post-processing to the input
size; autoqvis also scores the 10 kept queries' quality). Without the official code it prints a skip message (and still times
``--vs-src``, another autoqvis source tree, e.g. an older commit from ``git worktree add``). The official
deformable attention runs its pure-PyTorch fallback, as on any machine without its CUDA op: when
``MultiScaleDeformableAttention`` (the compiled op) cannot be imported, an empty stand-in module is registered
so that the official import goes through and its forward falls back, exactly as its own code does.
Numbers: median wall and process-CPU seconds per clip, official/ours ratios (both), max |difference| of the raw outputs, and the peak RSS
growth of each call (VmHWM reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
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


# ---------------------------------------------------------------------------------- side by side
def _perturbed_state(model, seed: int = 0) -> dict:
    """The model's state with seeded noise on every parameter, so that zero-initialised terms (sampling offsets,
    attention weights, biases) are exercised too; buffers (FrozenBN statistics) untouched."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, p in model.named_parameters():
        state[name] += 0.02 * torch.randn(p.shape, generator=g)
    return state


def _official_model(state: dict):
    """The official VideoMaskFormer (R50, class-agnostic VideoCutLER config) with ``state`` loaded, or None
    (with the reason printed) when detectron2 / videocutler cannot be imported."""
    import importlib.util
    import types

    if importlib.util.find_spec("MultiScaleDeformableAttention") is None:
        sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    try:
        import mask2former
        import mask2former_video
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model as d2_build
        from detectron2.projects.deeplab import add_deeplab_config
    except ImportError as err:
        print(f"official model: skipped, not importable here ({err}); install detectron2 and put CutLER's "
              "videocutler/ on PYTHONPATH to time it")
        return None
    cfg = get_cfg()
    add_deeplab_config(cfg)
    mask2former.add_maskformer2_config(cfg)
    mask2former_video.add_maskformer2_video_config(cfg)
    root = Path(mask2former_video.__file__).resolve().parents[1]
    cfg.merge_from_file(str(root / "configs" / "imagenet_video" / "video_mask2former_R50_cls_agnostic.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = d2_build(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


def _official_runners(model):
    import torch
    from detectron2.structures import ImageList

    def raw(clip):
        images = [(x - model.pixel_mean) / model.pixel_std for x in clip]
        images = ImageList.from_tensors(images, model.size_divisibility)
        out = model.sem_seg_head(model.backbone(images.tensor))
        return {"pred_logits": out["pred_logits"][0], "pred_masks": out["pred_masks"][0]}

    def infer(clip):
        out = model([{"image": list(clip), "height": clip.shape[-2], "width": clip.shape[-1]}])
        order = torch.tensor(out["pred_scores"]).argsort(descending=True, stable=True)
        return {"scores": torch.tensor(out["pred_scores"])[order], "masks": torch.stack(out["pred_masks"])[order]}

    return raw, infer


def _head_outputs(model, clip, aux: bool) -> dict:
    """Backbone -> class and mask logits, as the official raw forward (no quality predictor: VideoMask2Former has
    none; ``forward_raw`` would also score all 100 queries with it)."""
    images, _ = model.preprocess([clip])
    mask_features, multi_scale = model.encode(images)
    predictor = model.sem_seg_head.predictor
    extra = {"aux": aux} if "aux" in inspect.signature(predictor.forward).parameters else {}  # older autoqvis: no aux
    out = predictor(multi_scale, mask_features, clip.shape[0], score_all=False, score_last=False, **extra)
    return {"pred_logits": out["pred_logits"][0], "pred_masks": out["pred_masks"][0]}


def _ours_runners(model):
    def raw(clip):
        return _head_outputs(model, clip, aux=False)

    def infer(clip):
        out = model.inference(clip)
        return {"scores": out["scores"], "masks": out["masks"]}

    return raw, infer


def _other_src_model(src: str, state: dict):
    """autoqvis from another source tree (``src`` holds ``autoqvis/``), imported as ``autoqvis_other``."""
    import importlib.util

    init = Path(src) / "autoqvis" / "__init__.py"
    spec = importlib.util.spec_from_file_location("autoqvis_other", init, submodule_search_locations=[str(init.parent)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["autoqvis_other"] = mod
    spec.loader.exec_module(mod)
    from autoqvis_other.config import load_config as other_load
    from autoqvis_other.model.vis_model import build_model as other_build

    model = other_build(other_load(REPO / "configs" / "ytvis19_r50.yaml")).eval()
    model.load_state_dict(state, strict=True)
    return model


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _timed(fn, clip) -> tuple[float, float, float, object]:
    """(wall seconds, process CPU seconds, peak RSS growth MB during the call, result); the high-water mark is
    reset first (Linux). On a shared machine CPU seconds are the steadier measure of one thread's work."""
    import torch

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _rss_kb("VmRSS")
    with torch.no_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(clip)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return sec, cpu, (_rss_kb("VmHWM") - before) / 1024, out


def side_by_side(frames: list[int], threads: list[int], reps: int, other_src: str | None,
                 kinds: tuple[str, ...] = ("raw", "inference")) -> list[dict]:
    """Time autoqvis (default fast path), its float32 reference path (grid_sample sampling, every decoder
    layer's full-size masks), the official model and ``other_src`` on one clip per frame count."""
    import statistics

    import torch

    from autoqvis import load_config
    from autoqvis.model import onednn
    from autoqvis.model.ms_deform_attn import MSDeformAttn
    from autoqvis.model.vis_model import build_model

    torch.manual_seed(0)
    ours = build_model(load_config(REPO / "configs" / "ytvis19_r50.yaml")).eval()
    state = _perturbed_state(ours)
    ours.load_state_dict(state)
    contenders = {"autoqvis": _ours_runners(ours)}

    def reference_raw(clip):  # the float32 reference path: grid_sample, all predictions at full size, torch's routes
        MSDeformAttn.gather_at_inference = onednn.ENABLED = False
        try:
            return _head_outputs(ours, clip, aux=True)
        finally:
            MSDeformAttn.gather_at_inference = onednn.ENABLED = True

    official = _official_model(state)
    if official is not None:
        contenders["official"] = _official_runners(official)
    if other_src:
        contenders["other_src"] = _ours_runners(_other_src_model(other_src, state))
    rows = []
    for t in frames:
        clip = _clip(t, *CLIP["ytvis19_r50"][1:], seed=t)
        refs = {}
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for mode in kinds:
                times = {name: [] for name in contenders}
                cpus = {name: [] for name in contenders}
                mem = {name: [] for name in contenders}
                outs = {}
                names = list(contenders)
                for rep in range(reps):
                    for name in names if rep % 2 == 0 else names[::-1]:  # alternate the order
                        fn = contenders[name][0 if mode == "raw" else 1]
                        sec, cpu, grow, outs[name] = _timed(fn, clip)
                        times[name].append(sec)
                        cpus[name].append(cpu)
                        mem[name].append(grow)
                row = {"frames": t, "threads": n_threads, "mode": mode, "load": round(os.getloadavg()[0], 1),
                       **{f"{k}_s": round(statistics.median(v), 2) for k, v in times.items()},
                       **{f"{k}_all_s": [round(x, 2) for x in v] for k, v in times.items()},
                       **{f"{k}_cpu_s": round(statistics.median(v), 2) for k, v in cpus.items()},
                       **{f"{k}_peak_growth_mb": round(max(v)) for k, v in mem.items()}}
                for name in contenders:
                    if name != "autoqvis":
                        row[f"{name}_over_autoqvis"] = round(statistics.median(times[name]) / statistics.median(times["autoqvis"]), 2)
                        row[f"{name}_over_autoqvis_cpu"] = round(statistics.median(cpus[name]) / statistics.median(cpus["autoqvis"]), 2)
                if mode == "raw":
                    with torch.no_grad():
                        raw_ref = refs[n_threads] = reference_raw(clip)
                    mine = outs["autoqvis"]
                    row["max_diff_vs_reference_path"] = max(
                        (mine[k] - raw_ref[k]).abs().max().item() for k in ("pred_logits", "pred_masks"))
                    for name in contenders:
                        if name != "autoqvis":
                            row[f"max_diff_vs_{name}"] = max(
                                (mine[k] - outs[name][k]).abs().max().item() for k in ("pred_logits", "pred_masks"))
                else:
                    for name in contenders:
                        if name != "autoqvis":
                            a, b = outs["autoqvis"], outs[name]
                            row[f"mask_pixels_differing_vs_{name}"] = float((a["masks"] != b["masks"]).float().mean())
                            row[f"max_score_diff_vs_{name}"] = (a["scores"] - b["scores"]).abs().max().item()
                print(json.dumps(row), flush=True)
                rows.append(row)
        if len(refs) > 1:  # the float32 noise floor: the reference path against itself at another thread count
            (t1, a), (t2, b) = list(refs.items())[:2]
            noise = {"frames": t, f"reference_path_{t1}_vs_{t2}_threads_max_diff": max(
                (a[k] - b[k]).abs().max().item() for k in ("pred_logits", "pred_masks"))}
            print(json.dumps(noise), flush=True)
            rows.append(noise)
    return rows


def route_diffs(t: int) -> list[dict]:
    """Pairwise max |difference| of the raw outputs on one T-frame clip: the fast route, the float32 reference
    route (chunked as at inference, and in one pass) and the official model when importable. Tells a property of
    the fast route from the float32 noise of the model itself."""
    import torch

    from autoqvis import load_config
    from autoqvis.model import onednn, vis_model
    from autoqvis.model.ms_deform_attn import MSDeformAttn

    torch.manual_seed(0)
    ours = vis_model.build_model(load_config(REPO / "configs" / "ytvis19_r50.yaml")).eval()
    state = _perturbed_state(ours)
    ours.load_state_dict(state)
    official = _official_model(state)
    clip = _clip(t, *CLIP["ytvis19_r50"][1:], seed=t)
    outs, chunk = {}, vis_model.ENCODE_CHUNK
    with torch.no_grad():
        outs["fast"] = _head_outputs(ours, clip, aux=False)
        MSDeformAttn.gather_at_inference = onednn.ENABLED = False
        try:
            outs["reference"] = _head_outputs(ours, clip, aux=True)
            vis_model.ENCODE_CHUNK = t  # backbone and pixel decoder over all frames at once, as the official
            outs["reference_one_pass"] = _head_outputs(ours, clip, aux=True)
        finally:
            MSDeformAttn.gather_at_inference = onednn.ENABLED = True
            vis_model.ENCODE_CHUNK = chunk
        if official is not None:
            outs["official"] = _official_runners(official)[0](clip)
    rows, names = [], list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = {k: (outs[a][k] - outs[b][k]).abs() for k in ("pred_logits", "pred_masks")}
            row = {"frames": t, "threads": torch.get_num_threads(), "a": a, "b": b,
                   "max_diff": max(v.max().item() for v in diff.values()),
                   "mask_logits_over_1e-5": float((diff["pred_masks"] > 1e-5).float().mean())}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


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
    ap.add_argument("--vs-official", action="store_true",
                    help="R50 on CPU side by side with the official model (see above), instead of the table")
    ap.add_argument("--frames", type=int, nargs="+", default=[3], help="clip lengths for --vs-official")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads for --vs-official")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions for --vs-official (medians)")
    ap.add_argument("--vs-src", default=None, help="with --vs-official: also time the autoqvis in this src folder")
    ap.add_argument("--kinds", nargs="+", default=["raw", "inference"], choices=["raw", "inference"],
                    help="with --vs-official: raw forward and/or full inference")
    ap.add_argument("--route-diffs", action="store_true",
                    help="with --frames: pairwise differences of the fast route, the float32 reference route and "
                         "the official model (if importable) on one clip per frame count, no timing")
    args = ap.parse_args()
    if args.route_diffs:
        for t in args.frames:
            route_diffs(t)
        return 0
    if args.vs_official:
        side_by_side(args.frames, args.threads, args.reps, args.vs_src, tuple(args.kinds))
        return 0
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
