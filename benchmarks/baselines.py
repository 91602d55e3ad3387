"""Non-learned reference predictors: what AP a trained model has to beat on a dataset.

* ``full_frame``: one track per video whose mask is the whole frame in every frame (score 1).
* ``color_clusters``: k-means over the colours of all the video's pixels (one palette per video, so
  labels agree across frames), connected components of each colour cluster (small gaps closed,
  holes filled) as per-frame segments, linked frame to frame by Hungarian matching on mask IoU.
  A track's score is the fraction of the video's frames it covers. Nothing is learned; the only
  assumption is that objects are regions of coherent colour that persist over time.

Both return YTVIS result dicts (``video_id``, ``score``, ``category_id`` 1, ``segmentations``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2, vq
from scipy.optimize import linear_sum_assignment

from autoqvis.core.tracks import encode_track
from autoqvis.data.ytvis import YTVISDataset
from autoqvis.core.errors import AutoQVISError

MAX_TRACKS = 100  # the evaluator's largest maxDets


def full_frame_tracks(frames: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """frames uint8 (T, H, W, 3) -> [(1.0, bool (T, H, W) all True)]."""
    return [(1.0, np.ones(frames.shape[:3], dtype=bool))]


def color_segments(labels: np.ndarray, k: int, min_area: int, max_area: int) -> list[np.ndarray]:
    """Connected regions of each colour cluster in one frame.

    Args:
        labels: int (H, W) cluster index per pixel.
        k: number of clusters.
        min_area, max_area: pixel bounds on a kept region (after closing and hole filling).
    Returns:
        bool (H, W) masks.
    """
    out = []
    for c in range(k):
        region = ndimage.binary_fill_holes(ndimage.binary_closing(labels == c, iterations=1))
        parts, n = ndimage.label(region)
        if n == 0:
            continue
        areas = np.bincount(parts.ravel(), minlength=n + 1)
        for i in np.nonzero((areas >= min_area) & (areas <= max_area))[0]:
            if i != 0:
                out.append(parts == i)
    return out


def _iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    fa = np.stack(a).reshape(len(a), -1).astype(np.float32)
    fb = np.stack(b).reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


def link_segments(segments: list[list[np.ndarray]], shape: tuple[int, int], min_iou: float) -> list[np.ndarray]:
    """Chain per-frame segments into tracks: Hungarian matching on IoU with each track's latest mask.

    Args:
        segments: per frame, its bool (H, W) segments.
        shape: (H, W).
        min_iou: a match below this starts a new track instead.
    Returns:
        bool (T, H, W) per track (all-False where the track is absent).
    """
    t_len = len(segments)
    tracks: list[np.ndarray] = []
    last: list[np.ndarray] = []
    for t, segs in enumerate(segments):
        iou = _iou_matrix(last, segs)
        matched = set()
        if iou.size:
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= min_iou:
                    tracks[r][t], last[r] = segs[c], segs[c]
                    matched.add(c)
        for c, seg in enumerate(segs):
            if c not in matched:
                track = np.zeros((t_len, *shape), dtype=bool)
                track[t] = seg
                tracks.append(track)
                last.append(seg)
    return tracks


def color_cluster_tracks(
    frames: np.ndarray,
    k: int = 4,
    min_area_frac: float = 0.002,
    max_area_frac: float = 0.3,
    min_iou: float = 0.3,
    seed: int = 0,
) -> list[tuple[float, np.ndarray]]:
    """frames uint8 (T, H, W, 3) -> [(score, bool (T, H, W))], at most MAX_TRACKS, best first."""
    t, h, w, _ = frames.shape
    pixels = frames.reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(len(pixels), size=min(len(pixels), 20000), replace=False)]
    centroids, _ = kmeans2(sample, k, minit="++", seed=rng)
    labels = vq(pixels, centroids)[0].reshape(t, h, w)
    min_area, max_area = int(min_area_frac * h * w), int(max_area_frac * h * w)
    segments = [color_segments(labels[i], len(centroids), min_area, max_area) for i in range(t)]
    tracks = link_segments(segments, (h, w), min_iou)
    scored = [(float(tr.any(axis=(1, 2)).mean()), tr) for tr in tracks]
    scored.sort(key=lambda st: (-st[0], -int(st[1].sum())))
    return scored[:MAX_TRACKS]


BASELINES: dict[str, Callable[[np.ndarray], list[tuple[float, np.ndarray]]]] = {
    "full_frame": full_frame_tracks,
    "color_clusters": color_cluster_tracks,
}


def baseline_results(name: str, dataset: YTVISDataset) -> list[dict[str, Any]]:
    """Run baseline ``name`` on every video of ``dataset``; returns YTVIS result dicts."""
    if name not in BASELINES:
        raise AutoQVISError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    results = []
    for video in dataset.videos:
        frames = np.stack([dataset.read_frame(video, t) for t in range(video.length)])
        for score, masks in BASELINES[name](frames):
            segs = encode_track(masks)
            results.append({"video_id": video.id, "score": score, "category_id": 1, "segmentations": segs})
    return results


__all__ = ["BASELINES", "baseline_results", "color_cluster_tracks", "color_segments", "full_frame_tracks",
           "link_segments"]
