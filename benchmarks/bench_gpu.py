"""Fast-path benchmark of the paper's R50 model on one device, and the paper schedule's wall-clock on it.

    python benchmarks/bench_gpu.py                      # on a GPU: every switch, the paper's sizes (~5 min on an H100)
    python benchmarks/bench_gpu.py --device cpu --frames 6 --train-batches 1 --switches fp32 channels_last
    python benchmarks/bench_gpu.py --quick              # toy config, seconds (what `make bench` runs)
See also benchmarks/profile_model.py (where the time goes) and benchmarks/project_gpu.py (the one-H100 projection
from FLOP counts and earlier H200 measurements, for when no GPU is at hand).

Measurements (each (mode, switch) in a fresh process, so its peak memory is its own):
  infer   one video of --frames frames at 1280x720 (YouTubeVIS' size) through ``predict_clip_rle``: test resize to
          360x640, model, top-10 masks back at 1280x720, RLE encoding (what pseudo-labelling does per video);
          reports frames/s of the model and seconds per 36-frame video including encoding (videos/min).
  train   one iteration (forward_train + backward + grad clip + AdamW) on B clips of 3x360x640 with 3 objects:
          B = 2 with the quality predictor trained (initial stage) and B = 4 with it frozen (self-training rounds).
Switches: fp32; bf16 (autocast, GPU only); channels_last (backbone); compile (torch.compile of backbone + pixel
decoder); all. Prints a markdown table, then the projected wall-clock of the paper's schedule from the measured
rates: initial stage 8,000 iterations at batch 2, 2 rounds of 10,000 at batch 4, and 3 pseudo-labelling passes
over YouTubeVIS-2019 train (2,238 videos, taken as 36 frames each: an upper bound). ``--write`` adds the table to
benchmarks/RESULTS.md ("## Scale-out"). Weights are random unless --checkpoint is given: speed does not depend on
them, except the RLE sizes (random weights give blobby masks, about like real ones).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

SWITCHES = {  # name -> train.amp, bf16 test passes (inference.amp_dtype), runtime.channels_last, runtime.compile
    "fp32": {"amp": False, "bf16_inference": False, "channels_last": False, "compile": False},
    "bf16": {"amp": True, "bf16_inference": True, "channels_last": False, "compile": False},
    "channels_last": {"amp": False, "bf16_inference": False, "channels_last": True, "compile": False},
    "compile": {"amp": False, "bf16_inference": False, "channels_last": False, "compile": True},
    "all": {"amp": True, "bf16_inference": True, "channels_last": True, "compile": True},
}
VIDEO_HW = (720, 1280)  # YouTubeVIS-2019 frames; the test resize brings them to 360x640
CLIP_HW = (360, 640)  # training clips at the paper's smallest training scale
# the paper's schedule (AutoQ-VIS Sec. 4) and YouTubeVIS-2019 train
SCHEDULE = {"init_iters": 8000, "init_batch": 2, "rounds": 2, "round_iters": 10000, "round_batch": 4,
            "label_passes": 3, "videos": 2238, "frames": 36}


# ------------------------------------------------------------------------------------------ inputs
def video_frames(num: int, hw: tuple[int, int], seed: int = 0):
    """uint8 (T, H, W, 3): smooth random colour fields with a few moving discs (JPEG-like content)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = (rng.random((4, 4, 3)) * 255).astype(np.float32)
    base = np.kron(base, np.ones((h // 4 + 1, w // 4 + 1, 1), np.float32))[:h, :w]
    frames = np.repeat(base[None], num, axis=0)
    for i in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.05, 0.2) * h
        colour = rng.random(3) * 255
        for t in range(num):
            disc = (yy - cy) ** 2 + (xx - cx - 4 * t) ** 2 < r * r
            frames[t][disc] = colour
    return frames.astype(np.uint8)


def train_sample(seed: int, hw: tuple[int, int] = CLIP_HW, frames: int = 3) -> dict:
    """A training sample: 3 box-shaped objects moving right (sample dict of docs/CONTRACTS.md)."""
    import torch

    h, w = hw
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(3, frames, h, w, dtype=torch.bool)
    for i in range(3):
        for t in range(frames):
            y0, x0 = h // 8 + i * h // 4, w // 8 + t * w // 32
            masks[i, t, y0:y0 + h // 5, x0:x0 + w // 4] = True
    return {"frames": torch.rand(frames, 3, h, w, generator=g) * 255, "masks": masks,
            "labels": torch.zeros(3, dtype=torch.int64), "source": "synthetic"}


# --------------------------------------------------------------------------------------- measuring
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak(device) -> dict:
    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def build(config: str, switch: str, device, stage: str = "initial", checkpoint: str | None = None):
    """(model on device, its config) with the switch's train.* / runtime.* values; ``stage`` "round" = round_config."""
    import torch

    from autoqvis import build_model, load_checkpoint, load_config
    from autoqvis.selftrain.loop import round_config

    values = SWITCHES[switch]
    # the names promise float32 or bf16: pin both autocast dtypes (the presets' are float16)
    overrides = [f"train.amp={str(values['amp']).lower()}"]
    overrides += [f"runtime.{k}={str(values[k]).lower()}" for k in ("channels_last", "compile")]
    overrides += ["train.amp_dtype=bfloat16", f"inference.amp_dtype={'bfloat16' if values['bf16_inference'] else 'none'}"]
    cfg = load_config(config, overrides)
    if stage == "round":
        cfg = round_config(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model.to(device), cfg


def measure_infer(config: str, switch: str, device, frames: int, repeat: int, checkpoint: str | None) -> dict:
    """Seconds per video of ``frames`` frames: the model (synchronised), then the RLE encoding of its masks
    the way ``predict_clip_rle`` does it (``encode_masks_on_device``), and the former way (numpy's Fortran copy)."""
    import torch

    from autoqvis.core.tracks import encode_masks
    from autoqvis.engine.inference import _run_model, encode_masks_on_device, predict_clip_rle

    model, cfg = build(config, switch, device, checkpoint=checkpoint)
    model.eval()
    video = video_frames(frames, VIDEO_HW if config != "toy" else (180, 320))
    start = time.perf_counter()
    predict_clip_rle(model, video, cfg)  # warm-up (and compilation)
    warm = time.perf_counter() - start
    model_s, encode_s, numpy_s = [], [], []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = _run_model(model, video, cfg)
        _sync(device)
        t1 = time.perf_counter()
        segs = encode_masks_on_device(out["masks"])
        t2 = time.perf_counter()
        dense = out["masks"].cpu().numpy()
        assert [encode_masks(m) for m in dense] == segs
        model_s.append(t1 - t0)
        encode_s.append(t2 - t1)
        numpy_s.append(time.perf_counter() - t2)
    m = min(model_s)
    return {"mode": "infer", "frames": frames, "model_s": round(m, 3), "encode_s": round(min(encode_s), 3),
            "encode_numpy_s": round(min(numpy_s), 3), "frames_per_s": round(frames / m, 2), "warmup_s": round(warm, 1)}


def measure_train(config: str, switch: str, device, batch: int, stage: str, repeat: int) -> dict:
    """Seconds per training iteration at ``batch`` clips (the trainer's step: autocast, clip, AdamW)."""
    import torch

    from autoqvis.engine import fast_path
    from autoqvis.engine.trainer import build_optimizer, freeze_quality_predictor

    model, cfg = build(config, switch, device, stage)
    if cfg.train.freeze_quality_predictor:
        freeze_quality_predictor(model)
    fast_path.prepare(model, cfg.runtime)
    model.train()
    optimizer = build_optimizer(model, cfg.train)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    hw = CLIP_HW if config != "toy" else (96, 128)
    samples = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in train_sample(i, hw).items()}
               for i in range(batch)]
    use_amp = cfg.train.amp and device.type == "cuda"

    def step() -> None:
        with fast_path.autocast(device, use_amp):
            losses = model.forward_train(samples)
        optimizer.zero_grad(set_to_none=True)
        sum(v.float() for v in losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm)
        optimizer.step()

    start = time.perf_counter()
    step()  # warm-up (and compilation)
    _sync(device)
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    sec = min(times)
    return {"mode": f"train_b{batch}", "stage": stage, "batch": batch, "sec_per_iter": round(sec, 3),
            "iters_per_s": round(1 / sec, 3), "warmup_s": round(warm, 1)}


def child(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.mode == "infer":
        res = measure_infer(args.config, args.switch, device, args.frames, args.repeat, args.checkpoint)
    else:
        batch = int(args.mode.split("_b")[1])
        res = measure_train(args.config, args.switch, device, batch, "initial" if batch <= 2 else "round", args.repeat)
    return {"config": args.config, "switch": args.switch, "device": args.device,
            "threads": torch.get_num_threads(), **res, **_peak(device)}


# -------------------------------------------------------------------------------------- projection
def video_seconds(row: dict, frames: int = SCHEDULE["frames"]) -> float:
    """Seconds per ``frames``-frame video from an infer row (model time scales with frames, so does encoding)."""
    return (row["model_s"] + row["encode_s"]) * frames / row["frames"]


def schedule_hours(t_b2: float, t_b4: float, t_video: float, s: dict = SCHEDULE) -> dict:
    """Hours of each part of the paper's schedule from seconds per iteration / per video."""
    parts = {"initial stage": s["init_iters"] * t_b2,
             "rounds (training)": s["rounds"] * s["round_iters"] * t_b4,
             "pseudo-labelling": s["label_passes"] * s["videos"] * t_video}
    hours = {k: v / 3600 for k, v in parts.items()}
    hours["total"] = sum(hours.values())
    return hours


def table(rows: list[dict]) -> str:
    lines = ["| config | switch | device | mode | batch / frames | time | rate | warm-up s | peak RSS MB | peak GPU MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['switch']} | {r['device']} | {r['mode']} | – | failed: {r['error']} | | | | |")
        elif r["mode"] == "infer":
            lines.append(f"| {r['config']} | {r['switch']} | {r['device']} ({r['threads']} thr) | infer | {r['frames']} frames | "
                         f"model {r['model_s']} s + encode {r['encode_s']} s (numpy path {r['encode_numpy_s']} s) | "
                         f"{r['frames_per_s']} frames/s, "
                         f"{60 / video_seconds(r):.2f} videos/min (36 fr) | {r['warmup_s']} | {r['peak_rss_mb']} | "
                         f"{r.get('peak_gpu_mb', '–')} |")
        else:
            lines.append(f"| {r['config']} | {r['switch']} | {r['device']} ({r['threads']} thr) | train ({r['stage']}) | "
                         f"{r['batch']} clips | {r['sec_per_iter']} s/iter | {r['iters_per_s']} iters/s | {r['warmup_s']} | "
                         f"{r['peak_rss_mb']} | {r.get('peak_gpu_mb', '–')} |")
    return "\n".join(lines)


def projection_lines(rows: list[dict]) -> list[str]:
    """The schedule's hours for each switch with infer, train_b2 and train_b4 rows all measured."""
    out = []
    for switch in SWITCHES:
        got = {r["mode"]: r for r in rows if r["switch"] == switch and "error" not in r}
        if {"infer", "train_b2", "train_b4"} <= set(got):
            h = schedule_hours(got["train_b2"]["sec_per_iter"], got["train_b4"]["sec_per_iter"],
                               video_seconds(got["infer"]))
            out.append(f"- {switch}: " + ", ".join(f"{k} {v:.2f} h" for k, v in h.items()))
    return out


# ------------------------------------------------------------------------------------------- main
def run_children(args: argparse.Namespace) -> list[dict]:
    rows = []
    for mode in args.modes:
        for switch in args.switches:
            if switch in ("bf16", "all") and args.device == "cpu":
                continue  # autocast is CUDA-only here (CPU bf16 without AMX is slower than fp32)
            cmd = [sys.executable, __file__, "--child", "--mode", mode, "--switch", switch, "--config", args.config,
                   "--device", args.device, "--frames", str(args.frames), "--repeat", str(args.repeat),
                   "--threads", str(args.threads)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
                row = {"config": args.config, "switch": switch, "device": args.device, "mode": mode, "error": err}
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--config", default="ytvis19_r50")
    ap.add_argument("--modes", nargs="+", default=None, help="infer train_b2 train_b4 (default: all; CPU: infer train_b1)")
    ap.add_argument("--switches", nargs="+", default=list(SWITCHES), choices=list(SWITCHES))
    ap.add_argument("--frames", type=int, default=36, help="frames of the inference video")
    ap.add_argument("--train-batches", type=int, nargs="+", default=None, help="train batch sizes (default 2 4)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (the best is kept)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--checkpoint", help="weights to load (default: random)")
    ap.add_argument("--quick", action="store_true", help="toy config, small inputs, fp32 + channels_last (seconds)")
    ap.add_argument("--write", action="store_true", help="add the table to benchmarks/RESULTS.md (## Scale-out)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--switch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.quick:
        args.config, args.frames, args.repeat = "toy", 4, 1
        args.switches = [s for s in args.switches if s in ("fp32", "channels_last")]
        args.train_batches = args.train_batches or [2]
    batches = args.train_batches or ([1] if args.device == "cpu" else [2, 4])
    args.modes = args.modes or ["infer", *(f"train_b{b}" for b in batches)]
    rows = run_children(args)
    from results_md import machine, write_block

    text = (f"`python benchmarks/bench_gpu.py {' '.join(sys.argv[1:])}` on {machine()}:\n\n{table(rows)}\n")
    lines = projection_lines(rows)
    if lines:
        text += "\nPaper schedule on this device, from these rates (36-frame videos, no validation):\n" + "\n".join(lines) + "\n"
    print("\n" + text)
    if args.write:
        write_block("Scale-out", f"bench_gpu:{args.device}:{args.config}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
