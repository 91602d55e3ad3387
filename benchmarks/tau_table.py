"""The paper's Table 5 on the toy world: AutoQ-VIS (2 rounds) at several quality thresholds tau, from the runs
bench_selftrain.py left (one ``--tau`` per invocation; no training here).

    .venv/bin/python benchmarks/tau_table.py --work /tmp/bs17 --init src/autoqvis/assets/toy_init.pt
        --round-iters 1500 --taus 0.6 0.7 0.8 [--seeds 0 1 2 3 4] [--no-write] [--block bench_selftrain_tau]

Per tau, over the seeds whose ``full`` run has both rounds: what each round trained on (round k trains on the set
``round_{k-1}`` made: tracks, selected frames, the share of them with true IoU >= 0.5 -- the analysis reads the
unlabeled videos' ground truth, training never does), val AP50 after rounds 1 and 2, and in how many seeds round 2
>= round 1. The paper picks tau by its final model (Table 5: 2 rounds), so the chosen tau is the one with the highest
mean round-2 AP50 on val -- the split the table reports, as the paper does; the paired per-seed difference to it
says whether the choice is inside the seed spread. Writes the block under ``## Self-training`` of
benchmarks/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_selftrain import aq_name, fmt, rows_of_seed, run_folder  # noqa: E402  (benchmarks/ is on sys.path)
from results_md import write_block  # noqa: E402


def training_set(run: Path, k: int) -> dict[str, float] | None:
    """What round ``k`` trained on: the set made at the end of round k-1."""
    r = run / f"round_{k - 1}"
    if not (r / "stats.json").exists() or not (r / "analysis.json").exists():
        return None
    st = json.loads((r / "stats.json").read_text())["training_set"]
    an = json.loads((r / "analysis.json").read_text())["training_set"]
    return {"tracks": st["tracks"], "frames": st["selected_frames"], "prec": an["selected_precision"]}


def tau_rows(work: Path, init: Path | None, init_iters: int, round_iters: int, taus: list[float],
             seeds: list[int]) -> dict[float, dict]:
    """Per tau: per-seed AP50 of rounds 1 and 2 (None where not run) and the two training sets, averaged."""
    out = {}
    for tau in taus:
        folder = run_folder(work, init, init_iters, [], round_iters, tau)
        r1, r2, ap2, sets = [], [], [], {1: [], 2: []}
        for seed in seeds:
            rows = rows_of_seed(folder, seed, 2, 1, ["full"])
            done = aq_name(2) in rows
            r1.append(rows[aq_name(1)]["AP50"] if done else None)
            r2.append(rows[aq_name(2)]["AP50"] if done else None)
            ap2.append(rows[aq_name(2)]["AP"] if done else None)
            for k in (1, 2):
                ts = training_set(folder / f"seed{seed}" / "full", k) if done else None
                if ts is not None:
                    sets[k].append(ts)
        out[tau] = {"r1": r1, "r2": r2, "ap2": ap2,
                    "sets": {k: {key: float(np.mean([t[key] for t in v])) for key in ("tracks", "frames", "prec")}
                             for k, v in sets.items() if v}}
    return out


def ms(v: list[float | None]) -> str:
    """mean ± std (x100) over the values present."""
    x = [a for a in v if a is not None]
    if not x:
        return "–"
    return fmt(float(np.mean(x))) + (f" ± {fmt(float(np.std(x)))}" if len(x) > 1 else "")


def table(rows: dict[float, dict]) -> list[str]:
    lines = ["| tau | round 1 trains on: tracks / frames / right | AP50 round 1 | round 2 trains on: tracks / frames / "
             "right | AP50 round 2 | AP round 2 | round 2 >= round 1 | seeds | AP50 round 2 per seed |",
             "|---" * 9 + "|"]
    for tau, r in rows.items():
        sets = [f"{s['tracks']:.0f} / {s['frames']:.0f} / {s['prec']:.3f}" if (s := r["sets"].get(k)) else "–"
                for k in (1, 2)]
        pairs = [(a, b) for a, b in zip(r["r1"], r["r2"]) if a is not None and b is not None]
        lines.append(f"| {tau} | {sets[0]} | {ms(r['r1'])} | {sets[1]} | {ms(r['r2'])} | {ms(r['ap2'])} | "
                     f"{sum(b >= a for a, b in pairs)} of {len(pairs)} | {len(pairs)} | "
                     + " / ".join(fmt(v) for v in r["r2"]) + " |")
    return lines


def choice_lines(rows: dict[float, dict]) -> list[str]:
    """The tau with the best mean round-2 AP50, and each other tau's paired per-seed difference to it."""
    means = {tau: float(np.mean([v for v in r["r2"] if v is not None])) for tau, r in rows.items()
             if any(v is not None for v in r["r2"])}
    if not means:
        return []
    best = max(means, key=means.get)
    lines = [f"chosen on val by the final (round-2) mean AP50, as the paper's Table 5: tau {best} ({fmt(means[best])})"]
    for tau in means:
        if tau == best:
            continue
        d = [b - a for a, b in zip(rows[best]["r2"], rows[tau]["r2"]) if a is not None and b is not None]
        lines.append(f"tau {tau} against tau {best}, paired per seed: {fmt(float(np.mean(d)))} ± "
                     f"{fmt(float(np.std(d)))} AP50 (per seed " + " / ".join(fmt(x) for x in d)
                     + f"), below it in {sum(x < 0 for x in d)} of {len(d)} seeds")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="bench_selftrain.py's --work")
    ap.add_argument("--init", type=Path, help="bench_selftrain.py's --init (else --init-iters)")
    ap.add_argument("--init-iters", type=int, default=0)
    ap.add_argument("--round-iters", type=int, required=True)
    ap.add_argument("--taus", type=float, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--block", default="bench_selftrain_tau")
    ap.add_argument("--note", default="", help="a sentence appended to the block (e.g. when the runs were made)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update benchmarks/RESULTS.md")
    args = ap.parse_args()
    rows = tau_rows(args.work, args.init, args.init_iters, args.round_iters, args.taus, args.seeds)
    lines = table(rows) + [""] + [f"- {c}" for c in choice_lines(rows)]
    print("\n".join(lines))
    runs = (f"`python benchmarks/bench_selftrain.py --seeds {' '.join(map(str, args.seeds))} --round-iters "
            f"{args.round_iters} --rounds 2 --tau T " + (f"--init {args.init}" if args.init else
                                                         f"--init-iters {args.init_iters}") + " --variants full`")
    cmd = (f"`python benchmarks/tau_table.py --work WORK " + (f"--init {args.init} " if args.init else "")
           + f"--round-iters {args.round_iters} --taus {' '.join(map(str, args.taus))} --seeds "
           f"{' '.join(map(str, args.seeds))}`")
    head = (f"Table 5 analogue: AutoQ-VIS's two rounds per tau, runs by {runs} for each tau, tabulated by {cmd}. "
            "Val AP50 x100, mean ± std over the seeds; 'right': the share of the training set's selected non-empty "
            "frames with true IoU >= 0.5 (means over the seeds; round 1's set, made by the initial model, is the "
            "same for every seed).")
    if not args.no_write:
        write_block("Self-training", args.block, "\n".join([head, "", *lines, *([""] + [args.note] if args.note else [])]))


if __name__ == "__main__":
    main()
