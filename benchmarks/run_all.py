"""Run every benchmark in its quick mode (``make bench``): a smoke run that each one still works end to end.

    python benchmarks/run_all.py [--only NAME ...] [--list]

Quick modes use the toy config or small inputs and never rewrite benchmarks/RESULTS.md; the full commands behind
each RESULTS.md section are named in that section. Prints one line per benchmark (status, wall seconds) and exits
non-zero when any failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRATCH = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "autoqvis_bench_quick"

# name -> arguments of benchmarks/<name>.py for a quick run
QUICK: dict[str, list[str]] = {
    "bench_toyworld": ["--size", "small", "--repeats", "1", "--out", str(SCRATCH / "toyworld")],
    "bench_synth": ["--clips", "4"],
    "bench_model": ["--configs", "toy", "--iters", "1"],
    "bench_criterion": ["--size", "toy", "--repeat", "1"],
    "bench_eval": ["--videos", "12", "--skip-official", "--repeats", "1", "--no-stages", "--no-write",
                   "--data", str(SCRATCH / "eval")],
    "bench_predict": ["--frames", "12", "--window", "8", "--overlap", "2", "--no-write"],
    "bench_memory": ["--videos", "2", "4", "--frames", "4", "--size", "64", "96", "--work", str(SCRATCH / "memory")],
    "bench_train": ["--world", str(SCRATCH / "train_world"), "--out", str(SCRATCH / "train"),
                    "--variant", "quick", "train.max_iter=4", "train.checkpoint_period=4", "--no-baselines",
                    "--cores-per-run", "1"],
    "bench_selftrain": ["--seeds", "0", "--init-iters", "2", "--round-iters", "2", "--rounds", "1", "--jobs", "2",
                        "--variants", "full", "synthetic_control", "theoretical_partial", "--no-write",
                        "--work", str(SCRATCH / "selftrain"), "--world-args", "num_stills=12", "num_train_videos=3",
                        "num_val_videos=3", "still_size=[64,64]", "video_size=[64,96]", "num_frames=[5,7]",
                        "--overrides", "input.min_size_train=[64]", "input.max_size_train=96", "input.min_size_test=64",
                        "input.max_size_test=96", "synth.min_size=[64]", "synth.max_size=96", "train.batch_size=2",
                        "selftrain.batch_size=2", "selftrain.tau=0.0", "selftrain.score_threshold=0.0"],
    "bench_selftrain_e2e": ["--size", "small", "--work", str(SCRATCH / "e2e"), "train.max_iter=3", "selftrain.max_iter=3"],
    "bench_gpu": ["--quick"],
    "bench_dist": ["--quick", "--work", str(SCRATCH / "dist")],
    "profile_model": ["--config", "toy", "--train-batch", "1"],
}


# outputs a benchmark refuses to overwrite: removed before its quick run
FRESH = {"bench_train": [SCRATCH / "train"], "bench_selftrain": [SCRATCH / "selftrain"]}


def run(name: str, args: list[str]) -> tuple[bool, float, str]:
    for folder in FRESH.get(name, []):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True, env=env)
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
    return proc.returncode == 0, time.perf_counter() - start, tail[0][:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(QUICK), help="run only these")
    ap.add_argument("--list", action="store_true", help="print the quick commands and exit")
    args = ap.parse_args()
    names = args.only or list(QUICK)
    if args.list:
        for name in names:
            print(f"python benchmarks/{name}.py {' '.join(QUICK[name])}")
        return 0
    SCRATCH.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        ok, sec, tail = run(name, QUICK[name])
        print(f"{'ok  ' if ok else 'FAIL'} {name:16s} {sec:7.1f} s" + ("" if ok else f"   {tail}"), flush=True)
        if not ok:
            failed.append(name)
    print(f"{len(names) - len(failed)}/{len(names)} benchmarks ran" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
