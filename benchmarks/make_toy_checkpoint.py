"""Make the toy initial-stage checkpoint shipped inside the package: ``src/autoqvis/assets/toy_init.pt``.

`autoqvis demo` starts self-training from it, as the paper starts from VideoCutLER's released checkpoint.
It is what these two seeded commands gave on the machine that made it (anyone can rerun them):

    autoqvis toyworld --out WORK/world --seed 0
    autoqvis train --config configs/toy.yaml --synthetic WORK/world/source.json --val WORK/world/val.json \\
        --out WORK/train seed=0 train.max_iter=16000 train.steps=[12800] train.checkpoint_period=2000

(at 2 torch threads, ~66-76 min on 2 CPU cores) then ``WORK/train/model_final.pt`` stripped to the weights (no optimizer
state, no criterion buffers): the toy config's initial stage, 16x longer (``--set`` changes that). With ``--work`` of an earlier call the finished run
is reused and only re-scored on the val split of WORK/world.
Seeded: a rerun on one machine repeats bit for bit (the earlier 4,000-iteration model was reproduced so); another CPU's float kernels round differently, and over 16,000
iterations that gives a close but different model (benchmarks/RESULTS.md, "Shipped checkpoint": AP50 46.9 vs 48.7;
``benchmarks/initial_stage_drift.py`` shows the code unchanged).
The sidecar ``toy_init.json`` records the provenance: commands, seeds, iterations, val metrics, the model
config it fits, sizes and hashes.

    python benchmarks/make_toy_checkpoint.py --threads 2      # regenerate the shipped files (about an hour)
    python benchmarks/make_toy_checkpoint.py --max-iters 50 --assets /tmp/a   # a quick trial elsewhere
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "autoqvis" / "assets"
NAME = "toy_init"
# the toy config's 1000 iterations leave the model half-trained, and 4000 were not converged either: the same
# extra training on synthetic clips alone still gained AP50 (benchmarks/RESULTS.md, "Self-training"). The shipped
# initial model trains 16x longer, as VideoCutLER's checkpoint is a long-trained one
SHIPPED_OVERRIDES = ["train.max_iter=16000", "train.steps=[12800]", "train.checkpoint_period=2000"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/toy.yaml", help="config, relative to the repository (default toy)")
    p.add_argument("--seed", type=int, default=0, help="toy world seed and training seed (default 0)")
    p.add_argument("--max-iters", type=int, default=None, help="override train.max_iter (default: the config's)")
    p.add_argument("--set", nargs="*", default=SHIPPED_OVERRIDES, metavar="KEY=VALUE", dest="overrides",
                   help="config overrides of the training run (default: the shipped recipe, "
                        f"{' '.join(SHIPPED_OVERRIDES)}; --set alone: none)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (OMP_NUM_THREADS) of the training run")
    p.add_argument("--work", default=None, help="keep the world and the training run here (default: a temp folder)")
    p.add_argument("--assets", default=str(ASSETS), help="where toy_init.pt/.json go (default: the package)")
    p.add_argument("--fp16", action="store_true", help="store float tensors as fp16 (halves the file)")
    return p.parse_args()


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run one command from the repository root, streaming its output; returns its wall time."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return time.perf_counter() - start


def strip_checkpoint(src: Path, fp16: bool) -> dict:
    """A trainer checkpoint -> our .pt payload with only the weights (criterion buffers dropped)."""
    import torch

    from autoqvis.core.torch_io import safe_torch_load

    ckpt = safe_torch_load(src)
    weights = {}
    for k, v in ckpt["model"].items():
        if k.startswith("criterion."):
            continue
        weights[k] = v.half() if fp16 and v.is_floating_point() else v.contiguous()
    return {"model": weights, "optimizer": None, "iteration": int(ckpt["iteration"]), "round": 0,
            "config": ckpt["config"], "torch": str(torch.__version__)}


def reevaluate(train: Path, world: Path) -> None:
    """Score a reused run's final model on the current WORK/world val split (the world may have been remade)."""
    from autoqvis import build_model, load_checkpoint, load_config
    from autoqvis.data.ytvis import load_ytvis
    from autoqvis.eval.model_eval import evaluate_model
    from autoqvis.core.fileio import atomic_write_json

    cfg = load_config(train / "config.yaml")
    model = build_model(cfg)
    load_checkpoint(model, train / "model_final.pt")
    metrics = evaluate_model(model.eval(), load_ytvis(world / "val.json"), cfg, progress=False)
    atomic_write_json(train / "metrics.json", metrics, indent=1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    args = parse_args()
    from autoqvis.core.config import load_config
    from autoqvis.core.fileio import atomic_write_json, read_json
    from autoqvis.core.torch_io import atomic_torch_save

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="autoqvis_toy_init_"))
    world, train = work / "world", work / "train"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    exe = [sys.executable, "-m", "autoqvis"]
    toy_cmd = ["autoqvis", "toyworld", "--out", str(world), "--seed", str(args.seed)]
    train_cmd = ["autoqvis", "train", "--config", args.config, "--synthetic", str(world / "source.json"),
                 "--val", str(world / "val.json"), "--out", str(train), "--no-progress", f"seed={args.seed}"]
    if args.max_iters is not None:
        train_cmd[-1:-1] = ["--max-iters", str(args.max_iters)]
    train_cmd += args.overrides
    if not (world / "val.json").exists():
        run(exe + toy_cmd[1:], env)
    if (train / "model_final.pt").exists() and (train / "metrics.json").exists():
        print(f"reusing the finished run in {train}", flush=True)  # --work of an earlier call
        train_s, peak_mb = None, None
        reevaluate(train, world)
    else:
        train_s = round(run(exe + train_cmd[1:], env), 1)
        peak_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)

    payload = strip_checkpoint(train / "model_final.pt", args.fp16)
    assets = Path(args.assets)
    ckpt_path = assets / f"{NAME}.pt"
    atomic_torch_save(payload, ckpt_path)
    cfg = load_config(train / "config.yaml")  # what the run trained with, even if the yaml changed since
    stage_cfg = {k: v for k, v in cfg.to_dict().items() if k not in ("selftrain", "name")}
    metrics = read_json(train / "metrics.json", "metrics")
    log = [json.loads(line) for line in (train / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in log if "total_loss" in r]
    provenance = {
        "file": ckpt_path.name,
        "what": "toy initial-stage model (VIS model + quality predictor) trained on the toy world's source stills",
        "commands": [" ".join(c).replace(str(work), "WORK") for c in (toy_cmd, train_cmd)]
                    + ["then WORK/train/model_final.pt stripped to its weights"],
        "regenerate": "python benchmarks/make_toy_checkpoint.py" + (" --fp16" if args.fp16 else "")
                      + (f" --threads {args.threads}" if args.threads != 1 else "")
                      + (f" --max-iters {args.max_iters}" if args.max_iters is not None else "")
                      + ("" if args.overrides == SHIPPED_OVERRIDES else " --set " + " ".join(args.overrides)),
        "overrides": args.overrides,  # on top of "config": what the initial stage ran with
        "seed": args.seed,
        "world": {"seed": args.seed, "size": "default"},
        "config": args.config,
        "model_config": stage_cfg["model"],
        "initial_stage_config": stage_cfg,  # every config section the initial stage reads
        "iterations": payload["iteration"],
        "loss_first_last": [losses[0]["total_loss"], losses[-1]["total_loss"]] if losses else None,
        "val": {k: metrics[k] for k in ("AP", "AP50", "AP75", "AR10")},
        "train_wall_s": train_s,
        "train_peak_rss_mb": peak_mb,
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "dtype": "float16" if args.fp16 else "float32",
        "size_bytes": ckpt_path.stat().st_size,
        "sha256": sha256(ckpt_path),
        "torch": payload["torch"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    old = assets / f"{NAME}.json"
    if train_s is None and old.exists() and read_json(old).get("sha256") == provenance["sha256"]:
        for key in ("train_wall_s", "train_peak_rss_mb", "threads", "machine"):  # measured when it was trained
            provenance[key] = read_json(old).get(key)
    atomic_write_json(assets / f"{NAME}.json", provenance, indent=1)
    print(json.dumps({k: provenance[k] for k in ("iterations", "val", "train_wall_s", "size_bytes", "dtype")}))
    print(f"wrote {ckpt_path} and {assets / (NAME + '.json')}; work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
