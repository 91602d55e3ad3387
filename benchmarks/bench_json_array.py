"""Does reading a results file in parts (``autoqvis.data.json_array``, each worker parses its byte range) still pay
against one whole-file ``orjson.loads`` in the main process? (issue 15)

Uses the gt2.3 set of ``bench_eval.py`` (302 videos x 36 frames, 30,200 results, ~150 MB). Each variant runs in a
fresh process; reported: wall s, CPU s (process + workers), peak RSS MB of the main process and of the largest
worker, and the 1-min load average when it ended (other jobs share the machine).

  parse    whole-file ``orjson.loads`` alone (the json step, no evaluation)
  parts    ``evaluate(gt, path)``: the file is cut at result boundaries, each worker parses its parts
  whole    ``evaluate(gt, read_json(path))``: one ``orjson.loads`` in the main process, workers get list slices
           (by fork), which is what the evaluator would do without json_array

Command: ``.venv/bin/python benchmarks/bench_json_array.py [--repeats 3]``
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "autoqvis_bench_eval" / "gt2.3"


def child(which: str, gt: str, res: str) -> None:
    import orjson

    from autoqvis.core.fileio import read_json
    from autoqvis.eval.ytvis_eval import evaluate

    t0, c0 = time.perf_counter(), time.process_time()
    if which == "parse":
        value = orjson.loads(Path(res).read_bytes())
        out = {"results": len(value)}
    elif which == "parts":
        out = evaluate(gt, res, workers=2)
    else:
        out = evaluate(gt, read_json(res, "results json"), workers=2)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)  # Linux keeps the pre-exec peak in it; VmHWM does not
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"wall_s": wall, "cpu_s": time.process_time() - c0 + kids.ru_utime + kids.ru_stime,
                      "rss_main_mb": hwm / 1024, "ru_maxrss_main_mb": own.ru_maxrss / 1024, "rss_worker_mb": kids.ru_maxrss / 1024,
                      "AP": out.get("AP"), "results": out.get("results"), "load": os.getloadavg()[0]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("WHICH", "GT", "RES"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from bench_eval import SETS, make_set

    gt, res = make_set(DATA, SETS["gt2.3"], 302)
    print(f"{res}: {res.stat().st_size / 1e6:.0f} MB")
    for _ in range(args.repeats):
        for which in ("parse", "parts", "whole"):
            out = subprocess.run([sys.executable, __file__, "--child", which, str(gt), str(res)], check=True,
                                 capture_output=True, text=True).stdout
            print(which, out.strip(), flush=True)


if __name__ == "__main__":
    main()
