"""Pseudo-label quality against ground truth: the paper's Fig. 5, 6 and 7 as numbers.

Given pseudo-labels (Detections, with Q^t) and the ground-truth tracks of the same videos:
- each pseudo track is matched to the ground-truth track with the highest video-level IoU
  (sum over frames of intersections / sum of unions, as YouTubeVIS defines it); its *true IoU* per
  frame is the mask IoU with that track in that frame (0 where the video has no ground truth);
- Fig. 5: Spearman's rho of Q^t with the true IoU^t and of the score s with the true IoU^t, over every
  frame where the pseudo mask is non-empty (also per track: mean Q vs video IoU);
- Fig. 6: mean true IoU vs mean Q per size bucket of the pseudo mask. COCO buckets (small < 32^2,
  medium < 96^2 pixels, large) as the paper; because those absolute areas mean little on ~100-px toy
  frames, ALSO relative buckets: the same thresholds divided by a 640x480 COCO image (normalised area
  < 0.0033, < 0.030, larger);
- Fig. 7: histogram of ln(area / image area) of the non-empty masks of a label set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..core.fileio import atomic_write_json
from ..core.tracks import RLE, Detection, frame_ious, rle_area, video_iou
from . import plots

COCO_BUCKETS = {"small": 32.0**2, "medium": 96.0**2}  # upper bounds in pixels; large: the rest
COCO_IMAGE_AREA = 640.0 * 480.0
RELATIVE_BUCKETS = {k: v / COCO_IMAGE_AREA for k, v in COCO_BUCKETS.items()}
LOG_AREA_EDGES = np.linspace(-10.0, 0.0, 21)  # ln(normalised area); the first bin also takes smaller ones
TRUE_IOU_GOOD = 0.5  # a pseudo mask is "correct" at IoU >= 0.5 (Table 2's practical limit)


# ------------------------------------------------------------------------------------ matching
def true_ious(dets: list[Detection], gt_segmentations: Sequence[Sequence[RLE | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame and per-video IoU of each pseudo track with its best-matching ground-truth track.

    dets: N tracks of one video (T frames); gt_segmentations: M ground-truth tracks (T entries each).
    Returns (frame_iou float (N, T), video_iou float (N,)). Without ground truth both are 0.
    """
    frame, video, _ = best_gt_matches(dets, gt_segmentations)
    return frame, video


def best_gt_matches(dets: list[Detection], gt_segmentations: Sequence[Sequence[RLE | None]],
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``true_ious`` and the index (N,) of each track's best-matching ground-truth track (0 without ground truth)."""
    n = len(dets)
    num_frames = dets[0].num_frames if dets else 0
    if n == 0 or not gt_segmentations:
        return np.zeros((n, num_frames)), np.zeros(n), np.zeros(n, dtype=np.int64)
    segs = [d.segmentations for d in dets]
    iou = frame_ious(segs, gt_segmentations)  # (T, N, M)
    video, _ = video_iou(segs, gt_segmentations)  # (N, M)
    best = video.argmax(axis=1)  # (N,)
    return iou[:, np.arange(n), best].T, video[np.arange(n), best], best


# --------------------------------------------------------------------------------- statistics
def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho, or None where it is undefined (fewer than 3 points, or a constant input)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = spearmanr(x, y).statistic
    return None if not math.isfinite(rho) else float(rho)


def _bucket(area: float, bounds: dict[str, float]) -> str:
    if area < bounds["small"]:
        return "small"
    return "medium" if area < bounds["medium"] else "large"


def size_buckets(areas: np.ndarray, ious: np.ndarray, quality: np.ndarray, bounds: dict[str, float]) -> dict[str, Any]:
    """Fig. 6: per bucket the count, mean true IoU and mean Q (None for an empty bucket)."""
    names = np.array([_bucket(a, bounds) for a in areas])
    out = {}
    for name in ("small", "medium", "large"):
        m = names == name
        out[name] = {
            "count": int(m.sum()),
            "mean_iou": float(ious[m].mean()) if m.any() else None,
            "mean_quality": float(quality[m].mean()) if m.any() else None,
        }
    return out


def log_area_histogram(tracks: Iterable[Sequence[RLE | None]]) -> list[int]:
    """Fig. 7: counts of ln(mask area / image area) over LOG_AREA_EDGES, non-empty masks only."""
    values = []
    for segs in tracks:
        for seg in segs:
            if seg is not None:
                h, w = seg["size"]
                values.append(math.log(max(rle_area(seg), 1) / (h * w)))
    clipped = np.clip(np.asarray(values, dtype=np.float64), LOG_AREA_EDGES[0], LOG_AREA_EDGES[-1])
    return [int(c) for c in np.histogram(clipped, bins=LOG_AREA_EDGES)[0]]


# ------------------------------------------------------------------------------------- analysis
def collect_points(
    detections: dict[int, list[Detection]], gt: dict[int, list[list[RLE | None]]]
) -> dict[str, np.ndarray]:
    """Every non-empty pseudo frame as a point: quality, score, pred_iou (nan if absent), true IoU,
    area and normalised area; plus per-track arrays (``track_*``). Videos missing from ``gt`` count as
    having no ground-truth object."""
    cols: dict[str, list[float]] = {k: [] for k in ("quality", "score", "pred_iou", "iou", "area", "rel_area")}
    tracks: dict[str, list[float]] = {k: [] for k in ("track_quality", "track_score", "track_iou")}
    for video_id, dets in detections.items():
        frame_iou, video_iou = true_ious(dets, gt.get(video_id, []))
        for d, f_iou, v_iou in zip(dets, frame_iou, video_iou):
            q_track = []
            for t, seg in enumerate(d.segmentations):
                if seg is None:
                    continue
                h, w = seg["size"]
                q = d.quality[t] if d.quality else d.score
                cols["quality"].append(q)
                cols["score"].append(d.score)
                cols["pred_iou"].append(d.pred_iou[t] if d.pred_iou else math.nan)
                cols["iou"].append(f_iou[t])
                cols["area"].append(rle_area(seg))
                cols["rel_area"].append(rle_area(seg) / (h * w))
                q_track.append(q)
            if q_track:
                tracks["track_quality"].append(float(np.mean(q_track)))
                tracks["track_score"].append(d.score)
                tracks["track_iou"].append(float(v_iou))
    return {k: np.asarray(v, dtype=np.float64) for k, v in {**cols, **tracks}.items()}


def analyse(
    candidates: dict[int, list[Detection]],
    training_set: dict[int, list[Detection]],
    gt: dict[int, list[list[RLE | None]]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One round's analysis.

    candidates:   {video_id: detections after NMS, scored (Q^t, S^t)} — this round's predictions (Fig. 5, 6).
    training_set: {video_id: detections} — the round's pseudo-label set after selection and fusion (Fig. 7).
    gt:           {video_id: ground-truth tracks, each T RLEs or None} of the same videos.
    Returns (json-able summary, per-frame points for the plots).
    """
    p = collect_points(candidates, gt)
    has_pred_iou = p["pred_iou"].size > 0 and not np.isnan(p["pred_iou"]).any()
    sel = collect_points(training_set, gt)
    summary = {
        "num_videos": len(candidates),
        "num_tracks": int(p["track_iou"].size),
        "num_frames": int(p["iou"].size),
        "mean_true_iou": float(p["iou"].mean()) if p["iou"].size else None,
        "spearman": {
            "frame": {
                "quality": spearman(p["quality"], p["iou"]),
                "score": spearman(p["score"], p["iou"]),
                "pred_iou": spearman(p["pred_iou"], p["iou"]) if has_pred_iou else None,
            },
            "track": {
                "quality": spearman(p["track_quality"], p["track_iou"]),
                "score": spearman(p["track_score"], p["track_iou"]),
            },
        },
        "size_buckets": {
            "coco": size_buckets(p["area"], p["iou"], p["quality"], COCO_BUCKETS),
            "relative": size_buckets(p["rel_area"], p["iou"], p["quality"], RELATIVE_BUCKETS),
            "relative_bounds": RELATIVE_BUCKETS,
        },
        "training_set": {
            "num_videos": len(training_set),
            "num_tracks": int(sum(len(v) for v in training_set.values())),
            "mean_true_iou": float(sel["iou"].mean()) if sel["iou"].size else None,
            "frac_true_iou_ge_05": float((sel["iou"] >= TRUE_IOU_GOOD).mean()) if sel["iou"].size else None,
            **_selected_precision(training_set, gt),
        },
        "area_histogram": {
            "log_area_edges": LOG_AREA_EDGES.tolist(),
            "pseudo": log_area_histogram(d.segmentations for ds in training_set.values() for d in ds),
            "gt": log_area_histogram(s for tracks in gt.values() for s in tracks),
        },
    }
    return summary, p


def _selected_precision(training_set: dict[int, list[Detection]], gt: dict[int, list[list[RLE | None]]]) -> dict[str, Any]:
    """Of the selected non-empty frames: how many, and the share whose true IoU is >= 0.5."""
    good = total = 0
    for video_id, dets in training_set.items():
        frame_iou, _ = true_ious(dets, gt.get(video_id, []))
        for d, f_iou in zip(dets, frame_iou):
            for t, seg in enumerate(d.segmentations):
                if seg is not None and d.selected and d.selected[t]:
                    total += 1
                    good += int(f_iou[t] >= TRUE_IOU_GOOD)
    return {"selected_frames": total, "selected_precision": good / total if total else None}


def gt_tracks(dataset: Any, video_ids: Iterable[int] | None = None) -> dict[int, list[list[RLE | None]]]:
    """{video_id: [segmentations of each ground-truth annotation]} from an ``autoqvis.data.ytvis.YTVISDataset``."""
    ids = [v.id for v in dataset.videos] if video_ids is None else list(video_ids)
    return {v: [list(a.segmentations) for a in dataset.annotations_of(v)] for v in ids}


def write_analysis(summary: dict[str, Any], points: dict[str, np.ndarray], out_dir: Any, title: str = "") -> list[str]:
    """Write ``analysis.json`` and the Fig. 5 / Fig. 6 PNGs into out_dir; returns the PNG names."""
    out_dir = Path(out_dir)
    names = ["quality_vs_iou.png", "size_buckets.png"]
    plots.plot_quality_vs_iou(points, summary["spearman"]["frame"], out_dir / names[0], title)
    plots.plot_size_buckets(summary["size_buckets"], out_dir / names[1], title)
    atomic_write_json(out_dir / "analysis.json", summary, indent=1)
    return names
