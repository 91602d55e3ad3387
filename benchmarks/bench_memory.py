"""Peak memory of pseudo-labelling as the number of videos grows (issue 7: it must stay flat).

    .venv/bin/python benchmarks/bench_memory.py [--videos 20 200] [--frames 12] [--size 240 320] [--control]

For each count N, a toy world with N unlabeled train videos (``autoqvis.data.toyworld``, seed 0, frames H x W)
of T frames is labelled by round 0 of ``autoqvis selftrain --init <shipped toy model> --rounds 0 --tau 0.5`` -- the
streamed pseudo-labelling, selection, fusion and the writing of ``pseudo_labels.json`` -- in a fresh process,
whose peak RSS (``getrusage`` maxrss) is reported. Masks come back at the original size, so one video's dense
prediction is ``test_topk x T x H x W`` bools (10 x 12 x 240 x 320 = 9 MB): holding them would show at once.

``--control`` also runs, per N, a collect-then-write labeller (the same model's dense predictions of every video
kept in a list): the measurement must see that one grow, or it could not see a leak either.
``child`` is the measured process (the parent runs it; it prints one json line).

R50 ``autoqvis predict`` (issue 19): peak RSS of a fresh process segmenting one synthetic 360x640 video of T
frames (a frames folder) with the paper's R50 config and seeded random weights, on CPU:

    .venv/bin/python benchmarks/bench_memory.py r50 --frames 36 300 [--window 0|N] [--threads 2] [--src DIR]

``--window 0``: the CLI's default (one pass up to 100 frames, windows of 36 above); ``--src``: run the autoqvis
of another source tree (e.g. an older commit) instead, for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

INIT = Path(__file__).resolve().parents[1] / "src" / "autoqvis" / "assets" / "toy_init.pt"


def make_world(root: Path, num_videos: int, num_frames: int, height: int, width: int) -> Path:
    """A toy world with ``num_videos`` train videos of T frames of H x W (tiny other splits); returns it (reused).

    Every video has the same length: the transient peak of one video grows with T, and with random lengths the
    longest video of a bigger set would raise the peak without anything being held."""
    from autoqvis.data.toyworld import toyworld_config, write_toyworld

    if not (root / "train.json").exists():
        cfg = toyworld_config(num_train_videos=num_videos, num_val_videos=1, num_stills=2, video_size=[height, width],
                              num_frames=[num_frames, num_frames])
        write_toyworld(root, cfg, seed=0)
    return root


def selftrain_args(world: Path, out: Path, max_videos: int | None = None) -> list[str]:
    """Round 0 of self-training from the shipped toy model: pseudo-label, select, fuse, write."""
    first = ["--max-videos", str(max_videos)] if max_videos else []
    return ["selftrain", *first, "--config", "toy", "--synthetic", str(world / "source.json"), "--unlabeled",
            str(world / "train.json"), "--init", str(INIT), "--out", str(out), "--rounds", "0", "--tau", "0.5",
            "--no-progress"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(world: Path, out: Path, mode: str, max_videos: int | None = None) -> dict:
    """``selftrain``: the CLI's round 0 into ``out``; ``hold``: every video's dense prediction kept in a list.
    max_videos: only the first N videos of the world."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if mode == "selftrain":
        from autoqvis.cli import main

        if main(selftrain_args(world, out, max_videos)) != 0:
            raise RuntimeError("autoqvis selftrain failed")
        stats = json.loads((out / "round_0" / "stats.json").read_text())
        tracks, kept = stats["tracks_after_nms"], stats["training_set"]["tracks"]
    else:
        from autoqvis import load_checkpoint
        from autoqvis.core.config import load_config
        from autoqvis.data.ytvis import load_ytvis
        from autoqvis.engine.inference import predict_video
        from autoqvis.model.vis_model import build_model

        cfg = load_config("toy")
        model = build_model(cfg)
        load_checkpoint(model, INIT)
        data = load_ytvis(world / "train.json")
        held = [predict_video(model.eval(), (data.read_frame(v, t) for t in range(v.length)), cfg)
                for v in data.videos[: max_videos or None]]
        tracks, kept = sum(len(p["scores"]) for p in held), 0
    num_videos = len(json.loads((world / "train.json").read_text())["videos"][: max_videos or None])
    return {"mode": mode, "videos": num_videos, "tracks": tracks, "pseudo_labels": kept,
            "seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


def measure(world: Path, out: Path, mode: str = "selftrain", max_videos: int | None = None) -> dict:
    """Run :func:`child` in a fresh process (its peak RSS is this run's alone); returns its json line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "child", str(world), str(out), mode, str(max_videos or 0)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_r50_inputs(work: Path, num_frames: int) -> tuple[Path, Path]:
    """(frames folder of ``num_frames`` 360x640 jpgs: noise + three moving boxes, R50 checkpoint with seeded
    random weights), reused when present."""
    import numpy as np
    import torch
    from PIL import Image

    frames = work / f"frames_r50_t{num_frames}"
    if not (frames / f"{num_frames - 1:05d}.jpg").exists():
        frames.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for t in range(num_frames):
            img = rng.integers(60, 120, size=(360, 640, 3), dtype=np.uint8)
            for i in range(3):
                y, x = 40 + 100 * i, (20 + 4 * t + 150 * i) % 520
                img[y:y + 80, x:x + 110] = (200, 60 + 60 * i, 40)
            Image.fromarray(img).save(frames / f"{t:05d}.jpg", quality=90)
    ckpt = work / "r50_random.pt"
    if not ckpt.exists():
        from autoqvis import build_model, load_config

        torch.manual_seed(0)
        model = build_model(load_config("ytvis19_r50"))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=g))
        torch.save({"model": model.state_dict()}, ckpt)
    return frames, ckpt


def r50_child(frames: str, ckpt: str, out: str, window: int) -> dict:
    from autoqvis.cli import main as cli

    t0 = time.perf_counter()
    args = ["predict", "--checkpoint", ckpt, "--config", "ytvis19_r50", "--input", frames, "--out", out,
            "--no-overlays", "--device", "cpu"] + (["--window", str(window)] if window else [])
    if cli(args) != 0:
        raise RuntimeError("autoqvis predict failed")
    tracks = len(json.loads((Path(out) / "results.json").read_text()))
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb(), "tracks": tracks}


def r50_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="peak RSS of R50 autoqvis predict on CPU")
    p.add_argument("--frames", type=int, nargs="+", default=[36, 300])
    p.add_argument("--window", type=int, default=0, help="--window of predict (0: its default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--src", default=None, help="an autoqvis source tree to run instead of this one")
    p.add_argument("--work", default="/tmp/autoqvis_bench_memory")
    args = p.parse_args(argv)
    work = Path(args.work)
    for t in args.frames:
        frames, ckpt = make_r50_inputs(work, t)
        out = work / f"r50_out_t{t}_{time.time_ns()}"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
        if args.src:
            env["PYTHONPATH"] = args.src + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, __file__, "r50-child", str(frames), str(ckpt), str(out), str(args.window)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench_memory r50 child failed:\n{done.stderr[-3000:]}")
        row = {"frames": t, "window": args.window, "threads": args.threads, "src": args.src or "this tree",
               "load": round(os.getloadavg()[0], 1), **json.loads(done.stdout.strip().splitlines()[-1])}
        print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["r50"]:
        return r50_main(argv[1:])
    if argv[:1] == ["r50-child"]:
        print(json.dumps(r50_child(argv[1], argv[2], argv[3], int(argv[4]))))
        return 0
    if argv[:1] == ["child"]:
        print(json.dumps(child(Path(argv[1]), Path(argv[2]), argv[3], int(argv[4]) or None)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, nargs="+", default=[20, 200])
    p.add_argument("--frames", type=int, default=12, help="frames per video")
    p.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"), help="frame size")
    p.add_argument("--control", action="store_true", help="also measure collect-then-write (dense masks held)")
    p.add_argument("--work", default="/tmp/autoqvis_bench_memory", help="scratch folder (worlds are reused)")
    args = p.parse_args(argv)
    rows = []
    for n in args.videos:
        tag = f"n{n}_t{args.frames}_{args.size[0]}x{args.size[1]}"
        world = make_world(Path(args.work) / f"world_{tag}", n, args.frames, *args.size)
        out = Path(args.work) / f"run_{tag}_{time.time_ns()}"
        rows.append(measure(world, out))
        if args.control:
            rows.append(measure(world, out, "hold"))
    print(f"{'mode':9} {'videos':>6} {'tracks':>6} {'labels':>6} {'seconds':>8} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['mode']:9} {r['videos']:6d} {r['tracks']:6d} {r['pseudo_labels']:6d} {r['seconds']:8.1f} "
              f"{r['peak_rss_mb']:11.1f}")
    for mode in ("selftrain", "hold"):
        sel = [r for r in rows if r["mode"] == mode]
        if len(sel) >= 2:
            lo, hi = sel[0], sel[-1]
            print(f"{mode}: peak RSS at {hi['videos']} vs {lo['videos']} videos: "
                  f"{hi['peak_rss_mb'] / lo['peak_rss_mb'] - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
