"""AutoQ-VIS on the toy world: the paper's Tables 1-4 and Fig. 5 on the toy val split, from one command.

    .venv/bin/python benchmarks/bench_selftrain.py [--seeds 0 1 2] [--init-iters N | --init CKPT] [--round-iters N]
        [--rounds 3] [--other-rounds 2] [--tau T] [--variants full no_quality ...] [--work /tmp/bench_selftrain] [--no-write]

For each training seed (the world is always ``autoqvis toyworld --seed 0``, so every row is scored on the
same val videos):
1. the initial stage (``autoqvis train --config toy``, ``--init-iters`` iterations) — shared by every row;
2. ``autoqvis selftrain --init <that model>`` once per variant, each in its own folder:
   ``full`` (--rounds 3: Table 4's rounds 1-3; round 2 is "AutoQ-VIS"), the Table 3 ablations
   (``no_quality`` / ``no_droploss`` / ``no_reset`` / ``no_fusion`` / ``no_freeze``) and Table 2's
   ``practical`` limit (selftrain.oracle_selection: S^t = true IoU^t >= 0.5), ``practical_strict`` (an analysis row,
   not the paper's: the same oracle at true IoU >= 0.75, tight masks only) and a ``synthetic_control`` (every
   batch synthetic: the extra training without pseudo-labels), each ``--other-rounds`` rounds (default 2);
3. Table 2's ``theoretical`` limit: one round (``--round-iters``) from the initial weights on 50% synthetic /
   50% ground-truth clips of the toy train videos (every frame eligible); ``theoretical_partial`` (a diagnosis,
   not a paper row): the same with only a random 35 % of the true tracks, about the pseudo-labels' coverage.
4. beyond the paper (issue 17), each ``--rounds`` rounds as ``full``: ``track`` (Q smoothed along the track + the
   track-level second chance), ``share`` (tau per round holding round 0's share), ``ema`` (the rounds' weight
   average), ``track_share`` and ``plus`` (all, = configs/toy_plus.yaml); the block then says how much of the gap
   from AutoQ-VIS to each limit each closes.
5. diagnoses of round 2 (issue 16; not paper rows), each from a copy of ``full``'s round 0 and round-1 model:
   ``clean`` (round 1+'s selection without its frames of true IoU < 0.5), ``clean_same`` (the same, on round 0's
   videos only) and ``repeat`` (round 2 retrains on round 1's own set: the round-index control).
The recipe of benchmarks/RESULTS.md: ``--init src/autoqvis/assets/toy_init.pt --round-iters 1500 --rounds 2
--other-rounds 1 --tau 0.8`` (the toy config's tau since 2026-12-05; the tables before it say ``--tau 0.7``) on the
default world (96 train / 96 val videos), ``--jobs 2`` on two cores (one torch thread per run; ~9-10 CPU-minutes per
1,500-iteration round with its labelling and val); ``--other-rounds 2`` for the ablations that differ from round 2 on
(w/o reset, w/o fusion).
"Synthetic only" (the VideoCutLER analogue) is round 0 of ``full``: the initial model itself. Fig. 5's
Spearman rho of Q and of s with the true IoU come from each run's analysis.json (the unlabeled videos'
ground truth is given with --unlabeled-gt, read by the analysis only).

Every run is resumable: rerunning the command skips finished work. Writes ``results.json`` in --work and,
unless --no-write, the table block under ``## Self-training`` in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from results_md import write_block  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from autoqvis.selftrain.loop import summary_rows

HERE = Path(__file__).resolve().parent
METRICS = ["AP50", "AP75", "AP", "APs", "APm", "APl", "AR10"]
ABLATIONS = {  # variant -> (selftrain switches, Table 3 row name)
    "no_quality": (["--no-quality-predictor"], "w/o quality predictor"),
    "no_droploss": (["--no-droploss"], "w/o DropLoss"),
    "no_reset": (["--no-reset"], "w/o resetting each round"),
    "no_fusion": (["--no-fusion"], "w/o adaptive fusion"),
    "no_freeze": (["--no-freeze"], "w/o freezing predictor"),
}
# the paper's Table 3 (YouTubeVIS-2019 AP50): its order of harm, worst first, for issue 16's comparison
PAPER_TABLE3_AP50 = {"no_droploss": 48.0, "no_freeze": 49.2, "no_fusion": 49.7, "no_quality": 50.5, "no_reset": 51.6}
# beyond the paper (issue 17): variant -> config overrides of its rounds (`full`'s rounds, --rounds of them)
PLUS = {
    "track": ["selftrain.track_tau_low=0.5", "selftrain.quality_smooth_radius=1"],  # frames judged with their track
    "share": ["selftrain.tau_hold_share=true"],  # tau per round from Q's quantile: the share round 0 kept at tau
    "ema": ["selftrain.ema_decay=0.998"],  # each round's model = the moving average of its weights
}
PLUS["track_share"] = PLUS["track"] + PLUS["share"]  # `plus` without the weight average: what the average adds
PLUS["plus"] = [o for v in ("track", "share", "ema") for o in PLUS[v]]  # all three
# variant -> the variant whose round 0 and round-1 model it shares bit for bit (tau_hold_share and oracle_clean act
# from round 1's selection on; without reset round 1 still starts from the initial weights; without fusion round 0's
# labels are the same, there being nothing to fuse with): such a run starts from a copy of that run's round 0 and
# round-1 model, and pays only for what differs
SAME_ROUND1_AS = {"share": "full", "track_share": "track", "track": "track_share", "no_reset": "full",
                  "no_fusion": "full", "clean": "full", "clean_same": "full", "repeat": "full"}
# diagnoses of round 2 (issue 16, not paper rows): variant -> (overrides, what its round 2 trains on)
DIAGNOSES = {
    "clean": (["selftrain.oracle_clean_from_round=1"], "round 1+ labels without their wrong frames (oracle)"),
    "clean_same": (["selftrain.oracle_clean_from_round=1", "selftrain.diag_round0_videos_only=true"],
                   "round 1+ labels without their wrong frames (oracle), round 0's videos only"),
    # the round-index control: round 2 retrains on round 1's own set T^0 (round 1's labels stand in for the new ones)
    "repeat": ([], "round 1's own training set again (no new labels)"),
}
# analysis, not a paper row: the practical limit's oracle with a stricter true-IoU bar (selftrain.oracle_iou)
STRICT_IOU = 0.75
PRACTICAL = "practical limit (oracle: true IoU >= 0.5)"
PRACTICAL_STRICT = f"practical limit, strict (oracle: true IoU >= {STRICT_IOU}; not a paper row)"
VARIANTS = ["full", "synthetic_control", *ABLATIONS, "practical", "practical_strict", "theoretical", "theoretical_partial",
            *DIAGNOSES, *PLUS]
# diagnosis, not a paper row: the theoretical limit with only a share of the true tracks, each kept at random
# (the others unlabeled, so trained as background) -- does the pseudo-labels' low coverage cap the gain?
PARTIAL_GT = 0.35


def sh(cmd: list[str], log: Path) -> float:
    """Run a command (stdout+stderr to ``log``); returns wall seconds; raises on failure."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        env = {**os.environ, "PYTHONWARNINGS": "ignore", **THREADS}
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def autoqvis(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoqvis", *args]


def read(path: Path) -> dict | list:
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------- runs
OVERRIDES: list[str] = []  # --overrides: config key=value for every run
THREADS: dict[str, str] = {}  # child env: threads per run when --jobs runs share the cores


def initial_stage(work: Path, world: Path, seed: int, iters: int, log: Path) -> tuple[Path, float]:
    out = work / f"seed{seed}" / "init"
    cmd = autoqvis("train", "--config", "toy", "--synthetic", str(world / "source.json"), "--out", str(out),
                   "--max-iters", str(iters), "--no-progress", f"seed={seed}", *OVERRIDES)
    if (out / "model_final.pt").exists():
        return out / "model_final.pt", 0.0
    return out / "model_final.pt", sh(cmd + (["--resume"] if out.exists() else []), log)


def selftrain(work: Path, world: Path, seed: int, variant: str, init: Path, round_iters: int, rounds: int,
              other_rounds: int, tau: float, log: Path) -> tuple[Path, float]:
    out = work / f"seed{seed}" / variant
    extra = list(ABLATIONS[variant][0]) if variant in ABLATIONS else []
    if variant != "no_quality":  # w/o quality predictor keeps the paper's tau 0.85 on Q = s
        extra += ["--tau", str(tau)]
    overrides = [*OVERRIDES, f"seed={seed}", f"selftrain.max_iter={round_iters}"]
    if variant == "practical":
        overrides.append("selftrain.oracle_selection=true")
    if variant == "practical_strict":
        overrides += ["selftrain.oracle_selection=true", f"selftrain.oracle_iou={STRICT_IOU}"]
    if variant in DIAGNOSES:  # issue 16's round-2 diagnoses (not paper rows)
        overrides += DIAGNOSES[variant][0]
    if variant == "synthetic_control":  # the rounds' extra training without the pseudo-labels
        overrides.append("selftrain.synthetic_ratio=1.0")
    overrides += PLUS.get(variant, [])
    n_rounds = rounds if variant == "full" or variant in DIAGNOSES or variant in PLUS else other_rounds
    if (out / "summary.json").exists() and len(summary_rows(read(out / "summary.json"))) == n_rounds + 1:
        return out, 0.0
    if variant in SAME_ROUND1_AS and not out.exists():
        copy_round1_of(work / f"seed{seed}" / SAME_ROUND1_AS[variant], out)
        if variant == "repeat" and (out / "round_1").exists():  # round 1's selection := T^0; the loop reads it back
            import shutil

            for name in ("pseudo_labels.json", "stats.json"):
                shutil.copy2(out / "round_0" / name, out / "round_1" / name)
    cmd = autoqvis("selftrain", "--config", "toy", "--synthetic", str(world / "source.json"),
                   "--unlabeled", str(world / "train.json"), "--unlabeled-gt", str(world / "train_gt.json"),
                   "--val", str(world / "val.json"), "--init", str(init), "--out", str(out), "--rounds",
                   str(n_rounds), "--no-progress", *extra, *overrides)
    return out, sh(cmd + (["--resume"] if (out / "config.yaml").exists() else []), log)


def copy_round1_of(full: Path, out: Path) -> None:
    """``out`` as a run stopped after round 1's model and val: ``full``'s round 0 (labels, metrics, analysis) and
    its round-1 model, val metrics and raw detections, but not round 1's selection, which the variant does its way."""
    import shutil

    if not (full / "round_1" / "detections.jsonl").exists() or not (full / "round_1" / "metrics.json").exists():
        return  # that run's round 1 is not done: the variant trains its own (the same) round 1
    tmp = out.with_name(out.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(full / "round_0", tmp / "round_0")
    (tmp / "round_1").mkdir()
    for name in ("model.pt", "detections.jsonl", "metrics.json", "val_results.json"):
        shutil.copy2(full / "round_1" / name, tmp / "round_1" / name)
    shutil.copy2(full / "unlabeled_videos.json", tmp / "unlabeled_videos.json")
    tmp.rename(out)


def theoretical(work: Path, world: Path, seed: int, init: Path, round_iters: int, log: Path,
                keep: float = 1.0) -> tuple[Path, float]:
    out = work / f"seed{seed}" / ("theoretical" if keep == 1.0 else "theoretical_partial")
    if (out / "metrics.json").exists():
        return out, 0.0
    cmd = [sys.executable, __file__, "--child-theoretical", str(world), str(init), str(out), str(seed), str(round_iters),
           str(keep), *OVERRIDES]
    return out, sh(cmd, log)


def child_theoretical(world: Path, init: Path, out: Path, seed: int, round_iters: int, keep: float,
                      overrides: list[str]) -> None:
    """One self-training round's training with the toy train ground truth (a random ``keep`` share of its
    tracks) in place of pseudo-labels."""
    from autoqvis import build_model, load_checkpoint, load_config
    from autoqvis.data.dataset import SyntheticClips, VideoClips
    from autoqvis.data.sampler import BalancedBatches
    from autoqvis.data.ytvis import load_ytvis
    from autoqvis.eval.model_eval import evaluate_model
    from autoqvis.engine.trainer import train_loop
    from autoqvis.core.fileio import atomic_write_json
    from autoqvis.selftrain.loop import ROUND_SEED_STRIDE, round_config

    cfg = load_config("toy", [*overrides, f"seed={seed}", f"selftrain.max_iter={round_iters}"])
    rc = round_config(cfg)
    model = build_model(rc)
    load_checkpoint(model, init)
    gt = load_ytvis(world / "train_gt.json")
    if keep < 1.0:
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        gt.annotations = [a for a in gt.annotations if rng.random() < keep]
        atomic_write_json(out / "kept_tracks.json", {"kept": len(gt.annotations), "share": keep})
    sources = [SyntheticClips(world / "source.json", rc), VideoClips(gt, rc)]
    batches = BalancedBatches(sources, [cfg.selftrain.synthetic_ratio, 1 - cfg.selftrain.synthetic_ratio],
                              rc.train.batch_size, ROUND_SEED_STRIDE * seed + 1)
    train_loop(model, batches, rc.train, out / "train", max_iter=rc.train.max_iter, resume=True,
               desc="theoretical limit", progress=False, runtime=rc.runtime)
    metrics = evaluate_model(model.eval(), load_ytvis(world / "val.json"), cfg, out / "val_results.json", progress=False)
    atomic_write_json(out / "metrics.json", metrics, indent=1)


# -------------------------------------------------------------------------------- collection
def run_folder(work: Path, init: Path | None, init_iters: int, overrides: list[str], round_iters: int,
               tau: float) -> Path:
    """The folder of one recipe's runs under --work (one per initial model, overrides, round length and tau)."""
    tag = f"init-{init.parent.name}-{init.stem}" if init is not None else f"i{init_iters}"
    tag += "".join(f"_{o}" for o in overrides)
    return work / f"{tag}_r{round_iters}_tau{tau}"


def aq_name(k: int) -> str:
    """Table row of AutoQ-VIS after round ``k``."""
    return f"AutoQ-VIS, {k} round{'s' if k > 1 else ''}"


def clean_name(k: int, variant: str = "clean") -> str:
    """Table row of an issue-16 diagnosis after round ``k``."""
    return f"diagnosis: AutoQ-VIS, {DIAGNOSES[variant][1]}, {k} round{'s' if k > 1 else ''}"


def plus_name(variant: str, k: int) -> str:
    """Table row of a variant beyond the paper after round ``k``."""
    return f"plus `{variant}` ({' '.join(o.split('.', 1)[1] for o in PLUS[variant])}), {k} round{'s' if k > 1 else ''}"


def rows_of_seed(work: Path, seed: int, rounds: int, last: int, variants: list[str] | None = None) -> dict[str, dict]:
    """{row name: metrics + spearman} for one seed (the rows that exist; only those of ``variants`` if given)."""
    base = work / f"seed{seed}"
    rows: dict[str, dict] = {}

    def wanted(variant: str) -> bool:
        return variants is None or variant in variants

    def add(name: str, run: Path, k: int) -> None:
        r = run / f"round_{k}"
        if not wanted(run.name) or not (r / "metrics.json").exists():
            return
        row = dict(read(r / "metrics.json"))
        if (r / "analysis.json").exists():
            a = read(r / "analysis.json")
            row["rho_Q"] = a["spearman"]["frame"]["quality"]
            row["rho_s"] = a["spearman"]["frame"]["score"]
            row["label_prec"] = a["training_set"]["selected_precision"]
        st = read(r / "stats.json")
        row["tracks"] = st["training_set"]["tracks"]
        rows[name] = row

    add("synthetic only (VideoCutLER analogue)", base / "full", 0)
    for k in range(1, rounds + 1):
        add(aq_name(k), base / "full", k)
    for variant, (_, name) in ABLATIONS.items():
        add(name, base / variant, last)
    add(PRACTICAL, base / "practical", last)
    add(PRACTICAL_STRICT, base / "practical_strict", last)
    for variant in DIAGNOSES:
        for k in range(2, rounds + 1):  # their round 1 is AutoQ-VIS's
            add(clean_name(k, variant), base / variant, k)
    for variant in PLUS:  # beyond the paper: every round, as AutoQ-VIS's
        for k in range(1, rounds + 1):
            add(plus_name(variant, k), base / variant, k)
    add(f"control: {last} round{'s' if last > 1 else ''} on synthetic clips only", base / "synthetic_control", last)
    theo = base / "theoretical" / "metrics.json"
    if theo.exists() and wanted("theoretical"):
        rows["theoretical limit (train ground truth)"] = dict(read(theo))
    part = base / "theoretical_partial"
    if (part / "metrics.json").exists() and wanted("theoretical_partial"):
        row = dict(read(part / "metrics.json"))
        row["tracks"] = read(part / "kept_tracks.json")["kept"]
        rows[f"diagnosis: train ground truth, {PARTIAL_GT:.0%} of the tracks"] = row
    return rows


def mean_rows(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    names = list(dict.fromkeys(n for rows in per_seed for n in rows))
    out = {}
    for n in names:
        present = [rows[n] for rows in per_seed if n in rows]
        keys = list(dict.fromkeys(k for r in present for k in r))
        out[n] = {"seeds": len(present), "AP50_per_seed": [rows[n].get("AP50") if n in rows else None for rows in per_seed]}
        for k in keys:
            vals = [r[k] for r in present if r.get(k) is not None and r[k] != -1]
            out[n][k] = float(np.mean(vals)) if vals else None
            if len(vals) > 1:
                out[n][k + "_std"] = float(np.std(vals))
    return out


def gap_lines(per_seed: list[dict[str, dict]], rounds: int) -> list[str]:
    """Issue 17's target for each variant beyond the paper, on AP50: the share of the gap from AutoQ-VIS (``rounds``
    rounds) to each limit that the variant's last round closes (means over the seeds each row has; not where the limit
    is within AutoQ-VIS's seed std of it), how many of its seeds beat AutoQ-VIS's mean, and in how many its last
    round >= its first."""
    def ap50(name: str) -> list[float]:
        return [rows[name]["AP50"] for rows in per_seed if name in rows]

    def mean(v: list[float]) -> float:
        return float(np.mean(v))

    aq = ap50(aq_name(rounds))
    limits = {"practical": ap50(PRACTICAL),
              "ground-truth": ap50("theoretical limit (train ground truth)")}
    out = []
    for variant in PLUS:
        first, last = plus_name(variant, 1), plus_name(variant, rounds)
        both = [(rows[first]["AP50"], rows[last]["AP50"]) for rows in per_seed if first in rows and last in rows]
        if not aq or not both:
            continue
        v = [b for _, b in both]
        parts = []
        for lname, lim in limits.items():
            if lim and mean(aq) < mean(lim) <= mean(aq) + float(np.std(aq)):  # a ratio of noise: say so instead
                parts.append(f"the {lname} limit ({fmt(mean(lim))}, n {len(lim)}) is above AutoQ-VIS by less than "
                             f"AutoQ-VIS's seed std ({fmt(float(np.std(aq)))}): no gap to measure")
            elif lim and mean(lim) > mean(aq):
                parts.append(f"closes {100 * (mean(v) - mean(aq)) / (mean(lim) - mean(aq)):.0f} % of the gap to the {lname} "
                             f"limit ({fmt(mean(aq))} -> {fmt(mean(lim))}, n {len(lim)})")
            elif lim:
                parts.append(f"the {lname} limit ({fmt(mean(lim))}, n {len(lim)}) is not above AutoQ-VIS")
        above = sum(b > mean(aq) for b in v)
        kept = sum(b >= a for a, b in both)
        # the official model_best: the better round on val AP50, per seed (AutoQ-VIS's over its rounds 1..k too)
        names = [aq_name(k) for k in range(1, rounds + 1)]
        aq_rounds = [[rows[n]["AP50"] for n in names if n in rows] for rows in per_seed if aq_name(rounds) in rows]
        best = f"; the better of rounds 1-{rounds} per seed (model_best) {fmt(mean([max(p) for p in both]))} against " \
               f"AutoQ-VIS's {fmt(mean([max(r) for r in aq_rounds]))}" if rounds > 1 else ""
        out.append(f"`{variant}` after {rounds} rounds, {fmt(mean(v))} AP50 (n {len(v)}) against AutoQ-VIS's "
                   f"{fmt(mean(aq))} (n {len(aq)}): " + "; ".join(parts) + f"; {above} of {len(v)} seeds above "
                   f"AutoQ-VIS's mean; round {rounds} >= round 1 in {kept} of {len(v)}{best}.")
    return out


def calibration_lines(per_seed: list[dict[str, dict]], rounds: int, last: int) -> list[str]:
    """Issue 16's point 2, each check computed on AP50 from the per-seed rows: the ground-truth limit >= 60, the
    initial model below it, AutoQ-VIS above the initial model and the same-schedule control (in units of the seed
    std), the paper's ordering, round 2 >= round 1, and the ablations' order of harm against the paper's Table 3.
    Empty without AutoQ-VIS's last round, and for a table with neither ablations, the control nor the strict oracle (a
    beyond-the-paper table, whose target is gap_lines')."""
    def ap(name: str) -> list[float]:
        return [100 * rows[name]["AP50"] for rows in per_seed if name in rows]

    def ms(v: list[float]) -> str:
        return f"{np.mean(v):.1f} ± {np.std(v):.1f} (n {len(v)})"

    aq_last, aq_first = aq_name(rounds), aq_name(1)
    aq, init = ap(aq_last), ap("synthetic only (VideoCutLER analogue)")
    gt, prac = ap("theoretical limit (train ground truth)"), ap(PRACTICAL)
    strict = ap(PRACTICAL_STRICT)
    control = ap(f"control: {last} round{'s' if last > 1 else ''} on synthetic clips only")
    abl = {v: vals for v, (_, name) in ABLATIONS.items() if (vals := ap(name))}
    if not aq or not (abl or control or strict):
        return []
    out = []
    if gt:
        out.append(f"ground-truth limit {ms(gt)}, >= 60 on the mean: {'yes' if np.mean(gt) >= 60 else 'no'} "
                   f"({sum(g >= 60 for g in gt)} of {len(gt)} seeds >= 60)")
    if init and gt:
        out.append(f"initial model {np.mean(init):.1f}: {np.mean(gt) - np.mean(init):.1f} below the ground-truth limit")
    if init:
        above = sum(a > np.mean(init) for a in aq)
        out.append(f"AutoQ-VIS ({rounds} rounds) {ms(aq)}: {np.mean(aq) - np.mean(init):+.1f} over the initial model, "
                   f"above it in {above} of {len(aq)} seeds")
    if control:
        gap, s_aq, s_c = np.mean(aq) - np.mean(control), np.std(aq), np.std(control)
        pooled = float(np.sqrt((s_aq ** 2 + s_c ** 2) / 2))
        ratios = ", ".join(f"{gap / s:.1f}x {what}" if s > 0 else f"{what} 0" for what, s in
                           (("AutoQ-VIS's std", s_aq), ("the control's", s_c), ("the pooled", pooled)))
        line = (f"against the same-schedule control {ms(control)}: gap {gap:+.1f} = {ratios}; >= 3x the seed std: "
                f"{'yes' if gap >= 3 * max(s_aq, s_c) else 'no'} (against the larger of the two stds)")
        first = ap(aq_first)
        if rounds > 1 and last == 1 and first:  # every round restarts from the initial weights: round 1 is as long
            g1 = np.mean(first) - np.mean(control)
            line += (f"; AutoQ-VIS's round 1 {ms(first)}: gap {g1:+.1f} = "
                     f"{g1 / max(np.std(first), s_c):.1f}x the larger std" if max(np.std(first), s_c) > 0 else "")
        out.append(line)
    else:
        out.append("the same-schedule control: not in this table")
    chain = [("ground-truth limit", gt), ("practical limit", prac), ("AutoQ-VIS", aq), ("initial model", init)]
    chain = [(n, float(np.mean(v))) for n, v in chain if v]
    fails = [f"{a} {x:.1f} <= {b} {y:.1f}" for (a, x), (b, y) in zip(chain, chain[1:]) if not x > y]
    out.append("ordering " + " > ".join(f"{n} {v:.1f}" for n, v in chain) + " on the means: "
               + ("holds" if not fails else "fails at " + "; ".join(fails)))
    if strict and aq:  # the analysis row: is an oracle of tight masks a limit for AutoQ-VIS?
        paired = [(100 * rows[PRACTICAL_STRICT]["AP50"], 100 * rows[aq_last]["AP50"]) for rows in per_seed
                  if PRACTICAL_STRICT in rows and aq_last in rows]
        out.append(f"strict oracle (true IoU >= {STRICT_IOU}, not a paper row) {ms(strict)} against AutoQ-VIS "
                   f"{np.mean(aq):.1f}: {'above' if np.mean(strict) > np.mean(aq) else 'not above'} on the mean, "
                   f"above it in {sum(s > a for s, a in paired)} of {len(paired)} seeds"
                   + (f"; below the ground-truth limit {np.mean(gt):.1f}: "
                      f"{'yes' if np.mean(strict) < np.mean(gt) else 'no'}" if gt else ""))
    pairs = [(100 * rows[aq_first]["AP50"], 100 * rows[aq_last]["AP50"]) for rows in per_seed
             if aq_first in rows and aq_last in rows]
    if rounds > 1 and pairs:
        a, b = (float(np.mean(x)) for x in zip(*pairs))
        out.append(f"round {rounds} >= round 1: {'yes' if b >= a else 'no'} on the mean ({a:.1f} -> {b:.1f}), "
                   f"in {sum(y >= x for x, y in pairs)} of {len(pairs)} seeds")
    for variant, (_, what) in DIAGNOSES.items():
        name = clean_name(rounds, variant)
        cleaned = [(100 * rows[aq_first]["AP50"], 100 * rows[name]["AP50"], 100 * rows[aq_last]["AP50"])
                   for rows in per_seed if rounds > 1 and all(n in rows for n in (aq_first, name, aq_last))]
        if cleaned:
            r1, rc, r2 = (float(np.mean(x)) for x in zip(*cleaned))
            out.append(f"diagnosis, round {rounds} on {what}: {rc:.1f} against AutoQ-VIS's round {rounds} {r2:.1f} "
                       f"and round 1 {r1:.1f}; >= round 1 in {sum(c >= a for a, c, _ in cleaned)} of {len(cleaned)} "
                       f"seeds, above AutoQ-VIS's round {rounds} in {sum(c > b for _, c, b in cleaned)}")
        if variant == "repeat" and cleaned:  # the same data twice: what the batch streams alone move
            both = [x for a, c, _ in cleaned for x in (a, c)]
            out.append(f"round 1's set trained twice per seed (round 1's and round {rounds}'s batch streams): "
                       f"{len(both)} runs {min(both):.1f}-{max(both):.1f}, mean {np.mean(both):.1f} ± "
                       f"{np.std(both, ddof=1):.1f}; round {rounds} - round 1 on the same data "
                       f"{np.mean([c - a for a, c, _ in cleaned]):+.1f} (per seed "
                       + " / ".join(f"{c - a:+.1f}" for a, c, _ in cleaned) + ")")
    if abl:
        ref = aq_name(last)
        deltas = {}
        for v, (_, name) in ABLATIONS.items():  # against AutoQ-VIS after as many rounds, in the same seeds
            both = [(rows[name]["AP50"], rows[ref]["AP50"]) for rows in per_seed if name in rows and ref in rows]
            if both:
                deltas[v] = 100 * float(np.mean([x - y for x, y in both]))
        here = sorted(abl, key=lambda v: np.mean(abl[v]))
        paper = sorted(abl, key=PAPER_TABLE3_AP50.__getitem__)
        each = [f"{ABLATIONS[v][1]} {ms(abl[v])}" + (f", {deltas[v]:+.1f} against AutoQ-VIS's round {last} in the "
                                                     "same seeds" if v in deltas else "") for v in here]
        papers = ", ".join(f"{ABLATIONS[v][1]} {PAPER_TABLE3_AP50[v]}" for v in paper)
        out.append(f"ablations after {last} round{'s' if last > 1 else ''}, worst first: " + "; ".join(each)
                   + (f"; w/o quality predictor worst: {'yes' if here[0] == 'no_quality' else 'no'}"
                      if "no_quality" in abl else "") + "; the paper's order "
                   f"of these (Table 3: {papers}): {'same' if here == paper else 'differs'}")
    return out


def fmt(v: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "–" if v is None else f"{scale * v:.{digits}f}"


def table(rows: dict[str, dict]) -> list[str]:
    lines = ["| Method | " + " | ".join(METRICS) + " | ρ(Q, IoU) | ρ(s, IoU) | sel. prec. | tracks | seeds | AP50 per seed |",
             "|---" * (len(METRICS) + 7) + "|"]
    for name, r in rows.items():
        cells = [fmt(r.get(m)) + (f" ± {fmt(r[m + '_std'])}" if m in ("AP50", "AP") and r.get(m + "_std") is not None
                                  else "") for m in METRICS]
        cells += [fmt(r.get("rho_Q"), 1, 3), fmt(r.get("rho_s"), 1, 3), fmt(r.get("label_prec"), 1, 3),
                  "–" if r.get("tracks") is None else f"{r['tracks']:.0f}", str(r["seeds"]),
                  " / ".join(fmt(v) for v in r["AP50_per_seed"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-theoretical":
        w, i, o, s, n, k = sys.argv[2:8]
        child_theoretical(Path(w), Path(i), Path(o), int(s), int(n), float(k), sys.argv[8:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--init-iters", type=int, help="initial stage (default: the toy config's train.max_iter)")
    ap.add_argument("--round-iters", type=int, help="iterations per round (default: the toy config's selftrain.max_iter)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the `full` run (Table 4)")
    ap.add_argument("--other-rounds", type=int,
                    help="rounds of every variant but `full` (default: 2, or --rounds if fewer). Rounds reset to the "
                         "initial weights, so round 1 of a control or ablation is as trained as round 2")
    ap.add_argument("--tau", type=float,
                    help="quality threshold (eq. 21) of every run but w/o quality predictor (which uses Q = s, "
                         "tau 0.85 as the paper). Default: the toy config's selftrain.tau (tau is per dataset, chosen on "
                         "val as the paper's Table 5 does; the toy predictor scores IoU low, so 0.75 keeps almost nothing)")
    ap.add_argument("--init", type=Path, help="use this initial-stage checkpoint instead of training one per seed")
    ap.add_argument("--note", default="", help="a sentence appended to the RESULTS.md section (e.g. what is missing)")
    ap.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bench_selftrain")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    ap.add_argument("--block", default="bench_selftrain",
                    help="name of the RESULTS.md block to (re)write, so tables of other schedules sit side by side")
    ap.add_argument("--world-args", nargs="*", default=[], metavar="KEY=VALUE",
                    help="toyworld knobs (e.g. num_val_videos=96); the world lives in WORK/toy[_<knobs>]")
    ap.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run (initial stage, rounds, theoretical limit)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once, across variants and seeds (each with cores / jobs torch threads)")
    ap.add_argument("--collect-only", action="store_true",
                    help="run nothing: tabulate the finished runs in --work (rows a seed lacks are left out of its mean)")
    args = ap.parse_args()
    OVERRIDES.extend(args.overrides)
    if args.jobs > 1:  # N runs x default threads oversubscribe the cores: OpenMP spin-waits made each run ~6x slower
        THREADS["OMP_NUM_THREADS"] = THREADS["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    from autoqvis import load_config

    toy = load_config("toy")
    args.init_iters = args.init_iters or toy.train.max_iter
    args.round_iters = args.round_iters or toy.selftrain.max_iter
    args.tau = toy.selftrain.tau if args.tau is None else args.tau

    work = run_folder(args.work, args.init, args.init_iters, args.overrides, args.round_iters, args.tau)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    world = args.work / ("toy" + "".join(f"_{a}" for a in args.world_args))
    if not (world / "val.json").exists():
        sh(autoqvis("toyworld", "--out", str(world), "--seed", "0", *args.world_args), log)
    other_rounds = args.other_rounds or min(args.rounds, 2)
    timings: dict[str, list[float]] = {}
    inits: dict[int, Path] = {}
    for seed in args.seeds:  # initial stages first (one per seed unless --init): every run starts from one
        if args.init is not None or args.collect_only:
            inits[seed], t = args.init or work / f"seed{seed}" / "init" / "model_final.pt", 0.0
        else:
            inits[seed], t = initial_stage(work, world, seed, args.init_iters, log)
        timings.setdefault("initial stage", []).append(t)

    def one(task: tuple[int, str]) -> tuple[int, str, float]:
        seed, variant = task
        if variant.startswith("theoretical"):
            keep = PARTIAL_GT if variant == "theoretical_partial" else 1.0
            return seed, variant, theoretical(work, world, seed, inits[seed], args.round_iters, log, keep)[1]
        return seed, variant, selftrain(work, world, seed, variant, inits[seed], args.round_iters, args.rounds,
                                        other_rounds, args.tau, log)[1]

    tasks = [] if args.collect_only else [(seed, v) for seed in args.seeds for v in args.variants]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each run is its own process
        for seed, variant, t in pool.map(one, tasks):
            timings.setdefault(variant, []).append(t)
            print(f"seed {seed} {variant}: {t:.0f} s", flush=True)
    only = None if args.variants == VARIANTS else args.variants  # --variants narrows the table too
    per_seed = [rows_of_seed(work, seed, args.rounds, other_rounds, only) for seed in args.seeds]
    rows = mean_rows(per_seed)
    (work / "results.json").write_text(json.dumps({"rows": rows, "per_seed": per_seed, "timings_s": timings}, indent=1))
    lines = table(rows)
    gaps = gap_lines(per_seed, args.rounds)
    checks = calibration_lines(per_seed, args.rounds, other_rounds)
    print("\n".join(lines + gaps + checks))
    cmd = (f"python benchmarks/bench_selftrain.py --seeds {' '.join(map(str, args.seeds))} --round-iters "
           f"{args.round_iters} --rounds {args.rounds} "
           + (f"--other-rounds {args.other_rounds} " if args.other_rounds else "") + f"--tau {args.tau} "
           + (f"--init {args.init}" if args.init is not None else f"--init-iters {args.init_iters}")
           + (f" --world-args {' '.join(args.world_args)}" if args.world_args else "")
           + (f" --overrides {' '.join(args.overrides)}" if args.overrides else "")
           + (f" --variants {' '.join(only)}" if only else ""))
    init_note = ""
    if args.init is not None:
        import hashlib

        init_note = f" (initial model sha256 {hashlib.sha256(args.init.read_bytes()).hexdigest()[:16]})"
    block = "\n".join([
        f"Toy world (`autoqvis toyworld --seed 0 {' '.join(args.world_args)}`), toy config; `{cmd}`{init_note} "
        f"(CPU, {os.cpu_count()} cores). Class-agnostic YTVIS metrics on the toy val split, x100, mean over "
        f"{len(args.seeds)} training seed(s) (± the std over seeds; the seeds column says how many a row has); tau = {args.tau}. Rows as the paper's Tables 1-4: synthetic only = the initial model; "
        "AutoQ-VIS, k rounds = round k of the full run (the paper's AutoQ-VIS is 2 rounds); ablations, the practical "
        f"limit and the control after {other_rounds} round(s); theoretical limit = "
        "one round's training with the train ground truth in place of pseudo-labels. ρ: Spearman of Q (resp. s) "
        "with the true IoU over the round's pseudo-label frames (Fig. 5); sel. prec.: share of selected non-empty "
        "pseudo-label frames with true IoU >= 0.5; tracks: pseudo-label tracks in the training set; AP50 per seed: "
        "in the order of --seeds (–: not run).",
        "",
        *lines,
        "",
        *(["Issue 17's target (AP50), per variant beyond the paper:", "", *(f"- {g}" for g in gaps), ""] if gaps else []),
        *(["Issue 16's point 2 (AP50, computed from the rows above):", "", *(f"- {c}" for c in checks), ""]
          if checks else []),
        "Wall seconds per run (per seed): " + (", ".join(f"{k} {np.mean(v):.0f}" for k, v in timings.items() if any(v))
                                               or "every run reused from an earlier invocation") + ".",
        *([args.note] if args.note else []),
    ])
    if not args.no_write:
        write_block("Self-training", args.block, block)  # the section's prose stays


if __name__ == "__main__":
    main()
