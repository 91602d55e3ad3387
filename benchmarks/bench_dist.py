"""Scale-out on this machine: the toy world with 1 and N processes under torchrun (gloo on CPU, NCCL on GPUs).

    python benchmarks/bench_dist.py [--nproc 2] [--iters 40] [--write]
    python benchmarks/bench_dist.py --quick                # the small world, a few iterations (make bench)

Measures, each as a real command line (``python -m torch.distributed.run --standalone --nproc_per_node N -m
autoqvis ...``; plain ``python -m autoqvis`` for N = 1), one torch thread per process:
  train          ``autoqvis train --config toy`` for --iters iterations: seconds per iteration from log.jsonl
                 (start-up excluded), clips per second (N x train.batch_size clips per iteration);
  pseudo-label   round 0 of ``autoqvis selftrain --init <shipped toy model> --rounds 0`` over the world's unlabeled
                 videos: whole-command wall seconds, videos per minute once started (the wall time of the same
                 command with --max-videos 1 is taken as start-up), and whether the pseudo-label file of N processes
                 equals the one-process file byte for byte.
Prints a table; ``--write`` puts it in benchmarks/RESULTS.md ("## Scale-out").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
TOY_INIT = HERE.parent / "src" / "autoqvis" / "assets" / "toy_init.pt"


def autoqvis(args: list[str], cwd: Path, nproc: int) -> float:
    """Run ``autoqvis ARGS`` in ``nproc`` processes; returns wall seconds (raises on failure)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent / "src")}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else []
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *launcher, "-m", "autoqvis", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"autoqvis {' '.join(args)} ({nproc} processes) failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def bench_train(work: Path, nproc: int, iters: int) -> dict:
    out = work / f"train_{nproc}"
    shutil.rmtree(out, ignore_errors=True)
    wall = autoqvis(["train", "--config", "toy", "--synthetic", "world/source.json", "--out", out.name,
                     "--max-iters", str(iters), "--no-progress", "train.log_period=1", f"train.checkpoint_period={iters}"],
                    work, nproc)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # from the end of iteration 1 to the last: start-up and the first (warm-up) iteration excluded
    sec = (log[-1]["elapsed"] - log[0]["elapsed"]) / max(log[-1]["iteration"] - log[0]["iteration"], 1)
    from autoqvis import load_config

    batch = load_config("toy").train.batch_size
    return {"what": "train", "nproc": nproc, "wall_s": round(wall, 1), "sec_per_iter": round(sec, 3),
            "clips_per_s": round(nproc * batch / sec, 2), "iters": iters}


def bench_label(work: Path, nproc: int) -> dict:
    """The whole round 0; and the same with --max-videos 1, whose wall time stands for the start-up."""
    walls = {}
    for name, extra in (("all", []), ("one", ["--max-videos", "1"])):
        out = work / f"label_{nproc}" if name == "all" else work / f"label_{nproc}_one"
        shutil.rmtree(out, ignore_errors=True)
        walls[name] = autoqvis(["selftrain", "--config", "toy", "--synthetic", "world/source.json", "--unlabeled",
                                "world/train.json", "--init", str(TOY_INIT), "--out", out.name, "--rounds", "0",
                                "--tau", "0.5", "--no-progress", *extra], work, nproc)
    videos = len(json.loads((work / "world" / "train.json").read_text())["videos"])
    labelling = max(walls["all"] - walls["one"], 1e-3)
    return {"what": "pseudo-label", "nproc": nproc, "wall_s": round(walls["all"], 1), "videos": videos,
            "startup_s": round(walls["one"], 1), "videos_per_min": round(60 * (videos - 1) / labelling, 1)}


def same_labels(work: Path, nproc: int) -> bool:
    files = ("detections.jsonl", "pseudo_labels.json", "stats.json")
    return all((work / "label_1" / "round_0" / f).read_bytes() == (work / f"label_{nproc}" / "round_0" / f).read_bytes()
               for f in files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2, help="processes of the scaled runs (compared with 1)")
    ap.add_argument("--iters", type=int, default=40, help="training iterations per run")
    ap.add_argument("--quick", action="store_true", help="small world, 6 iterations")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "autoqvis_bench_dist")
    ap.add_argument("--write", action="store_true", help="put the table in benchmarks/RESULTS.md (## Scale-out)")
    args = ap.parse_args()
    from autoqvis.data.toyworld import write_toyworld
    from results_md import machine, write_block

    size = "small" if args.quick else "default"
    iters = 6 if args.quick else args.iters
    work = args.work / size
    if not (work / "world" / "train.json").is_file():
        write_toyworld(work / "world", size=size, seed=0)
    rows = []
    for nproc in (1, args.nproc):
        rows.append(bench_train(work, nproc, iters))
        print(json.dumps(rows[-1]), flush=True)
        rows.append(bench_label(work, nproc))
        print(json.dumps(rows[-1]), flush=True)
    identical = same_labels(work, args.nproc)
    load = os.getloadavg()[0]
    lines = [f"`python benchmarks/bench_dist.py {' '.join(sys.argv[1:])}` on {machine()}; toy world `{size}`, "
             f"1 torch thread per process, load average {load:.1f} at the end.", "",
             "| command | processes | wall s (whole command) | rate |", "|---|---|---|---|"]
    for r in rows:
        if r["what"] == "train":
            rate = f"{r['sec_per_iter']} s/iter, {r['clips_per_s']} clips/s ({r['iters']} iterations)"
        else:
            rate = (f"{r['videos_per_min']} videos/min ({r['videos']} videos; start-up + 1 video = "
                    f"{r['startup_s']} s excluded)")
        lines.append(f"| {r['what']} | {r['nproc']} | {r['wall_s']} | {rate} |")
    lines += ["", f"Pseudo-label files (detections.jsonl, pseudo_labels.json, stats.json) of {args.nproc} processes "
                  f"identical to one process's: {'yes' if identical else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.write:
        write_block("Scale-out", f"bench_dist:{size}", text)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
