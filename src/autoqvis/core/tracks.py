"""Tracks and masks, the things every stage shares: the track type, COCO RLE masks, frame and video IoU,
and the eligible-frames rule (eq. 14).

A mask is a COCO *compressed* RLE dict ``{"size": [h, w], "counts": str}`` (column-major runs, 0s first).
In a track, a frame where the object is absent holds ``None`` (YouTubeVIS writes null): :func:`encode_mask`
always returns an RLE (an annotation file may store an empty mask), and the code that builds a track turns
an empty mask into ``None`` (:func:`encode_track`). Encoding, decoding, areas,
boxes and IoUs go through pycocotools.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from .errors import AutoQVISError

RLE = dict[str, Any]  # {"size": [h, w], "counts": str}


@dataclass
class Detection:
    """One track of one video.

    video_id:       the YTVIS video id.
    score:          s_d, the class head's object confidence in [0, 1].
    segmentations:  T entries, a COCO RLE per frame or None where the mask is empty.
    pred_iou:       T floats, the quality predictor's IoU per frame (empty when there is no predictor).
    quality:        T floats, Q_d^t (eq. 20); filled by selection.
    selected:       T ints 0/1, S_d^t (eq. 21); filled by selection.
    """

    video_id: int
    score: float
    segmentations: list[RLE | None]
    pred_iou: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.segmentations)

    def areas(self) -> list[int]:
        """Mask area in pixels per frame (0 where absent)."""
        return [0 if s is None else rle_area(s) for s in self.segmentations]


# ------------------------------------------------------------------------------------------ RLE
def encode_mask(mask: np.ndarray) -> RLE:
    """bool (H, W) -> COCO compressed RLE with a ``str`` counts (json-ready), also for an empty mask."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_track(masks: np.ndarray) -> list[RLE | None]:
    """One track's masks bool (T, H, W) -> T RLEs, None where the frame's mask is empty (the track rule)."""
    return [encode_mask(m) if m.any() else None for m in np.asarray(masks, dtype=bool)]


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """bool (N, H, W) -> N compressed RLEs (one pycocotools call)."""
    masks = np.asarray(masks, dtype=np.uint8)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def empty_rle(size: Sequence[int]) -> RLE:
    """RLE of an all-zero mask of ``size`` [h, w]."""
    return encode_mask(np.zeros(tuple(size), dtype=bool))


def decode_rle(rle: RLE) -> np.ndarray:
    """Compressed RLE -> bool (H, W)."""
    with warnings.catch_warnings():  # pycocotools 2.0.x + numpy 2 warn about a copy keyword, harmlessly
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return mask_utils.decode(rle).astype(bool)
        except ValueError as e:  # pycocotools refuses runs that overrun the frame
            raise AutoQVISError(f"malformed RLE of size {rle.get('size')}: {e}") from None


_AREA_CHUNK = 255  # pycocotools 2.0.11 + numpy 2: area() of more than 255 RLEs raises OverflowError


def rle_area(rle: RLE) -> int:
    """Pixel count of one RLE."""
    return int(mask_utils.area(rle))


def rle_area_array(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel counts of N RLEs -> int64 (N,) via pycocotools, in chunks it can take."""
    chunks = [mask_utils.area(list(rles[i:i + _AREA_CHUNK])) for i in range(0, len(rles), _AREA_CHUNK)]
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


def rle_areas(rles: Sequence[RLE | None]) -> list[int | None]:
    """Pixel count of each RLE, None for None."""
    present = [r for r in rles if r is not None]
    areas = iter(rle_area_array(present).tolist())
    return [next(areas) if r is not None else None for r in rles]


def rle_bboxes(rles: Sequence[RLE | None]) -> list[list[float] | None]:
    """[x, y, w, h] of each RLE (all zeros for an empty mask), None for None."""
    present = [r for r in rles if r is not None]
    boxes = iter(mask_utils.toBbox(present).tolist() if present else [])
    return [next(boxes) if r is not None else None for r in rles]


# ------------------------------------------------------------------------------------------ IoU
def frame_ious(tracks_a: Sequence[Sequence[RLE | None]], tracks_b: Sequence[Sequence[RLE | None]]) -> np.ndarray:
    """Mask IoU of every pair of tracks in every frame.

    tracks_a: Na tracks of one video (T masks or None each), tracks_b: Nb tracks of the same video (same T).
    Returns float (T, Na, Nb). An absent mask has IoU 0 with anything, absent-vs-absent included.
    """
    num_frames = len(tracks_a[0]) if tracks_a else (len(tracks_b[0]) if tracks_b else 0)
    out = np.zeros((num_frames, len(tracks_a), len(tracks_b)))
    if not tracks_a or not tracks_b:
        return out
    for t in range(num_frames):
        seg_a = [s[t] for s in tracks_a]
        seg_b = [s[t] for s in tracks_b]
        size = next((s["size"] for s in seg_a + seg_b if s is not None), None)
        if size is None:
            continue
        empty = empty_rle(size)
        # pycocotools gives 0 for an empty union, so empty-vs-empty frames never count as overlap.
        out[t] = mask_utils.iou(
            [s if s is not None else empty for s in seg_a],
            [s if s is not None else empty for s in seg_b],
            [0] * len(seg_b),
        )
    return out


def video_iou(dt_segmentations: Sequence[Sequence[RLE | None]], gt_segmentations: Sequence[Sequence[RLE | None]],
              ) -> tuple[np.ndarray, np.ndarray]:
    """Spatio-temporal IoU of every pair of tracks of one video (valid RLEs of one size), as YouTubeVIS defines it.

    dt_segmentations: D tracks x L frames, gt_segmentations: G x L (RLE or None).
    Returns iou (D, G) float64 = sum_t |d_t & g_t| / sum_t |d_t | g_t| (0 if the union is empty) and
    dt_areas (D, L) int64 per-frame areas of the first tracks (0 where None).
    One pycocotools ``iou`` call per frame for all its non-empty pairs (it skips pairs whose boxes do
    not overlap); with ``iscrowd=1`` it divides by the first track's area, so |d & g| = round(o * |d|)
    exactly. Unions come from the areas (|d| + |g| - |d & g|). All sums are exact integers, so the
    division gives the official evaluator's float bit for bit.
    """
    num_dt, num_gt = len(dt_segmentations), len(gt_segmentations)
    length = len(dt_segmentations[0]) if num_dt else 0
    dt_areas = _track_areas(dt_segmentations, length)
    if num_dt == 0 or num_gt == 0:
        return np.zeros((num_dt, num_gt)), dt_areas
    gt_areas = _track_areas(gt_segmentations, length)
    pairs = (dt_areas.T > 0)[:, :, None] & (gt_areas.T > 0)[:, None, :]  # (L, D, G): empty masks add nothing
    frame, d, g = np.nonzero(pairs)  # frame by frame, in the row-major order of each frame's iou matrix
    if len(frame) == 0:
        return np.zeros((num_dt, num_gt)), dt_areas
    dt_frames, gt_frames = list(zip(*dt_segmentations)), list(zip(*gt_segmentations))
    on_dt, on_gt = pairs.any(2), pairs.any(1)  # (L, D), (L, G)
    overlaps = []
    for t in np.flatnonzero(on_dt.any(1)).tolist():
        dts, gts = dt_frames[t], gt_frames[t]
        gi = np.flatnonzero(on_gt[t]).tolist()
        o = mask_utils.iou([dts[i] for i in np.flatnonzero(on_dt[t]).tolist()], [gts[j] for j in gi], [1] * len(gi))
        overlaps.append(o.ravel())
    o = np.concatenate(overlaps)
    if (o < 0).any():  # pycocotools' answer to masks of different sizes
        raise AutoQVISError(f"frame {int(frame[np.argmax(o < 0)])}: masks of different sizes")
    inter = np.bincount(d * num_gt + g, weights=np.rint(o * dt_areas[d, frame]), minlength=num_dt * num_gt)
    union = dt_areas.sum(1)[:, None] + gt_areas.sum(1)[None, :] - inter.reshape(num_dt, num_gt)
    return np.divide(inter.reshape(num_dt, num_gt), union, out=np.zeros((num_dt, num_gt)), where=union > 0), dt_areas


def _track_areas(tracks: Sequence[Sequence[RLE | None]], length: int) -> np.ndarray:
    """(N, L) int64 pixel counts (0 where None), pycocotools over all present frames at once."""
    flat = list(itertools.chain.from_iterable(tracks))
    present = np.fromiter(map(operator.is_not, flat, itertools.repeat(None)), dtype=bool, count=len(flat))
    areas = np.zeros(len(flat), dtype=np.int64)
    areas[present] = rle_area_array(list(itertools.compress(flat, present.tolist())))
    return areas.reshape(len(tracks), length)


# ----------------------------------------------------------------------------- eligible frames
def selection_flags(item: Any) -> list[int]:
    """S^t of a Detection, a ytvis ``Annotation`` (extra["selected"]) or an annotation dict.

    A frame where the mask is empty counts as selected whatever the flag says (the official ``mark_results``);
    a track without flags (ground truth) is selected in every frame.
    """
    if isinstance(item, Detection):
        flags, segs = item.selected, item.segmentations
    elif isinstance(item, dict):
        flags, segs = item.get("selected"), item["segmentations"]
    else:
        flags, segs = (getattr(item, "extra", None) or {}).get("selected"), item.segmentations
    if not flags:
        return [1] * len(segs)
    if len(flags) != len(segs):
        raise AutoQVISError(f"eligible_frames: {len(flags)} selected flags for {len(segs)} frames")
    return [int(bool(s) or seg is None) for s, seg in zip(flags, segs)]


def eligible_frames(flags_per_track: Sequence[Sequence[int]]) -> list[int]:
    """Eq. 14: frame indices t where every track of a video has S^t = 1.

    flags_per_track: the tracks' S^t (:func:`selection_flags`, where an empty mask already counts as 1), all of the
    video's T frames. A video without any track has no eligible frame (it is not in the training set, eq. 4). A
    frame where every track is empty is eligible (it trains "nothing here"), as in the official code.
    """
    if not flags_per_track:
        return []
    lengths = {len(f) for f in flags_per_track}
    if len(lengths) != 1:
        raise AutoQVISError(f"eligible_frames: the annotations disagree on the number of frames {sorted(lengths)}")
    return [t for t in range(len(flags_per_track[0])) if all(f[t] for f in flags_per_track)]
