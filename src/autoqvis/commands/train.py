"""``autoqvis train``: the initial stage — the VIS model and its quality predictor on synthetic clips."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.config import load_config, save_config
from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json
from ..data.ytvis import load_ytvis
from ..eval.ytvis_eval import format_summary

DESCRIPTION = """\
Initial stage of AutoQ-VIS (paper Sec. 3.1): train the VIS model and the mask quality predictor jointly
on synthetic clips. --synthetic is either a COCO json of still images with (pseudo-)masks, turned into
clips on the fly by ImageCut2Video, or a YouTubeVIS json of synthetic videos (`autoqvis synth`).

Writes to --out: config.yaml, log.jsonl (one json line per log period), model_NNNNNNN.pt every
train.checkpoint_period iterations, model_final.pt; with --val also val_results.json and metrics.json.

examples:
  autoqvis toyworld --out toy && autoqvis train --config toy --synthetic toy/source.json --out run --val toy/val.json
  autoqvis train --config configs/ytvis19_r50.yaml --synthetic synth/train.json --init videocutler_r50.pth --out init
  autoqvis train ... --resume                     # continue from the last checkpoint in --out
  autoqvis train ... train.lr=1e-4 seed=3         # any config key as key=value

On a CPU shared with other jobs, OMP_NUM_THREADS=1 can be several times faster than the default
(torch's threads wait for each other when the cores are busy).

Several GPUs or nodes: start it with torchrun (DDP; README "Scale out"), e.g.
  torchrun --nproc_per_node 8 -m autoqvis train --config ytvis19_r50 --synthetic synth.json --out init
train.batch_size is per process: one iteration sees N x train.batch_size clips. Only rank 0 writes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config YAML (a path or a packaged name: toy, ytvis19_r50, ...)")
    parser.add_argument("--synthetic", required=True, help="COCO json of stills + masks, or YouTubeVIS json of synthetic videos")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--init", help="initial weights: our .pt, a detectron2 VideoCutLER/AutoQ-VIS .pth, or "
                                       "hf://OWNER/REPO/FILE (Hugging Face hub, cached)")
    parser.add_argument("--max-iters", type=int, help="override train.max_iter")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--val", help="YouTubeVIS json with ground truth: evaluate the final model on it")
    parser.add_argument("--num-workers", type=int, help="override train.num_workers (clip-loading processes)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")


def run(args: argparse.Namespace) -> int:
    from ..core import dist  # why: --help must not wait for torch
    with dist.launched(args.device) as device:
        return _run(args, device)


def _run(args: argparse.Namespace, device) -> int:
    import torch  # why: --help must not wait for torch

    from ..core import dist  # why: --help must not wait for torch
    from ..data.dataset import SyntheticClips  # why: --help must not wait for torch
    from ..data.sampler import BalancedBatches  # why: --help must not wait for torch
    from ..engine.trainer import find_last_checkpoint, train_loop  # why: --help must not wait for torch
    from ..eval.model_eval import evaluate_model  # why: --help must not wait for torch
    from ..model.checkpoint import load_checkpoint, resolve_checkpoint  # why: --help must not wait for torch
    from ..model.vis_model import build_model  # why: --help must not wait for torch
    cfg = load_config(args.config, args.overrides)
    if args.init:
        args.init = str(resolve_checkpoint(args.init))
    if args.max_iters is not None:
        if args.max_iters < 1:
            raise AutoQVISError(f"--max-iters must be >= 1, got {args.max_iters}")
        cfg.train.max_iter = args.max_iters
    if args.num_workers is not None:
        cfg.train.num_workers = args.num_workers
    out = Path(args.out)
    if not args.resume and out.is_dir() and any(out.glob("model_*.pt")):
        raise AutoQVISError(f"{out}: already holds checkpoints; pass --resume to continue, or choose another --out")
    # read every input before training, so a bad file fails in seconds, not after the run
    clips = SyntheticClips(args.synthetic, cfg)
    val = load_ytvis(args.val) if args.val else None
    if val is not None and not val.annotations:
        raise AutoQVISError(f"{args.val}: --val needs ground truth, but the file has no annotations")

    torch.manual_seed(cfg.seed)  # the random init is part of the run: same seed, same weights
    model = build_model(cfg)
    if args.init and not (args.resume and find_last_checkpoint(out) is not None):
        load_checkpoint(model, args.init)
    model.to(device)
    dist.barrier()  # every rank has looked at --out before rank 0 writes into it
    if dist.is_main_process():
        save_config(cfg, out / "config.yaml")
        if dist.get_world_size() > 1:
            print(f"{dist.get_world_size()} processes: one iteration sees {dist.get_world_size()} x "
                  f"{cfg.train.batch_size} clips", flush=True)
    batches = BalancedBatches([clips], [1.0], cfg.train.batch_size, cfg.seed, dist.get_rank(), dist.get_world_size())
    metrics: dict[str, Any] = {}

    def validate(m) -> dict[str, float]:
        metrics.update(evaluate_model(m, val, cfg, out / "val_results.json", progress=not args.no_progress))
        return metrics

    final = train_loop(
        model,
        batches,
        cfg.train,
        out,
        max_iter=cfg.train.max_iter,
        resume=args.resume,
        desc="train",
        val_fn=validate if val is not None else None,
        checkpoint_meta={"round": 0, "config": cfg.to_dict()},
        progress=not args.no_progress,
        runtime=cfg.runtime,
    )
    if not dist.is_main_process():
        return 0
    print(f"final model: {final}")
    if val is not None:
        atomic_write_json(out / "metrics.json", metrics, indent=2)
        print(f"{args.val}: class-agnostic YouTubeVIS metrics of the final model")
        for line in format_summary(metrics):
            print(line)
        print(f"AP50 {100 * metrics['AP50']:.1f}  AP {100 * metrics['AP']:.1f}  AR10 {100 * metrics['AR10']:.1f}")
    sys.stdout.flush()
    return 0


