"""How many pseudo-labels each quality threshold tau would keep, and how many of them are right.

Reads round 0's detections of a finished demo (or any `autoqvis selftrain` run) and the ground truth of its
unlabeled videos; for each tau, applies the round's selection (``autoqvis.selftrain.curate.curate_video``: NMS,
score filter, Q^t = s * IoU^t, S^t = Q^t >= tau, a track kept with >= 2 selected non-empty frames) and prints the retained tracks, their selected frames and the share of those frames
whose true IoU with the best-matching ground-truth track is >= 0.5: the precision side of the tau choice
(benchmarks/RESULTS.md, "Demo").

    python benchmarks/demo_tau_sweep.py demo_out/run demo_out/world/train_gt.json
"""

from __future__ import annotations

import argparse
import sys

from autoqvis.data.ytvis import load_ytvis
from autoqvis.eval.analysis import TRUE_IOU_GOOD, gt_tracks, true_ious
from autoqvis.selftrain.curate import SelectionRule, curate_video
from autoqvis.selftrain.pseudo_label import iter_detection_file
from autoqvis.selftrain.selection import num_selected_nonempty

TAUS = (0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def sweep(run_dir: str, gt_path: str, taus: tuple[float, ...] = TAUS, min_frames: int = 2) -> list[dict]:
    """One row per tau: {tau, tracks, frames, precision} over round 0's detections."""
    detections = dict(iter_detection_file(f"{run_dir}/round_0/detections.jsonl"))
    gt = gt_tracks(load_ytvis(gt_path), detections.keys())
    rows = []
    for tau in taus:
        tracks = frames = good = 0
        for vid, dets in detections.items():
            kept = curate_video(dets, SelectionRule(tau=tau, min_selected_frames=min_frames)).retained
            frame_iou, _ = true_ious(kept, gt[vid])
            for det, ious in zip(kept, frame_iou):
                tracks += 1
                frames += num_selected_nonempty(det)
                good += sum(1 for t, seg in enumerate(det.segmentations)
                            if seg is not None and det.selected[t] and ious[t] >= TRUE_IOU_GOOD)
        rows.append({"tau": tau, "tracks": tracks, "frames": frames, "precision": good / frames if frames else None})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a self-training run folder (demo_out/run)")
    p.add_argument("gt", help="ground truth of its unlabeled videos (demo_out/world/train_gt.json)")
    args = p.parse_args()
    print("| tau | retained tracks | selected frames | precision (true IoU >= 0.5) |")
    print("|---:|---:|---:|---:|")
    for r in sweep(args.run_dir, args.gt):
        prec = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        print(f"| {r['tau']} | {r['tracks']} | {r['frames']} | {prec} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
