"""Projected wall-clock of the paper's whole schedule on ONE H100, without a GPU at hand.

    python benchmarks/project_gpu.py [--write]

No GPU run of the whole model was possible in this session; this script projects instead, and says how:
1. FLOPs, counted with ``torch.utils.flop_counter`` (matmuls and convolutions; grid_sample, norms and
   element-wise ops are not counted): the quality predictor's training workload at bench_criterion.py's R50 sizes
   (on the meta device), and the R50 VideoMaskFormer's per-frame encoder (backbone + pixel decoder) and its video
   decoder at T = 3 and 6 frames (on the CPU, random inputs; the decoder is linear in T).
2. The achieved GPU rate comes from measurements made earlier on an H200 (issue 6 brief, bench_criterion.py):
   the predictor's 10 predictions fwd+bwd took 83 ms in fp32 (TF32 convolutions) and 46 ms under bf16 autocast;
   the whole criterion fwd+bwd took 67 ms (fp32; it runs in fp32 under autocast too). The rest of the model is
   assumed to reach between ``--efficiency`` (default 0.5) and 1.0 times the predictor's FLOP rate (its deformable
   attention and small decoder matmuls are less efficient than the predictor's 3x3 convolutions).
3. H100 vs H200: the same GH100 compute, 3.35 vs 4.8 TB/s of memory bandwidth; GPU time is scaled by 1.0 (compute
   bound) to 1.43 (memory bound).
4. Per training step: model fwd+bwd = 3 x forward FLOPs; + the criterion (67 ms per 2 clips); + the predictor in the
   initial stage only (frozen in the rounds); + ``--step-overhead`` seconds of launch/Python overhead (default
   0.02-0.05). Data loading is assumed hidden by train.num_workers loader processes (ImageCut2Video costs
   ~0.08-0.13 s per 360p clip on one core, benchmarks/RESULTS.md "Synthetic clips"; the loader needs about
   batch x 0.13 / step-time processes); the projection also shows num_workers = 0.
5. Per pseudo-labelled video (36 frames at 1280x720): model forward on the GPU + the CPU work measured on this
   machine: decoding 36 JPEG frames, packing the run lengths the GPU found (``inference.run_length_rles``) into 10 x
   36 compressed RLEs, NMS. The steps run one after the other (no overlap).
Schedule (AutoQ-VIS Sec. 4): initial stage 8,000 iterations at batch 2; 2 rounds of 10,000 iterations at batch 4;
3 pseudo-labelling passes over YouTubeVIS-2019 train, 2,238 videos (taken as 36 frames each, an upper bound).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

H200 = {"predictor_fp32_s": 0.083, "predictor_bf16_s": 0.046, "criterion_s": 0.067}  # per batch of 2 clips
H100_SLOWDOWN = (1.0, 4.8 / 3.35)  # compute-bound .. memory-bound
PADDED = (384, 640)  # 360x640 padded to multiples of 32
ENCODING_PATHS: dict[str, float] = {}  # seconds per video of each way to RLE-encode its masks (filled by cpu_work)


def flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()  # callers pick grad mode: the forward-only counts run under no_grad
    return float(counter.get_total_flops())


def predictor_flops() -> float:
    """The quality predictor on 10 predictions (B 2, T 3, Q 100, 384x640), forward + backward, on meta."""
    import torch

    from autoqvis.model.quality import QualityPredictor

    b, t, q, (hp, wp) = 2, 3, 100, PADDED
    with torch.device("meta"):
        predictor = QualityPredictor(256, 256, 1024)
        features = torch.empty(b * t, 256, hp // 32, wp // 32)
        layers = [torch.empty(b, q, t, hp // 4, wp // 4, requires_grad=True) for _ in range(10)]

    def run():
        sum(predictor(features, m).float().square().mean() for m in layers).backward()

    return flops(run)


def model_flops() -> dict[str, float]:
    """Forward FLOPs of the R50 model: encoder per frame, decoder at T = 3 and 6 (random inputs, CPU)."""
    import torch

    from autoqvis import build_model, load_config

    torch.manual_seed(0)
    model = build_model(load_config("ytvis19_r50")).eval().requires_grad_(False)  # FlopCounterMode trips on leaves
    hp, wp = PADDED
    image = torch.rand(1, 3, hp, wp)
    dec = {}
    with torch.no_grad():
        enc = flops(lambda: model.sem_seg_head.pixel_decoder(model.backbone(image)))
        backbone = flops(lambda: model.backbone(image))
        for t in (3, 6):
            mask_features = torch.randn(t, 256, hp // 4, wp // 4)
            multi_scale = [torch.randn(t, 256, hp // s, wp // s) for s in (32, 16, 8)]
            dec[t] = flops(lambda: model.sem_seg_head.predictor(multi_scale, mask_features, t, score_all=False,
                                                                 score_last=False))
    return {"backbone": backbone, "encoder": enc, "dec3": dec[3], "dec6": dec[6]}


def cpu_work_per_video(frames: int = 36, tracks: int = 10) -> dict[str, float]:
    """Seconds of the host-side work of one pseudo-labelled 1280x720 video, measured here (best of 2)."""
    import numpy as np
    from PIL import Image

    import torch

    from autoqvis.core.tracks import encode_masks
    from autoqvis.engine.inference import encode_masks_on_device, pack_runs, run_boundaries
    from autoqvis.selftrain.pseudo_label import pseudo_label_video
    from bench_gpu import video_frames

    video = video_frames(2, (720, 1280))
    buf = io.BytesIO()
    Image.fromarray(video[0]).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    h, w = 720, 1280
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    masks = np.zeros((tracks, frames, h, w), dtype=bool)  # blobs drifting right, like real tracks
    for k in range(tracks):
        cy, cx, ry, rx = rng.uniform(150, 550), rng.uniform(200, 1000), rng.uniform(30, 200), rng.uniform(40, 300)
        for t in range(frames):
            masks[k, t] = (((yy - cy) / ry) ** 2 + ((xx - cx - 4 * t) / rx) ** 2) < 1
    tensor = torch.from_numpy(masks)
    boundaries = run_boundaries(tensor)  # the GPU's share of encoding (not timed)
    best = {"decode 36 JPEG frames": 1e9, "RLE packing of 10 x 36 masks": 1e9, "NMS": 1e9}
    paths = {"numpy Fortran copy + pycocotools (before)": 1e9, "bool transpose per track + pycocotools (CPU path now)": 1e9,
             "run boundaries on the device, here the CPU (GPU path, device half)": 1e9}
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(frames):
            np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        t1 = time.perf_counter()
        segs = pack_runs(*boundaries, tracks, frames, h, w)
        t2 = time.perf_counter()
        pseudo_label_video(1, {"scores": np.linspace(0.9, 0.3, tracks), "segmentations": segs,
                               "pred_iou": np.full((tracks, frames), 0.8)})
        t3 = time.perf_counter()
        for key, sec in zip(best, (t1 - t0, t2 - t1, t3 - t2)):
            best[key] = min(best[key], sec)
        for key, fn in zip(paths, (lambda: [encode_masks(m) for m in masks], lambda: encode_masks_on_device(tensor),
                                   lambda: run_boundaries(tensor))):
            t0 = time.perf_counter()
            fn()
            paths[key] = min(paths[key], time.perf_counter() - t0)
    ENCODING_PATHS.update(paths)
    return best


def project(f: dict[str, float], pred_flops: float, cpu: dict[str, float], efficiency: float,
            overhead: tuple[float, float], data_s_per_clip: float) -> list[dict]:
    """Rows (setting, part, low h, high h) of the one-H100 projection."""
    rows = []
    for precision in ("fp32", "bf16"):
        rate = pred_flops / H200[f"predictor_{precision}_s"]  # FLOP/s the H200 reached on the predictor
        fwd_clip = 3 * f["encoder"] + f["dec3"]
        dec36 = f["dec3"] + (f["dec6"] - f["dec3"]) * (36 - 3) / 3
        infer_flops = 36 * f["encoder"] + dec36
        for bound, eff, slow, over in (("low", 1.0, H100_SLOWDOWN[0], overhead[0]),
                                       ("high", efficiency, H100_SLOWDOWN[1], overhead[1])):
            gpu = lambda fl: fl / (rate * eff) * slow  # noqa: E731
            step2 = gpu(3 * 2 * fwd_clip) + slow * (H200["criterion_s"] + H200[f"predictor_{precision}_s"]) + over
            step4 = gpu(3 * 4 * fwd_clip) + slow * 2 * H200["criterion_s"] + over
            video = gpu(infer_flops) + sum(cpu.values())
            rows.append({"precision": precision, "bound": bound, "step_b2_s": step2, "step_b4_s": step4,
                         "video_s": video, "video_gpu_s": gpu(infer_flops), "rate_tflops": rate / 1e12,
                         "step_b2_workers0_s": step2 + 2 * data_s_per_clip,
                         "step_b4_workers0_s": step4 + 4 * data_s_per_clip})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--efficiency", type=float, default=0.5, help="lowest FLOP-rate ratio model / predictor")
    ap.add_argument("--step-overhead", type=float, nargs=2, default=[0.02, 0.05], help="seconds per step, low high")
    ap.add_argument("--clip-seconds", type=float, default=0.13, help="CPU seconds to make one synthetic 360p clip")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="add the projection to benchmarks/RESULTS.md (## Scale-out)")
    args = ap.parse_args()

    import torch

    from bench_gpu import schedule_hours
    from results_md import machine, write_block

    torch.set_num_threads(args.threads)
    pred = predictor_flops()
    f = model_flops()
    cpu = cpu_work_per_video()
    rows = project(f, pred, cpu, args.efficiency, tuple(args.step_overhead), args.clip_seconds)
    lines = [f"`python benchmarks/project_gpu.py {' '.join(sys.argv[1:])}` (FLOPs and host-side work measured on "
             f"{machine()}; GPU rates from the H200 measurements; see the script's docstring for every assumption).", "",
             f"FLOPs (forward, GFLOP): backbone {f['backbone'] / 1e9:.1f} and backbone + pixel decoder "
             f"{f['encoder'] / 1e9:.1f} per 384x640 frame; video decoder {f['dec3'] / 1e9:.1f} at T=3, "
             f"{f['dec6'] / 1e9:.1f} at T=6; quality predictor training workload (10 predictions, fwd+bwd, batch 2) "
             f"{pred / 1e12:.2f} TFLOP -> H200 rate {rows[0]['rate_tflops']:.0f} TFLOP/s fp32/TF32, "
             f"{rows[2]['rate_tflops']:.0f} TFLOP/s bf16.",
             "Host-side work per 36-frame 1280x720 video, measured here: "
             + ", ".join(f"{k} {v:.3f} s" for k, v in cpu.items()) + ". Encoding the same 10 x 36 masks on this "
             "CPU: " + ", ".join(f"{k} {v:.3f} s" for k, v in ENCODING_PATHS.items()) + ".", "",
             "| precision | bound | s/iter batch 2 (initial) | s/iter batch 4 (rounds) | s/video (GPU part) | "
             "initial stage h | rounds h | pseudo-labelling h | total h | total h, num_workers 0 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h = schedule_hours(r["step_b2_s"], r["step_b4_s"], r["video_s"])
        h0 = schedule_hours(r["step_b2_workers0_s"], r["step_b4_workers0_s"], r["video_s"])
        lines.append(f"| {r['precision']} | {r['bound']} | {r['step_b2_s']:.3f} | {r['step_b4_s']:.3f} | "
                     f"{r['video_s']:.2f} ({r['video_gpu_s']:.2f}) | {h['initial stage']:.2f} | "
                     f"{h['rounds (training)']:.2f} | {h['pseudo-labelling']:.2f} | **{h['total']:.2f}** | {h0['total']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_block("Scale-out", "project_gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
