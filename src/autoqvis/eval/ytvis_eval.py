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

Areas and intersections come from pycocotools: one ``area`` pass per video and one RLE ``iou`` call
per frame for all its detection/GT pairs (its C code parses each string once per call and skips
pairs whose boxes do not overlap); videos are spread over a process pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..data.rle_batch import counts_problems, counts_syntax_problem, forked_pool, gc_paused, is_canonical, use_pool
from ..data.ytvis import RLE, YTVISDataset, load_results, load_ytvis, rle_area_array, to_rle
from ..errors import AutoQVISError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # (T,)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)  # (R,)
MAX_DETS = (1, 10, 100)  # (M,)
AREA_RANGES = np.array([[0**2, 1e5**2], [0**2, 128**2], [128**2, 256**2], [256**2, 1e5**2]])  # (A, 2)
AREA_LABELS = ("all", "small", "medium", "large")
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class VideoInput:
    """What the evaluator needs of one video, in the official order (G GT tracks, D <= 100 detections).

    The results of the video (``checks``) are validated where the video is evaluated, so that a
    worker process reads each of its RLEs once.
    """

    video_id: int
    size: list[int]  # [h, w]
    gt_ids: list[int]  # (G,)
    gt_segmentations: list[list[RLE | None]]  # G x L, validated
    gt_area: np.ndarray  # (G,) float mean of the truthy stored areas
    gt_crowd: np.ndarray  # (G,) bool
    dt_index: np.ndarray  # (D,) int position in the results list, official order
    dt_scores: np.ndarray  # (D,) float, descending
    checks: list[tuple[int, list[Any]]]  # (position, segmentations) of every result of this video
    results_name: str  # for messages


@dataclass
class VideoEval:
    """One video after IoU and matching (A area ranges, T IoU thresholds)."""

    video_id: int
    iou: np.ndarray  # (D, G) float video IoU, rows/columns as in VideoInput
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


# ------------------------------------------------------------------------------------ per video
def video_iou(dt_segmentations: Sequence[Sequence[RLE | None]], gt_segmentations: Sequence[Sequence[RLE | None]],
              ) -> tuple[np.ndarray, np.ndarray]:
    """Spatio-temporal IoU of every detection/GT track pair of one video (valid RLEs of one size).

    dt_segmentations: D tracks x L frames, gt_segmentations: G x L (RLE or None).
    Returns iou (D, G) float64 = sum_t |d_t & g_t| / sum_t |d_t | g_t| (0 if the union is empty) and
    dt_areas (D, L) int64 per-frame detection areas (0 where None).
    Sums are exact integers, so the division gives the official float bit for bit.
    """
    num_dt, num_gt = len(dt_segmentations), len(gt_segmentations)
    length = len(dt_segmentations[0]) if num_dt else 0
    dt_areas = _track_areas(dt_segmentations, length)
    if num_dt == 0 or num_gt == 0:
        return np.zeros((num_dt, num_gt)), dt_areas
    gt_areas = _track_areas(gt_segmentations, length)
    inter = np.zeros((num_dt, num_gt), dtype=np.int64)
    dt_frames, gt_frames = list(zip(*dt_segmentations)), list(zip(*gt_segmentations))
    for t in np.flatnonzero((dt_areas > 0).any(0) & (gt_areas > 0).any(0)):
        di, gi = np.flatnonzero(dt_areas[:, t]), np.flatnonzero(gt_areas[:, t])  # empty masks add nothing
        dts, gts = dt_frames[t], gt_frames[t]
        # iscrowd=1 makes pycocotools divide by the detection's area: |d & g| = round(o * |d|) exactly.
        o = mask_utils.iou([dts[i] for i in di], [gts[j] for j in gi], [1] * len(gi))
        if (o < 0).any():  # pycocotools' answer to masks of different sizes
            raise AutoQVISError(f"frame {t}: masks of different sizes")
        inter[np.ix_(di, gi)] += np.rint(o * dt_areas[di, t][:, None]).astype(np.int64)
    union = dt_areas.sum(1)[:, None] + gt_areas.sum(1)[None, :] - inter
    iou = np.divide(inter.astype(np.float64), union.astype(np.float64),
                    out=np.zeros((num_dt, num_gt)), where=union > 0)
    return iou, dt_areas


def _track_areas(tracks: Sequence[Sequence[RLE | None]], length: int) -> np.ndarray:
    """(N, L) int64 pixel counts (0 where None), pycocotools over all present frames at once."""
    flat = [r for track in tracks for r in track]
    present = np.fromiter((r is not None for r in flat), dtype=bool, count=len(flat))
    areas = np.zeros(len(flat), dtype=np.int64)
    areas[present] = rle_area_array([r for r in flat if r is not None])
    return areas.reshape(len(tracks), length)


def truthy_mean(areas: np.ndarray) -> np.ndarray:
    """Mean of the non-zero entries of each row, 0 if none: (N, L) int -> (N,) float64.

    Integer sums are exact, so this equals the official ``np.array([a for a in areas if a]).mean()``.
    """
    count = (areas > 0).sum(1)
    return np.divide(areas.sum(1).astype(np.float64), count, out=np.zeros(len(areas)), where=count > 0)


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


def evaluate_video(job: VideoInput) -> VideoEval:
    """Check the video's masks, then IoU + matching for every area range."""
    _check_ground_truth(job)
    iou, dt_areas = video_iou(_checked_detections(job), job.gt_segmentations)
    lo, hi = AREA_RANGES[:, :1], AREA_RANGES[:, 1:]  # closed ranges, as the official code
    gt_ignore = job.gt_crowd[None, :] | (job.gt_area[None, :] < lo) | (job.gt_area[None, :] > hi)
    dt_area = truthy_mean(dt_areas)
    dt_out = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)
    matched, dt_ignore = match_video(iou, job.gt_crowd, gt_ignore, dt_out)
    return VideoEval(job.video_id, iou, job.dt_scores, matched, dt_ignore, gt_ignore)


def _checked_detections(job: VideoInput) -> list[list[RLE | None]]:
    """Check every result of the video (structure, size, counts syntax; polygons and uncompressed
    RLE converted) and return the D evaluated detections' segmentations.

    The run totals are left to pycocotools, as the official code does, unless the results were
    loaded with ``check_masks`` (cost: one more read of every string)."""
    h, w = job.size
    tracks: dict[int, list[RLE | None]] = {}
    for k, segs in job.checks:
        if not all(s is None or is_canonical(s, job.size) for s in segs):
            loc = f"{job.results_name}: result {k} (video {job.video_id})"
            segs = [to_rle(s, h, w, f"{loc}: segmentations[{t}]") for t, s in enumerate(segs)]
        tracks[k] = segs
    where = [(k, t) for k, segs in tracks.items() for t, s in enumerate(segs) if s is not None]
    problem = counts_syntax_problem([tracks[k][t]["counts"] for k, t in where])
    if problem is not None:
        k, t = where[problem[0]]
        raise AutoQVISError(f"{job.results_name}: result {k} (video {job.video_id}): "
                            f"segmentations[{t}]: malformed RLE: {problem[1]}")
    return [tracks[k] for k in job.dt_index.tolist()]


def _check_ground_truth(job: VideoInput) -> None:
    """A dataset built in code (not loaded) may hold masks of another size or malformed ones, which
    would silently give wrong numbers: check them here (GT is small)."""
    where = [(g, t) for g, segs in enumerate(job.gt_segmentations) for t, s in enumerate(segs) if s is not None]
    segs = [job.gt_segmentations[g][t] for g, t in where]
    wrong = next((k for k, s in enumerate(segs) if not is_canonical(s, job.size)), None)
    if wrong is not None:
        problem: tuple[int, str] | None = (wrong, f"not a compressed RLE of the video's size {job.size}")
    else:
        problems = counts_problems([s["counts"] for s in segs], np.full(len(segs), job.size[0] * job.size[1]))
        problem = next(((k, f"malformed RLE: {p}") for k, p in enumerate(problems) if p is not None), None)
    if problem is not None:
        g, t = where[problem[0]]
        raise AutoQVISError(f"ground truth annotation {job.gt_ids[g]} (video {job.video_id}): "
                            f"segmentations[{t}]: {problem[1]}")


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
    for a in range(num_a):
        if num_regular_gt[a] == 0:
            continue
        for m, max_det in enumerate(MAX_DETS):
            keep = rank < max_det
            order = np.argsort(-scores[keep], kind="mergesort")
            tm, ti = matched[a][:, keep][:, order], dt_ignore[a][:, keep][:, order]
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
def prepare_videos(gt: YTVISDataset, results: Sequence[dict[str, Any]], results_name: str = "results",
                   ) -> list[VideoInput]:
    """Group GT and results per video in the official order; drop category ids the GT does not list."""
    cat_order = {c["id"]: k for k, c in enumerate(sorted(gt.categories, key=lambda c: c["id"]))}
    keep_all = not cat_order  # a GT file without categories: nothing to filter against
    by_video: dict[int, list[int]] = {}
    for k, res in enumerate(results):
        by_video.setdefault(res["video_id"], []).append(k)
    jobs = []
    for video in sorted(gt.videos, key=lambda v: v.id):
        anns = [a for a in gt.annotations_of(video.id) if keep_all or a.category_id in cat_order]
        anns.sort(key=lambda a: 0 if keep_all else cat_order[a.category_id])  # stable: file order within
        mine = by_video.get(video.id, [])
        kept = [k for k in mine if keep_all or results[k]["category_id"] in cat_order]
        kept.sort(key=lambda k: 0 if keep_all else cat_order[results[k]["category_id"]])  # stable
        if not anns and not mine:
            continue
        index = np.array(kept, dtype=np.int64)
        scores = np.array([results[k]["score"] for k in kept], dtype=np.float64)
        order = np.argsort(-scores, kind="mergesort")[: MAX_DETS[-1]]
        jobs.append(VideoInput(
            video.id, [video.height, video.width], [a.id for a in anns], [a.segmentations for a in anns],
            np.array([_stored_mean_area(a.areas) for a in anns], dtype=np.float64),
            np.array([bool(a.iscrowd) for a in anns], dtype=bool),
            index[order], scores[order], [(k, results[k]["segmentations"]) for k in mine], results_name))
    return jobs


def _stored_mean_area(areas: Sequence[float | None]) -> float:
    truthy = [a for a in areas if a]  # null and 0 are both skipped, as the official _prepare
    return float(np.array(truthy).mean()) if truthy else 0.0


_JOBS: list[VideoInput] = []  # handed to forked workers without pickling the masks
_PARALLEL_MIN_RESULTS = 300  # results (tracks) below which the pool costs more than it saves


def _evaluate_job(i: int) -> VideoEval:
    return evaluate_video(_JOBS[i])


def run_videos(jobs: list[VideoInput], workers: int | None = None) -> list[VideoEval]:
    """evaluate_video over all jobs; with workers > 1 (default: up to 2) and enough work, a forked pool."""
    global _JOBS
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if not use_pool(workers, sum(len(j.checks) for j in jobs), _PARALLEL_MIN_RESULTS) or len(jobs) < 2:
        return [evaluate_video(j) for j in jobs]
    _JOBS = jobs
    try:
        with forked_pool(workers) as pool:
            return pool.map(_evaluate_job, range(len(jobs)), chunksize=max(1, len(jobs) // (8 * workers)))
    finally:
        _JOBS = []


@gc_paused
def evaluate_detailed(gt: YTVISDataset | str | os.PathLike, results: list | str | os.PathLike,
                      workers: int | None = None, check_masks: bool = False) -> EvalResult:
    """Validate, then evaluate: stats, precision/recall arrays and per-video IoU matrices.

    Results masks are checked per video in the worker processes (structure, size, counts syntax);
    check_masks=True also decodes every counts string to check its runs cover the frame.
    """
    gt = gt if isinstance(gt, YTVISDataset) else load_ytvis(gt, workers=workers)
    name = "<results list>" if isinstance(results, list) else str(results)
    results = load_results(results if isinstance(results, list) else Path(results), gt, workers=workers,
                           check_masks=check_masks)
    jobs = prepare_videos(gt, results, name)
    evals = run_videos(jobs, workers)
    precision, recall = accumulate(evals)
    ious = {j.video_id: {"dt_result_index": j.dt_index.tolist(), "gt_id": j.gt_ids, "iou": e.iou}
            for j, e in zip(jobs, evals)}
    return EvalResult(summarize(precision, recall), precision, recall, ious)


def evaluate(gt: YTVISDataset | str | os.PathLike, results: list | str | os.PathLike,
             workers: int | None = None, check_masks: bool = False) -> dict[str, float]:
    """Class-agnostic YouTubeVIS metrics: {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl}.

    gt: a dataset or a YouTubeVIS json path; results: a results list or json path (validated against
    gt; see :func:`evaluate_detailed` for ``check_masks``). Values are fractions in [0, 1], -1 where an
    area range has no ground truth.
    """
    return evaluate_detailed(gt, results, workers, check_masks).stats
