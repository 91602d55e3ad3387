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
        from autoqvis.config import load_config
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
