"""Time `autoqvis toyworld` and describe the world it writes (numbers for benchmarks/RESULTS.md).

    python benchmarks/bench_toyworld.py [--size default] [--seed 0] [--repeats 3] [--out /tmp/bench_toyworld]

Prints wall and CPU seconds per generation (one process, one core), peak resident memory, size on disk,
the realised pseudo-mask imperfection rates and statistics of the target videos (track lengths, null
frames from entering/leaving, occlusion, motion).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from autoqvis.data.toyworld import iter_videos, toyworld_config, write_toyworld


def video_statistics(size: str, seed: int) -> dict[str, float]:
    """Statistics of the val videos, from the generator (same pixels as on disk)."""
    cfg = toyworld_config(size)
    tracks = frames = null = out_of_frame = occluded = present = 0
    areas, travel = [], []
    for video in iter_videos(cfg, seed, "val"):
        frames += len(video.frames)
        vis, whole = video.masks.sum((2, 3)), video.amodal.sum((2, 3))  # (N, T)
        tracks += len(vis)
        null += int((vis == 0).sum())
        out_of_frame += int((whole == 0).sum())
        present += int((vis > 0).sum())
        occluded += int(((whole - vis > 0.3 * whole) & (vis > 0)).sum())
        areas += vis[vis > 0].tolist()
        for track in video.masks:
            ys, xs = np.nonzero(track.any(0))
            travel.append(float(np.ptp(xs) + np.ptp(ys)) / 2)
    return {
        "val_videos": cfg.num_val_videos, "frames": frames, "tracks": tracks,
        "tracks_per_video": round(tracks / cfg.num_val_videos, 2),
        "null_frame_fraction": round(null / (tracks * frames / cfg.num_val_videos), 3),
        "out_of_frame_fraction": round(out_of_frame / (tracks * frames / cfg.num_val_videos), 3),
        "occluded_gt30pct_fraction": round(occluded / present, 3),
        "median_area_px": float(np.median(areas)),
        "median_swept_extent_px": float(np.median(travel)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default", choices=["small", "default"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="/tmp/bench_toyworld")
    args = ap.parse_args()
    out = Path(args.out)
    seconds, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        paths = write_toyworld(out, seed=args.seed, size=args.size, overwrite=True)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info = json.loads(paths["source.json"].read_text())["info"]["pseudo_masks"]
    print(f"toyworld --size {args.size} --seed {args.seed}: {min(seconds):.2f} s best, "
          f"{np.mean(seconds):.2f} s mean of {args.repeats} (CPU time {min(cpu):.2f} s); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; {disk / 2**20:.1f} MB on disk")
    print("pseudo-masks:", json.dumps({"counts": info["counts"], "realised": info["realised"]}))
    print("val videos:", json.dumps(video_statistics(args.size, args.seed)))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
