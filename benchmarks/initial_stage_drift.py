"""Why a re-made toy initial model differs from the shipped one: the code, or the machine?

Two checks, each printed as one line:
1. ``--commit C``: the first ``--iters`` iterations of the shipped recipe (make_toy_checkpoint's command, one torch
   thread) with the package as it was at commit C and as it is now, on this machine; the logged losses and every
   weight tensor compared bit for bit. Equal = today's code trains the initial stage as C's did.
2. ``--remade CKPT``: a finished re-make (``make_toy_checkpoint.py --assets DIR``) against the shipped
   ``src/autoqvis/assets/toy_init.pt``: how many weight tensors differ, and the largest difference.

    python benchmarks/initial_stage_drift.py --commit 65642a0 --iters 60 --work /tmp/drift \\
        --remade /tmp/mk16_assets/toy_init.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "autoqvis" / "assets" / "toy_init.pt"
RECIPE = ["seed=0", "train.max_iter=16000", "train.steps=[12800]", "train.checkpoint_period=2000"]


def train(src: Path, cfg: Path, world: Path, out: Path, iters: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "autoqvis", "train", "--config", str(cfg), "--synthetic", str(world / "source.json"),
           "--out", str(out), "--no-progress", "--max-iters", str(iters), *RECIPE]
    subprocess.run(cmd, check=True, env=env, cwd=out.parent, stdout=subprocess.DEVNULL)


def weights(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def compare(a: dict, b: dict) -> tuple[int, int, float]:
    """(tensors, tensors that differ, largest absolute difference)."""
    import torch

    diffs = [float((a[k].double() - b[k].double()).abs().max()) for k in a if not torch.equal(a[k], b[k])]
    return len(a), len(diffs), max(diffs, default=0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commit", help="the commit whose package made the shipped model (its toy_init.pt commit)")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--work", type=Path, default=Path("/tmp/initial_stage_drift"))
    p.add_argument("--remade", type=Path, help="a re-made toy_init.pt to compare with the shipped one")
    args = p.parse_args()
    if args.commit:
        args.work.mkdir(parents=True, exist_ok=True)
        old = args.work / "old_tree"
        if not old.exists():
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.commit, "src", "configs"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        world = args.work / "world"
        if not (world / "source.json").exists():
            subprocess.run([sys.executable, "-m", "autoqvis", "toyworld", "--out", str(world), "--seed", "0"],
                           check=True, stdout=subprocess.DEVNULL)
        runs = {"then": (old / "src", old / "configs" / "toy.yaml"), "now": (REPO / "src", REPO / "configs" / "toy.yaml")}
        for name, (src, cfg) in runs.items():
            out = args.work / name
            if not (out / "model_final.pt").exists():
                train(src, cfg, world, out, args.iters)
        logs = {n: [json.loads(x)["total_loss"] for x in (args.work / n / "log.jsonl").read_text().splitlines()]
                for n in runs}
        same_loss = logs["then"] == logs["now"]
        n, differ, worst = compare(weights(args.work / "then" / "model_final.pt"),
                                   weights(args.work / "now" / "model_final.pt"))
        print(f"code {args.commit} vs now, {args.iters} iterations, one thread: logged losses "
              f"{'equal' if same_loss else 'differ'} ({len(logs['now'])} logged); {differ} of {n} weight tensors "
              f"differ (largest {worst:.3g})")
    if args.remade:
        n, differ, worst = compare(weights(SHIPPED), weights(args.remade))
        print(f"re-made {args.remade} vs shipped: {differ} of {n} weight tensors differ (largest {worst:.3g})")


if __name__ == "__main__":
    main()
