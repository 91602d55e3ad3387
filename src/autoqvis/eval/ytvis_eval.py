"""Class-agnostic YouTubeVIS AP/AR, number for number the official ``ytvoseval`` with ``useCats = 0``.

This is the protocol VideoCutLER and AutoQ-VIS report (``videocutler/eval_ytvis.py``). Every rule of
the official code is kept (see ``docs/evaluation.md`` and ``tests/reference/ytvis_eval/README.md``):

* video IoU = sum over frames of |d_t AND g_t| / sum over frames of |d_t OR g_t| (a frame present on
  one side only adds its area to the union; 0 when the union is empty);
* per video, detections in the official order (GT category id, then file order, then a stable sort by
  descending score), at most 100; GT in the same order;
* a track's area is the mean of its truthy per-frame areas (GT: as stored; results: from the masks),
  compared with the *closed* ranges all / small [0, 128^2] / medium [128^2, 256^2] / large [256^2, 1e10];
* COCO greedy matching per IoU threshold (0.50:0.05:0.95), crowd GT ignored and absorbing any number
  of detections with the plain IoU; ``tp / (tp + fp + np.spacing(1))``; 101 recall thresholds from
  ``np.linspace``; maxDets 1/10/100; -1 where an area range has no non-ignored GT.

Reading, checking and scoring the results (areas and IoUs from pycocotools) happen part by part in
worker processes (:mod:`autoqvis.eval.ytvis_parts`); the ordering, matching and accumulation over the
small IoU matrices happen here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.errors import AutoQVISError
from ..core.tracks import RLE
from ..data.rle_batch import counts_problems, gc_paused, is_canonical, scan_frames
from ..data.ytvis import YTVISDataset, load_ytvis
from .ytvis_parts import ResultsSource, Scored, Setting, first_per_video, run_parts, truthy_mean

__all__ = ["evaluate", "evaluate_detailed", "format_summary", "truthy_mean", "match_video",
           "accumulate", "summarize", "EvalResult", "STAT_KEYS"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # (T,)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)  # (R,)
MAX_DETS = (1, 10, 100)  # (M,)
AREA_RANGES = np.array([[0**2, 1e5**2], [0**2, 128**2], [128**2, 256**2], [256**2, 1e5**2]])  # (A, 2)
AREA_LABELS = ("all", "small", "medium", "large")
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class VideoEval:
    """One video after IoU and matching (A area ranges, T IoU thresholds)."""

    video_id: int
    iou: np.ndarray  # (D, G) float video IoU, detections in the official order, GT as GroundTruthVideo
    dt_scores: np.ndarray  # (D,)
    matched: np.ndarray  # (A, T, D) bool, detection matched to some GT
    dt_ignore: np.ndarray  # (A, T, D) bool
    gt_ignore: np.ndarray  # (A, G) bool


@dataclass
class EvalResult:
    """stats: the 12 numbers; precision (T, R, 1, A, M); recall (T, 1, A, M); per-video IoU matrices."""

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    video_iou: dict[int, dict[str, Any]]  # video id -> {"dt_result_index", "gt_id", "iou" (D, G)}
    videos: list[VideoEval] = field(default_factory=list)  # what accumulate() ran on (bootstraps resample it)


# ------------------------------------------------------------------------------------ per video
def match_video(iou: np.ndarray, gt_crowd: np.ndarray, gt_ignore: np.ndarray,
                dt_out_of_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching for all area ranges and IoU thresholds at once.

    iou: (D, G) with detections in score order; gt_crowd: (G,) bool; gt_ignore: (A, G) bool;
    dt_out_of_range: (A, D) bool. Returns matched (A, T, D) bool and dt_ignore (A, T, D) bool.
    Each detection takes the available GT with the highest IoU >= threshold, non-ignored GT first,
    the later GT winning a tie (the official scan order); crowd GT stay available.
    """
    num_dt, num_gt = iou.shape
    num_a, num_t = gt_ignore.shape[0], len(IOU_THRESHOLDS)
    matched = np.zeros((num_a, num_t, num_dt), dtype=bool)
    dt_ignore = np.zeros((num_a, num_t, num_dt), dtype=bool)
    gt_taken = np.zeros((num_a, num_t, num_gt), dtype=bool)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, 1)
    ignored = gt_ignore[:, None, :]  # (A, 1, G)
    rows_a, rows_t = np.indices((num_a, num_t))
    candidates = np.flatnonzero(iou.max(1) >= thresholds.min()) if num_gt else []
    for d in candidates:
        above = (iou[d] >= thresholds)[None]  # (1, T, G)
        free = above & (~gt_taken | gt_crowd)  # (A, T, G)
        regular = free & ~ignored
        pool = np.where(regular.any(-1, keepdims=True), regular, free & ignored)
        found = pool.any(-1)  # (A, T)
        if not found.any():
            continue
        best = num_gt - 1 - np.where(pool, iou[d], -1.0)[..., ::-1].argmax(-1)  # last of the maxima
        a, t, g = rows_a[found], rows_t[found], best[found]
        matched[a, t, d] = True
        dt_ignore[a, t, d] = gt_ignore[a, g]
        gt_taken[a, t, g] = True
    dt_ignore |= ~matched & dt_out_of_range[:, None, :]
    return matched, dt_ignore


# ------------------------------------------------------------------------------------ dataset level
def accumulate(evals: Sequence[VideoEval]) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, 1, A, M) and recall (T, 1, A, M) over videos in ascending id order (-1: undefined)."""
    num_t, num_r, num_a, num_m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, 1, num_a, num_m))
    recall = -np.ones((num_t, 1, num_a, num_m))
    if not evals:
        return precision, recall
    scores = np.concatenate([e.dt_scores for e in evals])
    rank = np.concatenate([np.arange(len(e.dt_scores)) for e in evals])
    matched = np.concatenate([e.matched for e in evals], axis=-1)  # (A, T, N)
    dt_ignore = np.concatenate([e.dt_ignore for e in evals], axis=-1)
    num_regular_gt = [sum(int(np.count_nonzero(e.gt_ignore[a] == 0)) for e in evals) for a in range(num_a)]
    for m, max_det in enumerate(MAX_DETS):
        keep = np.flatnonzero(rank < max_det)
        order = keep[np.argsort(-scores[keep], kind="mergesort")]  # the same for every area range
        for a in range(num_a):
            if num_regular_gt[a] == 0:
                continue
            tm, ti = matched[a][:, order], dt_ignore[a][:, order]
            p, r = _precision_recall(tm & ~ti, ~tm & ~ti, num_regular_gt[a])
            precision[:, :, 0, a, m], recall[:, 0, a, m] = p, r
    return precision, recall


def _precision_recall(tps: np.ndarray, fps: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """tps, fps: (T, N) bool in score order -> precision at the recall thresholds (T, R), final recall (T,)."""
    num_t, n = tps.shape
    tp = np.cumsum(tps, axis=1).astype(float)
    fp = np.cumsum(fps, axis=1).astype(float)
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope, from the right
    q = np.zeros((num_t, len(RECALL_THRESHOLDS)))
    recall = rc[:, -1] if n else np.zeros(num_t)
    for t in range(num_t):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        ok = idx < n
        q[t, ok] = pr[t, idx[ok]]
    return q, recall


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 summary numbers of ``summarize()`` (means over the defined entries; -1 if none)."""

    def mean(ap: bool, iou_thr: float | None = None, area: str = "all", max_dets: int = 100) -> float:
        a = [i for i, label in enumerate(AREA_LABELS) if label == area]
        m = [i for i, md in enumerate(MAX_DETS) if md == max_dets]
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, a, m] if ap else s[:, :, a, m]
        return float(np.mean(s[s > -1])) if len(s[s > -1]) else -1.0

    values = [mean(True), mean(True, 0.5), mean(True, 0.75), mean(True, area="small"),
              mean(True, area="medium"), mean(True, area="large"), mean(False, max_dets=1),
              mean(False, max_dets=10), mean(False), mean(False, area="small"),
              mean(False, area="medium"), mean(False, area="large")]
    return dict(zip(STAT_KEYS, values))


def format_summary(stats: dict[str, float]) -> list[str]:
    """The 12 lines the official ``summarize()`` prints."""
    specs = [(1, None, "all", 100), (1, 0.5, "all", 100), (1, 0.75, "all", 100), (1, None, "small", 100),
             (1, None, "medium", 100), (1, None, "large", 100), (0, None, "all", 1), (0, None, "all", 10),
             (0, None, "all", 100), (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100)]
    lines = []
    for key, (ap, thr, area, max_dets) in zip(STAT_KEYS, specs):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        iou = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}" if thr is None else f"{thr:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {stats[key]:0.3f}")
    return lines


# ------------------------------------------------------------------------------------ entry points
@dataclass
class GroundTruthVideo:
    """One GT video's tracks in the official order (category rank, then file order): G of them."""

    video_id: int
    size: list[int]  # [h, w]
    gt_ids: list[int]  # (G,)
    segmentations: list[list[RLE | None]]  # G x L
    area: np.ndarray  # (G,) float mean of the truthy stored areas
    crowd: np.ndarray  # (G,) bool


def ground_truth_videos(gt: YTVISDataset, cat_rank: dict[int, int] | None) -> list[GroundTruthVideo]:
    """Every GT video, ascending id; annotations of categories not in ``cat_rank`` dropped (None: keep all)."""
    out = []
    for video in sorted(gt.videos, key=lambda v: v.id):
        anns = [a for a in gt.annotations_of(video.id) if cat_rank is None or a.category_id in cat_rank]
        anns.sort(key=lambda a: 0 if cat_rank is None else cat_rank[a.category_id])  # stable: file order within
        out.append(GroundTruthVideo(video.id, [video.height, video.width], [a.id for a in anns],
                                    [a.segmentations for a in anns],
                                    np.array([_stored_mean_area(a.areas) for a in anns], dtype=np.float64),
                                    np.array([bool(a.iscrowd) for a in anns], dtype=bool)))
    return out


def _stored_mean_area(areas: Sequence[float | None]) -> float:
    truthy = [a for a in areas if a]  # null and 0 are both skipped, as the official _prepare
    return float(np.array(truthy).mean()) if truthy else 0.0


def check_ground_truth(videos: Sequence[GroundTruthVideo]) -> None:
    """A dataset built or edited in code (not freshly loaded) may hold masks of another size or
    malformed ones, which would silently give wrong numbers: check them all (GT is small)."""
    where = [(v, g) for v in videos for g in range(len(v.gt_ids))]
    odd, frames = scan_frames([v.segmentations[g] for v, g in where], [v.size for v, _ in where])
    if odd:
        v, g = where[odd[0]]
        t = next(t for t, s in enumerate(v.segmentations[g]) if s is not None and not is_canonical(s, v.size))
        problem = f"not a compressed RLE of the video's size {v.size}"
    else:
        problems = counts_problems(frames.counts, frames.n_pixels)
        k = next((k for k, p in enumerate(problems) if p is not None), None)
        if k is None:
            return
        track, t = frames.locate(k)
        (v, g), problem = where[track], f"malformed RLE: {problems[k]}"
    raise AutoQVISError(f"ground truth annotation {v.gt_ids[g]} (video {v.video_id}): segmentations[{t}]: {problem}")


def evaluate_videos(gt_videos: Sequence[GroundTruthVideo], scored: Scored, max_dets: int = MAX_DETS[-1],
                    ) -> tuple[list[GroundTruthVideo], list[np.ndarray], list[VideoEval]]:
    """Order, keep the first ``max_dets`` per video and match, for every video with GT or results.

    gt_videos: every GT video, ascending id (:func:`ground_truth_videos`), the order of the video
    positions in ``scored``. Returns the evaluated GT videos, the file indices of their detections
    (official order) and their VideoEvals.
    """
    kept = first_per_video(scored.video, scored.score, scored.cat_rank, max_dets)
    with_results = set(np.unique(scored.video).tolist())
    lo, hi = AREA_RANGES[:, :1], AREA_RANGES[:, 1:]  # closed ranges, as the official code
    videos, indices, evals = [], [], []
    for position, v in enumerate(gt_videos):
        if not v.gt_ids and position not in with_results:
            continue
        index = kept.get(position, np.zeros(0, dtype=np.int64))
        rows = scored.rows.get(position)
        if rows is not None:
            pos = np.argsort(rows.index, kind="stable")
            at = pos[np.searchsorted(rows.index[pos], index)]  # each kept detection's row
            iou, dt_area = rows.iou[at], rows.area[at]
        else:
            iou, dt_area = np.zeros((0, len(v.gt_ids))), np.zeros(0)
        gt_ignore = v.crowd[None, :] | (v.area[None, :] < lo) | (v.area[None, :] > hi)
        dt_out = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)
        matched, dt_ignore = match_video(iou, v.crowd, gt_ignore, dt_out)
        videos.append(v)
        indices.append(index)
        evals.append(VideoEval(v.video_id, iou, scored.score[index], matched, dt_ignore, gt_ignore))
    return videos, indices, evals


@gc_paused
def evaluate_detailed(gt: YTVISDataset | str | os.PathLike, results: list | str | os.PathLike,
                      workers: int | None = None, check_masks: bool = False) -> EvalResult:
    """Validate, then evaluate: stats, precision/recall arrays and per-video IoU matrices.

    Results are read (a file: in parts), checked (structure, size, counts syntax; the runs of every
    scored result's masks must cover the frame, ``check_masks=True`` asks the same of the others) and
    scored on ``workers``
    processes (default up to 2). A ground truth given as a dataset is checked again (it may have been
    edited in code); one given as a path is loaded and checked by ``load_ytvis``.
    """
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    loaded_here = not isinstance(gt, YTVISDataset)
    gt = load_ytvis(gt, workers=workers) if loaded_here else gt
    cat_rank = {c["id"]: k for k, c in enumerate(sorted(gt.categories, key=lambda c: c["id"]))} or None
    gt_videos = ground_truth_videos(gt, cat_rank)
    if not loaded_here:
        check_ground_truth(gt_videos)
    source = (ResultsSource.from_list(results, "<results list>", workers) if isinstance(results, list)
              else ResultsSource.from_file(Path(results), workers))
    setting = Setting(source, sorted(gt.videos, key=lambda v: v.id), [v.segmentations for v in gt_videos],
                      cat_rank, check_masks, MAX_DETS[-1])
    videos, indices, evals = evaluate_videos(gt_videos, run_parts(setting, workers))
    precision, recall = accumulate(evals)
    ious = {v.video_id: {"dt_result_index": index.tolist(), "gt_id": v.gt_ids, "iou": e.iou}
            for v, index, e in zip(videos, indices, evals)}
    return EvalResult(summarize(precision, recall), precision, recall, ious, evals)


def evaluate(gt: YTVISDataset | str | os.PathLike, results: list | str | os.PathLike,
             workers: int | None = None, check_masks: bool = False) -> dict[str, float]:
    """Class-agnostic YouTubeVIS metrics: {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl}.

    gt: a dataset or a YouTubeVIS json path; results: a results list or json path (validated against
    gt; see :func:`evaluate_detailed` for ``check_masks``). Values are fractions in [0, 1], -1 where an
    area range has no ground truth.
    """
    return evaluate_detailed(gt, results, workers, check_masks).stats
