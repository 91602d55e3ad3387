"""Initial-stage training on the toy world: time, loss curve and val AP against non-learned baselines.

Runs ``autoqvis train --config CFG --synthetic WORLD/source.json --val WORLD/val.json`` (the command a
user runs) once per variant, each pinned to its own ``--cores-per-run`` CPU cores with as many torch
threads, several at once when the machine has the cores (a tuning sweep). A run past ``--time-limit``
is interrupted and its last checkpoint evaluated. Then the baselines of ``benchmarks/baselines.py``
are scored on the same val split.

    python benchmarks/bench_train.py                                 # configs/toy.yaml on 2 cores
    python benchmarks/bench_train.py --variant base --variant lr1e-3 train.lr=1e-3 --time-limit 420

Writes OUT/<variant>/ (the run's folder, stdout.txt) and OUT/summary.json; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from results_md import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="/tmp/autoqvis_bench/toy", help="toy world folder (generated if missing)")
    p.add_argument("--out", default="/tmp/autoqvis_bench/train", help="output folder")
    p.add_argument("--config", default=str(REPO / "configs" / "toy.yaml"))
    p.add_argument("--variant", action="append", nargs="+", metavar=("NAME", "KEY=VALUE"),
                   help="a run: a name and config overrides (repeatable; default: one run 'toy')")
    p.add_argument("--cores-per-run", type=int, default=2)
    p.add_argument("--time-limit", type=float, default=0, help="interrupt a run after this many seconds (0: none)")
    p.add_argument("--no-baselines", action="store_true")
    return p.parse_args()


def ensure_world(world: Path) -> None:
    if (world / "val.json").is_file():
        return
    from autoqvis.data.toyworld import write_toyworld

    t = time.perf_counter()
    write_toyworld(world, seed=0)
    print(f"toy world written to {world} in {time.perf_counter() - t:.1f} s", flush=True)


def launch(name: str, overrides: list[str], cpus: list[int], args: argparse.Namespace, pin: bool) -> dict:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    world = Path(args.world)
    cmd = [sys.executable, "-m", "autoqvis", "train", "--config", args.config, "--synthetic", str(world / "source.json"),
           "--out", str(out), "--val", str(world / "val.json"), "--no-progress", *overrides]
    threads = str(len(cpus))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    log = (out / "stdout.txt").open("w")
    pin_cpus = (lambda: os.sched_setaffinity(0, cpus)) if pin else None  # keep parallel runs apart
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, preexec_fn=pin_cpus)
    return {"name": name, "overrides": overrides, "cpus": cpus, "proc": proc, "start": time.perf_counter(), "out": out}


def wait_all(runs: list[dict], time_limit: float) -> None:
    pending = list(runs)
    while pending:
        time.sleep(1.0)
        for run in list(pending):
            elapsed = time.perf_counter() - run["start"]
            if run["proc"].poll() is not None:
                run["wall_s"] = elapsed
                pending.remove(run)
            elif time_limit and elapsed > time_limit and not run.get("interrupted"):
                run["proc"].send_signal(signal.SIGINT)  # the CLI stops cleanly; checkpoints stay
                run["interrupted"] = True


def evaluate_last_checkpoint(run: dict, args: argparse.Namespace) -> dict:
    """AP of an interrupted run's latest checkpoint (in this process, same thread count)."""
    import torch

    from autoqvis import build_model, load_checkpoint
    from autoqvis.eval.model_eval import evaluate_model
    from autoqvis.core.config import load_config
    from autoqvis.data.ytvis import load_ytvis
    from autoqvis.engine.trainer import find_last_checkpoint

    found = find_last_checkpoint(run["out"])
    if found is None:
        return {}
    torch.set_num_threads(args.cores_per_run)
    cfg = load_config(args.config, run["overrides"])
    model = build_model(cfg)
    load_checkpoint(model, str(found[0]))
    model.eval()
    t = time.perf_counter()
    metrics = evaluate_model(model, load_ytvis(Path(args.world) / "val.json"), cfg, run["out"] / "val_results.json",
                             progress=False)
    run["eval_s"] = time.perf_counter() - t
    run["evaluated"] = found[0].name
    return metrics


def summarize(run: dict, args: argparse.Namespace) -> dict:
    log = [json.loads(line) for line in (run["out"] / "log.jsonl").read_text().splitlines()] if (
        run["out"] / "log.jsonl").is_file() else []
    train = [r for r in log if "total_loss" in r]
    metrics_path = run["out"] / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else evaluate_last_checkpoint(run, args)
    iters = train[-1]["iteration"] if train else 0
    train_s = train[-1]["elapsed"] if train else 0.0
    curve = {}
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        if train:
            rec = train[min(len(train) - 1, round(frac * (len(train) - 1)))]
            curve[rec["iteration"]] = round(rec["total_loss"], 2)
    later = train[1:] or train  # the first log line is iteration 1 alone (warm-up)
    cpu = sum(r["cpu_time"] for r in later) / len(later) if later else None
    return {
        "name": run["name"], "overrides": run["overrides"], "returncode": run["proc"].returncode,
        "interrupted": bool(run.get("interrupted")), "iterations": iters, "train_s": round(train_s, 1),
        "s_per_iter": round(train_s / iters, 3) if iters else None,
        "cpu_s_per_iter": round(cpu, 3) if cpu is not None else None, "wall_s": round(run.get("wall_s", 0.0), 1),
        "eval_s_after_interrupt": round(run.get("eval_s", 0.0), 1), "loss_curve": curve,
        **{k: metrics.get(k) for k in ("AP", "AP50", "AP75", "AR10")},
    }


def baselines(world: Path) -> dict[str, dict]:
    from autoqvis.data.ytvis import load_ytvis
    from baselines import BASELINES, baseline_results  # benchmarks/ is on sys.path when run as a script
    from autoqvis.eval.ytvis_eval import evaluate

    val = load_ytvis(world / "val.json")
    return {name: evaluate(val, baseline_results(name, val), workers=1) for name in BASELINES}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main() -> int:
    args = parse_args()
    world = Path(args.world)
    ensure_world(world)
    variants = args.variant or [["toy"]]
    cpus = sorted(os.sched_getaffinity(0))
    slots = [cpus[i:i + args.cores_per_run] for i in range(0, len(cpus) - args.cores_per_run + 1, args.cores_per_run)]
    if not slots:
        slots = [cpus]
    results = []
    for start in range(0, len(variants), len(slots)):  # as many runs at once as there are core slots
        todo = variants[start:start + len(slots)]
        wave = [launch(v[0], v[1:], slot, args, pin=len(todo) > 1) for v, slot in zip(todo, slots)]
        wait_all(wave, args.time_limit)
        results += [summarize(run, args) for run in wave]
    summary = {"config": args.config, "cores_per_run": args.cores_per_run, "cpu": cpu_name(), "runs": results}
    if not args.no_baselines:
        summary["baselines"] = baselines(world)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nconfig {args.config}, {args.cores_per_run} cores per run, CPU: {summary['cpu']}")
    print("| run | iters | train s | s/iter | CPU s/iter | wall s | loss (iteration: total) | AP50 | AP | AR10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        curve = ", ".join(f"{k}: {v}" for k, v in r["loss_curve"].items())
        flag = " (interrupted)" if r["interrupted"] else ""
        print(f"| {r['name']}{flag} | {r['iterations']} | {r['train_s']} | {r['s_per_iter']} | {r['cpu_s_per_iter']} "
              f"| {r['wall_s']} | {curve} "
              f"| {pct(r['AP50'])} | {pct(r['AP'])} | {pct(r['AR10'])} |")
    for name, m in summary.get("baselines", {}).items():
        print(f"| baseline {name} | - | - | - | - | - | - | {pct(m['AP50'])} | {pct(m['AP'])} | {pct(m['AR10'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
