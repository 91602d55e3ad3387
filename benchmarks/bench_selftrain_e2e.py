"""Wall clock of the toy self-training path end to end (issue 4: "initial stage plus 2 rounds in under 15 minutes").

    .venv/bin/python benchmarks/bench_selftrain_e2e.py [--size default] [--write] [-- key=value ...]

Generates ``autoqvis toyworld --seed 0`` (48 unlabeled / 24 val videos by default) and runs, as a user would,
``autoqvis selftrain --config toy`` *without* ``--init``: the initial stage (train.max_iter iterations on the
stills' synthetic clips), round 0's pseudo-labels, then selftrain.rounds rounds (selftrain.max_iter iterations,
pseudo-labelling the unlabeled videos and evaluating on val each round). Prints each stage's wall seconds (from
the time its output file appeared), the total and the peak RSS. Run it alone on the machine: it times wall clock.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import cpu_name, write_block  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default", help="toy world size (default | small)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "bench_e2e")
    ap.add_argument("--write", action="store_true", help="record the table in benchmarks/RESULTS.md")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for selftrain")
    args = ap.parse_args()
    py = [sys.executable, "-m", "autoqvis"]
    world, out = args.work / f"world_{args.size}", args.work / "run"
    if not (world / "val.json").exists():
        subprocess.run([*py, "toyworld", "--out", str(world), "--seed", "0", "--size", args.size], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*py, "selftrain", "--config", "toy", "--synthetic", str(world / "source.json"),
           "--unlabeled", str(world / "train.json"), "--unlabeled-gt", str(world / "train_gt.json"),
           "--val", str(world / "val.json"), "--out", str(out), "--no-progress", *args.overrides]
    load = os.getloadavg()[0]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    total = time.time() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    marks = [("initial stage (training)", out / "init" / "model_final.pt")]
    k = 0
    while (out / f"round_{k}").is_dir():
        done = out / f"round_{k}" / "metrics.json"
        marks.append((f"round {k} (" + ("labelling + val" if k == 0 else "training + labelling + val") + ")",
                      done if done.exists() else out / f"round_{k}" / "stats.json"))
        k += 1
    rows, prev = [], t0
    for name, path in marks:
        if path.exists():
            t = path.stat().st_mtime
            rows.append((name, t - prev))
            prev = t
    lines = ["| stage | wall s |", "|---|---|", *(f"| {n} | {s:.0f} |" for n, s in rows),
             f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |"]
    print("\n".join(lines))
    print(f"peak RSS {rss_mb:.0f} MB, torch threads: default, load before {load:.2f}")
    if args.write:
        block = "\n".join([
            f"`{' '.join(['python benchmarks/bench_selftrain_e2e.py', '--size', args.size, '--write', *args.overrides])}`: "
            f"`autoqvis selftrain --config toy` without `--init` on `autoqvis toyworld --seed 0` ({args.size} size), "
            f"{cpu_name()}, alone on the machine (load {load:.2f} before the start), default torch threads; "
            f"peak RSS {rss_mb:.0f} MB.", "", *lines])
        write_block("Self-training", "bench_selftrain_e2e", block)


if __name__ == "__main__":
    main()
