"""Ground-truth ceiling of toy-world variants: one training run on the target's TRUE tracks, then val AP (issue 16).

    .venv/bin/python benchmarks/calibrate_toy.py --name NAME [--init CKPT | --init none] [--config toy]
        [--iters 600] [--gt-ratio 0.5] [--world-args KEY=VALUE ...] [--overrides KEY=VALUE ...]
        [--eval-train] [--threads 1] [--work /tmp/calibrate_toy]

One run = what bench_selftrain.py's ``theoretical`` row trains (a self-training round's schedule, ``round_config``
of the config: selftrain.lr / batch / DropLoss, ``--iters`` iterations, a share ``--gt-ratio`` of batches from the
toy train videos' ground truth, the rest synthetic clips of the world's source stills), but with any world knobs
(``--world-args``, e.g. ``noise_std=3 blur_sigma=0.6``), any config (``--config`` a name or a yaml, ``--overrides``,
e.g. a wider model) and from the shipped initial model or from random weights (``--init none``). ``--iters 0``
only evaluates ``--init`` (the initial model's AP on that world). It reports val AP50/AP/AR10 (96 val videos by
default), with ``--eval-train`` the same on the train videos it learnt from (fit vs generalisation), and the CPU
cost: wall seconds per iteration at ``--threads`` torch threads. Each run appends a json line to
WORK/results.jsonl (the command included) and prints a markdown row; a run with a finished folder is not redone,
an unfinished one resumes (exactly: the lr is constant in a round), so a round's full length is a short run's
``model_final.pt`` copied into a new run folder's ``train/`` and run again with the larger ``--iters``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_WORLD = ["num_train_videos=96", "num_val_videos=96"]


def world_dir(work: Path, world_args: list[str]) -> Path:
    """The toy world (seed 0) of these knobs, generated once per knob set."""
    world = work / ("world" + "".join(f"_{a}" for a in world_args))
    if not (world / "val.json").exists():
        subprocess.run([sys.executable, "-m", "autoqvis", "toyworld", "--out", str(world), "--seed", "0",
                        *world_args], check=True, stdout=subprocess.DEVNULL)
    return world


def adapt_batchnorm(model: torch.nn.Module, videos, cfg) -> None:
    """AdaBN: the BatchNorm running statistics re-estimated (cumulative mean) from every frame of ``videos``."""
    import types

    from autoqvis.engine.inference import predict_dataset

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:  # stay in training mode (batch statistics, updated buffers) through predict's model.eval()
        m.reset_running_stats()
        m.momentum = None
        m.training = True
        m.train = types.MethodType(lambda self, mode=True: self, m)
    for _ in predict_dataset(model, videos, cfg, progress=False):
        pass
    for m in bns:
        del m.train
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="run folder under WORK/runs")
    ap.add_argument("--init", default=str(ROOT / "src/autoqvis/assets/toy_init.pt"),
                    help="initial weights (default: the shipped toy initial model); 'none': random weights")
    ap.add_argument("--config", default="toy")
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--gt-ratio", type=float, default=0.5,
                    help="share of batches from the train videos' ground truth (the rest: synthetic clips)")
    ap.add_argument("--world-args", nargs="*", default=None, metavar="KEY=VALUE",
                    help=f"toyworld knobs, on top of {' '.join(DEFAULT_WORLD)}")
    ap.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--eval-train", action="store_true", help="also score the train videos (their ground truth)")
    ap.add_argument("--adabn", action="store_true",
                    help="before scoring, re-estimate the BatchNorm statistics on the unlabeled train videos (a "
                         "diagnosis: is it BN statistics of the other domain that cost target AP?)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/calibrate_toy"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from autoqvis import build_model, load_checkpoint, load_config
    from autoqvis.data.dataset import SyntheticClips, VideoClips
    from autoqvis.data.sampler import BalancedBatches
    from autoqvis.data.ytvis import load_ytvis
    from autoqvis.eval.model_eval import evaluate_model
    from autoqvis.engine.trainer import find_last_checkpoint, train_loop
    from autoqvis.core.fileio import atomic_write_json
    from autoqvis.selftrain.loop import ROUND_SEED_STRIDE, round_config

    world_args = [*DEFAULT_WORLD, *(args.world_args or [])]
    world = world_dir(args.work, world_args)
    out = args.work / "runs" / args.name
    if (out / "metrics.json").exists():
        print(f"{out}: done already", json.loads((out / "metrics.json").read_text()))
        return
    cfg = load_config(args.config, [*args.overrides, f"seed={args.seed}", f"selftrain.max_iter={max(1, args.iters)}"])
    rc = round_config(cfg)
    model = build_model(rc)
    if args.init != "none":
        load_checkpoint(model, args.init)
    n_params = sum(p.numel() for p in model.parameters())
    seconds_per_iter = None
    if args.iters > 0:
        gt = load_ytvis(world / "train_gt.json")
        sources, probs = [], []
        if args.gt_ratio < 1:
            sources.append(SyntheticClips(world / "source.json", rc))
            probs.append(1 - args.gt_ratio)
        if args.gt_ratio > 0:
            sources.append(VideoClips(gt, rc))
            probs.append(args.gt_ratio)
        batches = BalancedBatches(sources, probs, rc.train.batch_size, ROUND_SEED_STRIDE * args.seed + 1)
        found = find_last_checkpoint(out / "train")  # a resumed run: time only the iterations run here
        start = int(found[1]["iteration"]) if found else 0
        t0 = time.perf_counter()
        train_loop(model, batches, rc.train, out / "train", max_iter=args.iters, resume=True,
                   desc=args.name, progress=False)
        seconds_per_iter = round((time.perf_counter() - t0) / max(1, args.iters - start), 3)
    if args.adabn:
        adapt_batchnorm(model, load_ytvis(world / "train.json"), cfg)
    model.eval()
    t0 = time.perf_counter()
    val = evaluate_model(model, load_ytvis(world / "val.json"), cfg, progress=False)
    eval_s = round(time.perf_counter() - t0, 1)
    row = {"name": args.name, "adabn": args.adabn, "command": "python benchmarks/calibrate_toy.py " + shlex.join(sys.argv[1:]),
           "world_args": world_args, "params": n_params, "s_per_iter": seconds_per_iter, "val_eval_s": eval_s,
           "threads": args.threads,
           "val": {k: round(100 * val[k], 1) for k in ("AP50", "AP", "AR10")}}
    if args.eval_train:
        tr = evaluate_model(model, load_ytvis(world / "train_gt.json"), cfg, progress=False)
        row["train"] = {k: round(100 * tr[k], 1) for k in ("AP50", "AP", "AR10")}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", row, indent=1)
    with open(args.work / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    tr = row.get("train", {})
    print(f"| {args.name} | {row['val']['AP50']} | {row['val']['AP']} | {tr.get('AP50', '–')} | "
          f"{seconds_per_iter} | {n_params} | `{row['command']}` |")


if __name__ == "__main__":
    main()
