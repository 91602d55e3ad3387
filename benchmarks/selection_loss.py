"""Where quality-guided selection loses against perfect selection (issue 17, step 1: measure first).

For one self-training run and round k, take the round's raw pseudo-labels (``round_k/detections.jsonl``), apply the
run's own selection rule (NMS, score filter, Q^t >= tau, retention) and the practical limit's oracle rule (true IoU
>= 0.5, Table 2), and sort every non-empty candidate frame by what it really is against the train ground truth
(``train_gt.json``, read here for the analysis only):

* *correct*: IoU >= 0.5 with the track's own object (its best ground-truth track over the video);
* *switch*: below 0.5 with its own object but >= 0.5 with another (an identity switch across frames);
* *merged*: covers >= half of two or more objects in that frame;
* *loose*: best IoU in [0.2, 0.5) (the right place, a poor mask);
* *background*: best IoU below 0.2.

Then: what the selection lets through that is wrong (by kind), which good frames it drops that the oracle keeps, and
how well the frozen predictor's IoU^ is calibrated on the target videos (mean true IoU per IoU^ bin, Spearman).

    python benchmarks/selection_loss.py RUN_DIR WORLD/train_gt.json [--rounds 0 1] [--json out.json]
        [--rules tau=0.7 tau=0.7,tau_low=0.55 tau=0.7,smooth_radius=1 ...]

``--rules``: instead, one line per selection rule (the run's rule with these fields of ``SelectionRule`` changed):
the frames it trains on and how correct they are -- the screening of issue 17's selection variants before any
training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from autoqvis.core.config import load_config
from autoqvis.core.tracks import frame_ious, rle_areas, video_iou
from autoqvis.data.ytvis import load_ytvis
from autoqvis.eval.analysis import gt_tracks, spearman, true_ious
from autoqvis.selftrain.curate import SelectionRule, curate_video, round_tau
from autoqvis.selftrain.pseudo_label import iter_detection_file
from autoqvis.selftrain.selection import training_frames

KINDS = ("correct", "switch", "merged", "loose", "background")
BINS = np.linspace(0.0, 1.0, 11)


def frame_kinds(dets, gt) -> list[list[str | None]]:
    """Per track and frame: one of KINDS, or None where the track's mask is empty."""
    if not dets:
        return []
    segs = [d.segmentations for d in dets]
    num_frames = len(segs[0])
    if not gt:
        return [[None if s is None else "background" for s in track] for track in segs]
    iou = frame_ious(segs, gt)  # (T, N, M)
    own = video_iou(segs, gt)[0].argmax(axis=1)  # (N,) each track's object
    inter = iou / (1.0 + iou)  # times (|d| + |g|) below: |d & g|
    gt_area = np.array([[a or 0 for a in rle_areas(track)] for track in gt], dtype=float).T  # (T, M)
    out = []
    for n, track in enumerate(segs):
        dt_area = np.array([a or 0 for a in rle_areas(track)], dtype=float)  # (T,)
        kinds = []
        for t in range(num_frames):
            if track[t] is None:
                kinds.append(None)
                continue
            row = iou[t, n]  # (M,)
            # |d & g| from the IoU and the two areas: i = IoU (|d| + |g|) / (1 + IoU)
            covered = inter[t, n] * (dt_area[t] + gt_area[t]) / np.maximum(gt_area[t], 1)
            if row[own[n]] >= 0.5:
                kinds.append("correct")
            elif row.max() >= 0.5:
                kinds.append("switch")
            elif np.count_nonzero((covered >= 0.5) & (gt_area[t] > 0)) >= 2:
                kinds.append("merged")
            elif row.max() >= 0.2:
                kinds.append("loose")
            else:
                kinds.append("background")
        out.append(kinds)
    return out


def round_loss(run: Path, k: int, gt_all: dict, rule: SelectionRule) -> dict:
    counts = {name: {kind: 0 for kind in KINDS} for name in ("candidates", "selected", "oracle")}
    dropped_good = 0  # correct frames the oracle trains on and the selection does not
    pred, true, quality = [], [], []
    for video_id, dets in iter_detection_file(run / f"round_{k}" / "detections.jsonl"):
        gt = gt_all.get(video_id, [])
        mine = curate_video(dets, rule)
        oracle = curate_video(dets, rule, oracle_gt=gt)
        kinds = frame_kinds(mine.candidates, gt)
        own_iou = true_ious(mine.candidates, gt)[0] if gt and mine.candidates else None  # (N, T), own object
        chosen = {id(d): d for d in mine.retained}
        oracle_by_pos = {i: d for i, d in enumerate(oracle.candidates)}  # same candidates, oracle flags
        kept_by_oracle = {id(d) for d in oracle.retained}
        for i, det in enumerate(mine.candidates):
            o = oracle_by_pos[i]
            for t, kind in enumerate(kinds[i]):
                if kind is None:
                    continue
                counts["candidates"][kind] += 1
                sel = id(det) in chosen and det.selected[t]
                osel = id(o) in kept_by_oracle and o.selected[t]
                counts["selected"][kind] += int(bool(sel))
                counts["oracle"][kind] += int(bool(osel))
                dropped_good += int(bool(osel and not sel and kind == "correct"))
                if det.pred_iou and own_iou is not None:
                    pred.append(det.pred_iou[t])
                    quality.append(det.score * det.pred_iou[t])
                    true.append(float(own_iou[i, t]))
    pred_a, true_a = np.array(pred), np.array(true)
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (pred_a >= lo) & (pred_a < hi if hi < 1 else pred_a <= hi)
        if m.any():
            bins.append({"pred_iou": [round(lo, 1), round(hi, 1)], "frames": int(m.sum()),
                         "mean_true_iou": round(float(true_a[m].mean()), 3)})
    return {"round": k, "counts": counts, "dropped_good_frames": dropped_good,
            "spearman": {"pred_iou": spearman(pred, true), "quality": spearman(quality, true)},
            "mean_pred_iou": float(pred_a.mean()) if len(pred) else None,
            "mean_true_iou": float(true_a.mean()) if len(true) else None, "calibration": bins}


def rule_row(run: Path, k: int, gt_all: dict, rule: SelectionRule) -> dict:
    """What one selection rule keeps of round k's candidates: selected non-empty frames of the retained tracks,
    their kinds, their mean true IoU with their own object and the share >= 0.7, and the eligible frames (eq. 14)."""
    kinds_n = {kind: 0 for kind in KINDS}
    ious: list[float] = []
    eligible = 0
    rule = round_tau(iter_detection_file(run / f"round_{k}" / "detections.jsonl"), rule)
    for video_id, dets in iter_detection_file(run / f"round_{k}" / "detections.jsonl"):
        gt = gt_all.get(video_id, [])
        kept = curate_video(dets, rule).retained
        eligible += len(training_frames(kept, rule.min_eligible_frames))
        if not kept:
            continue
        kinds = frame_kinds(kept, gt)
        own = true_ious(kept, gt)[0] if gt else np.zeros((len(kept), kept[0].num_frames))
        for i, det in enumerate(kept):
            for t, kind in enumerate(kinds[i]):
                if kind is not None and det.selected[t]:
                    kinds_n[kind] += 1
                    ious.append(float(own[i, t]))
    iou = np.array(ious)
    return {"frames": len(ious), "kinds": kinds_n, "mean_true_iou": float(iou.mean()) if len(iou) else None,
            "iou_ge_0.7": float((iou >= 0.7).mean()) if len(iou) else None, "eligible_frames": eligible,
            "tau": rule.tau}


def parse_rule(base: SelectionRule, text: str) -> SelectionRule:
    """'tau=0.7,tau_low=0.55' -> ``base`` with those fields replaced (numbers; 'none' for None)."""
    fields = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        fields[key] = None if value == "none" else type(getattr(base, key) if getattr(base, key) is not None else 0.0)(value)
    rule = dataclasses.replace(base, **fields)
    rule.check()
    return rule


def markdown(rows: list[dict], name: str) -> list[str]:
    out = [f"| {name}, round | frames | " + " | ".join(KINDS) + " | good frames the oracle keeps and Q drops | ρ(IoU^, IoU) | mean IoU^ / true IoU |",
           "|---|---|" + "---|" * len(KINDS) + "---|---|---|"]
    for r in rows:
        for which in ("selected", "oracle", "candidates"):
            c = r["counts"][which]
            total = sum(c.values())
            shares = " | ".join(f"{c[k]} ({100 * c[k] / max(total, 1):.0f} %)" for k in KINDS)
            extra = (f"{r['dropped_good_frames']} | {r['spearman']['pred_iou']:.3f} | "
                     f"{r['mean_pred_iou']:.2f} / {r['mean_true_iou']:.2f}") if which == "selected" else "| |"
            out.append(f"| {which} (round {r['round']}) | {total} | {shares} | {extra} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a selftrain output folder (config.yaml, round_k/detections.jsonl)")
    ap.add_argument("train_gt", type=Path, help="the unlabeled videos' ground truth (analysis only)")
    ap.add_argument("--rounds", type=int, nargs="+", default=[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rules", nargs="+", help="screen these selection rules (FIELD=VALUE,...) instead")
    args = ap.parse_args()
    cfg = load_config(args.run / "config.yaml")
    rule = SelectionRule.from_config(cfg)
    gt_all = gt_tracks(load_ytvis(args.train_gt))
    if args.rules:
        print("| rule (round) | frames | correct | " + " | ".join(KINDS[1:]) + " | mean true IoU | IoU >= 0.7 | eligible frames |")
        print("|---|---|---|" + "---|" * (len(KINDS) - 1) + "---|---|---|")
        for k in args.rounds:
            for text in args.rules:
                r = rule_row(args.run, k, gt_all, parse_rule(rule, text))
                c, n = r["kinds"], max(r["frames"], 1)
                print(f"| {text} ({k}; tau {r['tau']:.3f}) | {r['frames']} | {c['correct']} ({100 * c['correct'] / n:.1f} %) | "
                      + " | ".join(str(c[kind]) for kind in KINDS[1:])
                      + f" | {r['mean_true_iou'] or 0:.3f} | {100 * (r['iou_ge_0.7'] or 0):.0f} % | {r['eligible_frames']} |")
        return
    rows = [round_loss(args.run, k, gt_all, rule) for k in args.rounds]
    print("\n".join(markdown(rows, args.run.name)))
    for r in rows:
        print(f"round {r['round']} calibration (IoU^ bin: frames, mean true IoU):",
              "; ".join(f"{b['pred_iou'][0]:.1f}-{b['pred_iou'][1]:.1f}: {b['frames']}, {b['mean_true_iou']:.2f}"
                        for b in r["calibration"]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
