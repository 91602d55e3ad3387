"""Why AutoQ-VIS's round 2 scores below its round 1 on the toy world (issue 16): what each round trained on and
what it predicts, from the runs bench_selftrain.py left (no training, no inference; ~1 CPU-minute per seed).

    .venv/bin/python benchmarks/round2_drop.py --run /tmp/bs17/init-assets-toy_init_r1500_tau0.7 --world /tmp/bs17/toy
        [--seeds 0 1 2 3 4] [--block round2_drop]

Per seed and round k = 1, 2 of ``seed*/full`` (and round 2 of each ``seed*/<--diagnoses>``, bench_selftrain's
round-2 diagnoses):
- the training set of round k (``round_{k-1}/pseudo_labels.json``): its selected non-empty frames by their true IoU
  with the best-matching ground-truth track (as the run's own ``selected_precision``): right (>= 0.5), partial
  (0.1-0.5), wrong (< 0.1); and the share of the true objects' frames in its videos that it labels right;
- the frames it trains on (eq. 14's eligible frames of its videos with >= 2 of them): how many, and per such
  frame the true objects present that no label covers at IoU >= 0.5 (DropLoss's case);
- the round-k model on val (``round_k/val_results.json``): its predictions of score >= 0.5, matched greedily by
  score to the val ground truth at video IoU >= 0.5 (the YTVIS rule): true, duplicate (IoU >= 0.5 with a track
  already taken), partial (best video IoU 0.1-0.5), background (< 0.1).
Writes the table as the block ``round2_drop`` under ``## Self-training`` of benchmarks/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from results_md import write_block  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from autoqvis.core.tracks import frame_ious, video_iou
from autoqvis.data.ytvis import load_ytvis
from autoqvis.eval.analysis import best_gt_matches, gt_tracks
from autoqvis.selftrain.curate import read_training_set
from autoqvis.selftrain.selection import training_frames

SCORE = 0.5  # a prediction a user would keep


def label_counts(pseudo_labels: Path, gt: dict[int, list]) -> dict[str, float]:
    """The training set's selected non-empty frames by true IoU, and its share of the true objects' frames."""
    _, state = read_training_set(pseudo_labels, check_masks=False)
    right = partial = wrong = 0
    right_iou = 0.0
    labelled = set()  # (video, gt track, frame) labelled right at least once
    object_frames = 0
    for vid, dets in state.items():
        tracks = gt.get(vid, [])
        object_frames += sum(seg is not None for t in tracks for seg in t)
        frame_iou, _, best = best_gt_matches(dets, tracks)
        for i, (d, f) in enumerate(zip(dets, frame_iou)):
            for t, seg in enumerate(d.segmentations):
                if seg is None or not d.selected[t]:
                    continue
                if f[t] >= 0.5:
                    right += 1
                    right_iou += float(f[t])
                    labelled.add((vid, int(best[i]), t))
                elif f[t] >= 0.1:
                    partial += 1
                else:
                    wrong += 1
    n = right + partial + wrong
    trained, unlabelled = trained_frame_counts(state, gt)
    return {"videos": len(state), "tracks": sum(len(d) for d in state.values()), "frames": n, "right": right,
            "partial": partial, "wrong": wrong, "right_iou": right_iou / right if right else 0.0,
            "coverage": len(labelled) / object_frames if object_frames else 0.0,
            "trained": trained, "unlabelled": unlabelled / trained if trained else 0.0}


def trained_frame_counts(state: dict[int, list], gt: dict[int, list]) -> tuple[int, int]:
    """(frames the set trains on, true objects in them that no label of the frame covers at IoU >= 0.5)."""
    frames = unlabelled = 0
    for vid, dets in state.items():
        tracks = gt.get(vid, [])
        ts = training_frames(dets, 2)
        iou = frame_ious([d.segmentations for d in dets], tracks) if tracks and ts else None  # (T, N, M)
        for t in ts:
            frames += 1
            present = [j for j, tr in enumerate(tracks) if tr[t] is not None]
            covered = {j for j in present for i, d in enumerate(dets) if d.segmentations[t] is not None
                       and iou[t, i, j] >= 0.5}
            unlabelled += len(present) - len(covered)
    return frames, unlabelled


def prediction_counts(val_results: Path, gt: dict[int, list]) -> dict[str, int]:
    """The model's val predictions of score >= SCORE: true / duplicate / partial / background."""
    by_video: dict[int, list[dict]] = {}
    for r in json.loads(val_results.read_text()):
        if r["score"] >= SCORE:
            by_video.setdefault(int(r["video_id"]), []).append(r)
    out = {"true": 0, "duplicate": 0, "partial": 0, "background": 0}
    for vid, preds in by_video.items():
        preds.sort(key=lambda r: -r["score"])
        tracks = gt.get(vid, [])
        iou = video_iou([p["segmentations"] for p in preds], tracks)[0] if tracks else np.zeros((len(preds), 0))
        taken: set[int] = set()
        for row in iou:
            free = [g for g in np.argsort(-row) if row[g] >= 0.5 and g not in taken]
            if free:
                taken.add(int(free[0]))
                out["true"] += 1
            elif row.size and row.max() >= 0.5:
                out["duplicate"] += 1
            elif row.size and row.max() >= 0.1:
                out["partial"] += 1
            else:
                out["background"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a bench_selftrain work folder (holds seed*/full)")
    ap.add_argument("--world", type=Path, required=True, help="its toy world (train_gt.json, val.json)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--diagnoses", nargs="*", default=[], metavar="VARIANT",
                    help="add round 2 of these bench_selftrain diagnoses (clean, clean_same, repeat; round 1 is full's)")
    ap.add_argument("--block", default="round2_drop")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    train_gt = gt_tracks(load_ytvis(args.world / "train_gt.json", check_masks=False))
    val_gt = gt_tracks(load_ytvis(args.world / "val.json", check_masks=False))
    lines = ["| seed | run, round | val AP50 | train: videos | tracks | label frames | right / partial / wrong | mean IoU of the right | "
             "coverage of true object-frames | trained frames | unlabelled objects per trained frame | "
             "val preds (score >= 0.5): true / dup. / partial / bg |",
             "|---" * 12 + "|"]
    runs = [("full", 1), ("full", 2)] + [(v, 2) for v in args.diagnoses]
    per: dict[tuple[str, int], list] = {r: [] for r in runs}
    for seed in args.seeds:
        for variant, k in runs:
            run = args.run / f"seed{seed}" / variant
            lab = label_counts(run / f"round_{k - 1}" / "pseudo_labels.json", train_gt)
            pred = prediction_counts(run / f"round_{k}" / "val_results.json", val_gt)
            ap50 = 100 * json.loads((run / f"round_{k}" / "metrics.json").read_text())["AP50"]
            per[variant, k].append((ap50, lab, pred))
            lines.append(f"| {seed} | {variant} {k} | {ap50:.1f} | {lab['videos']} | {lab['tracks']} | {lab['frames']} | "
                         f"{lab['right']} / {lab['partial']} / {lab['wrong']} | {lab['right_iou']:.3f} | "
                         f"{lab['coverage']:.2f} | {lab['trained']} | {lab['unlabelled']:.2f} | "
                         + " / ".join(str(pred[c]) for c in ("true", "duplicate", "partial", "background")) + " |")
    for variant, k in runs:
        ap50 = np.mean([a for a, _, _ in per[variant, k]])
        lab = {c: np.mean([x[c] for _, x, _ in per[variant, k]]) for c in ("videos", "tracks", "frames", "right", "partial",
                                                                 "wrong", "right_iou", "coverage", "trained",
                                                                 "unlabelled")}
        pred = {c: np.mean([x[c] for _, _, x in per[variant, k]])
                for c in ("true", "duplicate", "partial", "background")}
        lines.append(f"| mean | {variant} {k} | {ap50:.1f} | {lab['videos']:.0f} | {lab['tracks']:.0f} | {lab['frames']:.0f} | "
                     f"{lab['right']:.0f} / {lab['partial']:.1f} / {lab['wrong']:.1f} | {lab['right_iou']:.3f} | "
                     f"{lab['coverage']:.2f} | {lab['trained']:.0f} | {lab['unlabelled']:.2f} | "
                     + " / ".join(f"{pred[c]:.1f}" for c in ("true", "duplicate", "partial", "background")) + " |")
    cmd = (f"python benchmarks/round2_drop.py --run {args.run} --world {args.world} --seeds "
           + " ".join(map(str, args.seeds)) + (f" --diagnoses {' '.join(args.diagnoses)}" if args.diagnoses else ""))
    block = "\n".join([f"`{cmd}` (reads the runs of the blocks `bench_selftrain_calibrated_one_machine` "
                       "and `bench_selftrain_round2`; round k's training set is the labels round k-1 selected; right / partial / wrong: selected non-empty "
                       "frames of true IoU >= 0.5 / 0.1-0.5 / < 0.1, and the right ones' mean true IoU; coverage: share of the true objects' frames in "
                       "its videos labelled right; trained frames: eq. 14's eligible frames, and the true objects in them no label covers "
                       "at IoU >= 0.5; val predictions greedily matched by score at video IoU 0.5).",
                       "", *lines])
    print(block)
    if not args.no_write:
        write_block("Self-training", args.block, block)


if __name__ == "__main__":
    main()
