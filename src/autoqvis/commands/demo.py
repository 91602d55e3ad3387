"""``autoqvis demo``: the whole AutoQ-VIS loop on the built-in toy world, on a CPU, in minutes."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any, Iterator

from ..core.config import load_config
from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, read_json
from ..data.ytvis import load_ytvis

DESCRIPTION = """\
The whole AutoQ-VIS loop on the built-in toy world, on a CPU:

  1. generate the toy world (stills with imperfect pseudo-masks, unlabeled videos, a val split);
  2. the initial model: by default the toy initial-stage checkpoint shipped in the package
     (autoqvis/assets/toy_init.pt, made by benchmarks/make_toy_checkpoint.py), as the paper starts
     from VideoCutLER's released checkpoint; with --from-scratch it is trained here first;
  3. 2 self-training rounds (pseudo-label, select by quality, fuse, retrain), each model evaluated
     on the val split (class-agnostic YouTubeVIS AP/AR);
  4. the report: DIR/report.md (metrics per round, Spearman of Q and of s with the true IoU, plots) and
     DIR/report.html (the same run to browse: frames, pseudo-labels, Q, a tau slider; `autoqvis report`),
     DIR/plots/*.png (Fig. 5/6/7-style), DIR/overlays/*.gif (+ .png previews, Fig. 3-style).

DIR also keeps the toy world (DIR/world/) and the run (DIR/run/round_k/model.pt, pseudo_labels.json, ...).
An interrupted demo continues where it stopped when run again with the same options.
With the defaults it takes a few minutes on 2 CPU cores (benchmarks/RESULTS.md, "Demo").

examples:
  autoqvis demo                                  # -> demo_out/report.md
  autoqvis demo --out /tmp/d --size small --max-iters 5     # a one-minute smoke run
  autoqvis demo --from-scratch --out scratch     # also train the initial stage (much longer)
"""

DEMO_CONFIG = "toy"
DEMO_ROUND_ITERS = 400  # per round: toy.yaml's 600 x 2 rounds would not fit 10 min on 2 cores with the rest
SETTINGS_FILE = "demo_settings.json"
ASSET = "toy_init"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default demo_out)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="train the initial stage here instead of starting from the shipped checkpoint")
    parser.add_argument("--init", metavar="CKPT", help="start from this toy-architecture checkpoint instead")
    parser.add_argument("--size", choices=["small", "default"], default="default",
                        help="toy world size: default (96 train + 96 val videos) or small (a handful, for tests)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="toy world and training seed (default 0)")
    parser.add_argument("--rounds", type=int, default=2, metavar="K", help="self-training rounds (default 2, as the paper)")
    parser.add_argument("--max-iters", type=int, metavar="N",
                        help=f"iterations of each round (default {DEMO_ROUND_ITERS}) and, with --from-scratch, "
                             "of the initial stage (default: the toy config's train.max_iter)")
    parser.add_argument("--tau", type=float, metavar="T",
                        help="quality threshold of eq. 21 (default: the toy config's selftrain.tau, chosen on the toy "
                             "val split as the paper chose 0.75 on YouTubeVIS-2019)")
    parser.add_argument("--overlays", type=int, default=4, metavar="N", help="val videos to draw (default 4)")
    parser.add_argument("--overlay-score", type=float, default=0.5, metavar="S",
                        help="draw tracks scoring at least this in the overlays (default 0.5)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads (default 1: the toy model's ops are too small to gain from more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------------------- helpers
def shipped_checkpoint() -> tuple[Path, dict[str, Any]]:
    """The packaged toy initial-stage checkpoint and its provenance sidecar."""
    assets = Path(__file__).resolve().parents[1] / "assets"
    ckpt, meta = assets / f"{ASSET}.pt", assets / f"{ASSET}.json"
    if not ckpt.exists() or not meta.exists():
        raise AutoQVISError(f"{ckpt}: the shipped toy checkpoint is missing; run "
                            "`python benchmarks/make_toy_checkpoint.py` or use --from-scratch")
    return ckpt, read_json(meta, "toy checkpoint provenance")


def check_fits(cfg: Any, provenance: dict[str, Any], ckpt: Path) -> None:
    """The shipped checkpoint must have been made with the model config the demo builds."""
    made_with, now = provenance.get("model_config"), cfg.to_dict()["model"]
    if made_with != now:
        diff = next((k for k in now if now[k] != (made_with or {}).get(k)), "model")
        raise AutoQVISError(f"{ckpt}: made with another model config (model.{diff} differs from "
                            f"configs/{DEMO_CONFIG}.yaml); regenerate it with `python benchmarks/make_toy_checkpoint.py` "
                            "or run the demo with --from-scratch")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_config(args: argparse.Namespace) -> Any:
    """The toy config with the demo's seed, rounds and iterations."""
    for name, value, low in (("--rounds", args.rounds, 1), ("--max-iters", args.max_iters, 1),
                             ("--overlays", args.overlays, 0), ("--threads", args.threads, 1), ("--seed", args.seed, 0)):
        if value is not None and value < low:
            raise AutoQVISError(f"{name} must be >= {low}, got {value}")
    for name, value in (("--overlay-score", args.overlay_score), ("--tau", args.tau)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise AutoQVISError(f"{name} must be in [0, 1], got {value}")
    if args.from_scratch and args.init:
        raise AutoQVISError("--from-scratch and --init exclude each other")
    cfg = load_config(DEMO_CONFIG, [f"seed={args.seed}"])
    cfg.selftrain.rounds = args.rounds
    if args.tau is None:  # the settings file and the report record the value used
        args.tau = cfg.selftrain.tau
    cfg.selftrain.tau = args.tau
    cfg.selftrain.max_iter = args.max_iters or DEMO_ROUND_ITERS
    if args.max_iters:
        cfg.train.max_iter = args.max_iters
    return cfg


def prepare_out(out: Path, settings: dict[str, Any]) -> bool:
    """Create ``out`` or check it holds a demo with the same settings; returns True when resuming one."""
    marker = out / SETTINGS_FILE
    if marker.exists():
        old = read_json(marker, "demo settings")
        diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        if diff:
            raise AutoQVISError(f"{out}: holds a demo run with other settings ({'; '.join(diff)}); "
                                "choose another --out or delete that folder")
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AutoQVISError(f"{out}: exists and is not an autoqvis demo folder; choose another --out")
    atomic_write_json(marker, settings, indent=1)
    return False


@contextlib.contextmanager
def stage(number: int, total: int, title: str, timings: dict[str, float]) -> Iterator[None]:
    """Print ``[i/n] title`` before and the seconds it took after; record them in ``timings``."""
    print(f"[{number}/{total}] {title} ...", flush=True)
    start = time.perf_counter()
    yield
    timings[title] = time.perf_counter() - start
    print(f"[{number}/{total}] {title}: done in {timings[title]:.1f} s", flush=True)


# --------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    import torch  # why: --help must not wait for torch

    from ..data.toyworld import toyworld_config, write_toyworld  # why: --help must not wait for torch
    from ..selftrain.loop import SelfTrainInputs, run_selftrain, selection_tau, summary_rows  # why: --help must not wait for torch
    from ..viz import demo_report as rep  # why: --help must not wait for torch
    from ..viz.report_html import write_report  # why: --help must not wait for torch

    torch.set_num_threads(args.threads)
    cfg = demo_config(args)
    out = Path(args.out)
    if args.from_scratch:
        init, provenance = None, None
    elif args.init:
        init, provenance = Path(args.init), None
        if not init.is_file():
            raise AutoQVISError(f"{init}: --init not found")
    else:
        init, provenance = shipped_checkpoint()
        check_fits(cfg, provenance, init)
    settings = {"seed": args.seed, "size": args.size, "rounds": args.rounds, "round_iters": cfg.selftrain.max_iter,
                "tau": args.tau,
                "init": "from scratch" if init is None else file_sha256(init)[:16],
                "init_iters": cfg.train.max_iter if init is None else None}
    resumed = prepare_out(out, settings)
    print(f"autoqvis demo -> {out}{' (continuing the run there)' if resumed else ''}", flush=True)
    timings: dict[str, float] = {}
    total = 4
    world = out / "world"
    with stage(1, total, "toy world", timings):
        if not (world / "val.json").exists():
            write_toyworld(world, toyworld_config(args.size), args.seed, size=args.size, overwrite=True)
        val, train_gt = load_ytvis(world / "val.json"), load_ytvis(world / "train_gt.json")
        unlabeled = load_ytvis(world / "train.json")
        print(f"    {len(unlabeled.videos)} unlabeled train videos, {len(val.videos)} val videos in {world}", flush=True)
    with stage(2, total, "initial model", timings):
        if init is None:
            print(f"    trained from scratch in stage 3 ({cfg.train.max_iter} iterations on {world / 'source.json'})")
        else:
            note = ""
            if provenance is not None:
                val_now = provenance.get("val_default_world")  # the calibrated world's val (issue 16)
                note = (f" ({provenance['iterations']} iterations on the toy source stills; val AP50 "
                        + (f"{val_now['AP50']:.3f} on the default world's val split)" if val_now
                           else f"{provenance['val']['AP50']:.3f} when made)"))
            print(f"    {init}{note}", flush=True)
    inputs = SelfTrainInputs(synthetic=world / "source.json", unlabeled=unlabeled, init=init, val=val,
                             unlabeled_gt=train_gt)
    title = "self-training" + (" (initial stage first)" if init is None else "")
    with stage(3, total, title, timings):
        print(f"    {args.rounds} rounds x {cfg.selftrain.max_iter} iterations -> {out / 'run'}", flush=True)
        run_selftrain(cfg, inputs, out / "run", resume=True, progress=not args.no_progress)
        for row in summary_rows(read_json(out / "run" / "summary.json", "self-training summary")):
            print(f"    round {row['round']}: {row['retained']} tracks retained, training set "
                  f"{row['training_set_tracks']} tracks in {row['eligible_videos']} eligible videos; "
                  f"val AP50 {row['val']['AP50']:.3f}", flush=True)
    with stage(4, total, "report", {}):  # write_demo_report puts its own time in the report
        if (out / "demo.json").exists():  # written last: the report of this run is complete
            print(f"    {out / 'report.md'} is up to date (delete {out / 'demo.json'} to rebuild it)", flush=True)
            summary = read_json(out / "demo.json", "demo summary")
            if not (out / "report.html").exists():
                write_report(out)
        else:
            summary = rep.write_demo_report(
                out, cfg, val, selection_tau(cfg), timings, rounds=args.rounds, overlays=args.overlays,
                overlay_score=args.overlay_score, seed=args.seed, size=args.size, config_name=DEMO_CONFIG,
                init_text=init_description(cfg, init, provenance), command=command_line(args), threads=args.threads)
    print_summary(out, summary, sum(timings.values()))
    return 0


def init_description(cfg: Any, init: Path | None, provenance: dict[str, Any] | None) -> str:
    """What the report says the initial model is."""
    if init is None:
        return f"trained here from scratch ({cfg.train.max_iter} iterations on the source stills)"
    if provenance is not None:
        return (f"the toy initial-stage checkpoint shipped in the package (`autoqvis/assets/{ASSET}.pt`, "
                f"{provenance['iterations']} iterations on the source stills, made by "
                f"`{provenance['regenerate']}`), as the paper starts from VideoCutLER's checkpoint")
    return f"`{init}`"


def command_line(args: argparse.Namespace) -> str:
    """The demo's command with every option spelled out (so the report says exactly what ran)."""
    parts = ["autoqvis demo", f"--out {args.out}", f"--size {args.size}", f"--seed {args.seed}",
             f"--rounds {args.rounds}", f"--tau {args.tau}", f"--overlays {args.overlays}", f"--overlay-score {args.overlay_score}",
             f"--threads {args.threads}"]
    if args.max_iters:
        parts.append(f"--max-iters {args.max_iters}")
    if args.from_scratch:
        parts.append("--from-scratch")
    if args.init:
        parts.append(f"--init {args.init}")
    return " ".join(parts)


def print_summary(out: Path, summary: dict[str, Any], seconds: float) -> None:
    """The short table (from demo.json's content) and where everything is."""
    rounds = summary["rounds"]
    print("\nround              AP50    AP      AR10    rho(Q,IoU)  rho(s,IoU)   (val split)")
    for r in rounds:
        name = "0 (initial model)" if r["round"] == 0 else str(r["round"])
        rho = ["   n/a   " if x is None else f"{x:+.3f}   " for x in (r["val_spearman"]["quality"], r["val_spearman"]["score"])]
        print(f"{name:<18} {r['val']['AP50']:.3f}   {r['val']['AP']:.3f}   {r['val']['AR10']:.3f}   "
              f"{rho[0]}   {rho[1]}")
    gain = summary["settings"].get("gain")
    if gain:
        print(f"\nAP50 change {gain['delta']:+.3f}, val-split noise ± {gain['std']:.3f} "
              f"(95 % interval {gain['low']:+.3f} to {gain['high']:+.3f}, {gain['videos']} videos resampled)")
    n_gif = sum(len(r["overlays"]) for r in rounds)
    print(f"\nreport:   {out / 'report.md'}; to browse: {out / 'report.html'}")
    print(f"plots:    {out / 'plots'}/ (metrics per round, Fig. 5/6 per round, Fig. 7)")
    print(f"overlays: {out / 'overlays'}/ ({n_gif} GIFs + PNG previews)")
    final = out / "run" / f"round_{rounds[-1]['round']}" / "model.pt"
    print(f"models:   {out / 'run'}/round_k/model.pt  (predict with: autoqvis predict --checkpoint {final} "
          "--input VIDEO --out DIR)")
    from ..viz.demo_report import peak_rss_mb  # why: --help must not wait for torch
    print(f"time:     {seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")
