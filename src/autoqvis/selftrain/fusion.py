"""Adaptive fusion of new curated detections into the training set (Sec. 3.4, eq. 4-13).

Choices where the paper leaves room:
- eq. 10 is a fold: each new detection is fused into the CURRENT set, i.e. the set already holding the
  new detections processed before it (new detections come highest score first);
- when a new detection overlaps several existing ones, the paper's "an existing one" is the FIRST of them in
  the set's order (``match="first"``, the official ``merge_object_based_results``: previous tracks in their
  stored order, then the ones added earlier in this round); ``match="best_iou"`` (autoqvis's earlier rule,
  ``selftrain.fusion_match``) takes the one of highest IoU in any frame (ties: the earlier). The fused track
  takes its place;
- a fused track keeps the new detection's score (the newest model's confidence); its per-frame Q^t and
  predicted IoU come from the detection whose mask eq. 8 chose in that frame;
- ``--no-fusion`` (Table 3, "w/o adaptive fusion"): the training set is replaced by the new retained
  detections (videos without any new retained detection leave the set).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.tracks import Detection, frame_ious


def track_iou_per_frame(a: Detection, b: Detection) -> np.ndarray:
    """Per-frame mask IoU of two tracks of the same video: float (T,)."""
    return frame_ious([a.segmentations], [b.segmentations])[:, 0, 0]


def overlaps(new: Detection, exist: Detection, iou_threshold: float = 0.5) -> bool:
    """Eq. 5: the two tracks overlap when their masks have IoU >= threshold in at least one frame."""
    return bool((track_iou_per_frame(new, exist) >= iou_threshold).any())


def fuse_pair(new: Detection, exist: Detection) -> Detection:
    """Eq. 6-8: fuse two overlapping tracks frame by frame.

    S^t = max(S_new^t, S_exist^t) (eq. 7); the mask is the existing one only where the existing is
    selected and the new is not, else the new one (eq. 8). Returns a new Detection (T frames).
    """
    take_exist = [bool(se and not sn) for sn, se in zip(new.selected, exist.selected)]

    def pick(a: list, b: list) -> list:
        # per-frame lists may be empty (no quality predictor): only pick when both are complete.
        if len(a) != len(take_exist) or len(b) != len(take_exist):
            return list(a)
        return [bv if te else av for av, bv, te in zip(a, b, take_exist)]

    return dataclasses.replace(
        new,
        segmentations=pick(new.segmentations, exist.segmentations),  # eq. 8
        pred_iou=pick(new.pred_iou, exist.pred_iou),
        quality=pick(new.quality, exist.quality),
        selected=[max(sn, se) for sn, se in zip(new.selected, exist.selected)],  # eq. 7
    )


FUSION_MATCHES = ("first", "best_iou")


def fuse_one(current: list[Detection], new: Detection, iou_threshold: float = 0.5,
             match: str = "first") -> list[Detection]:
    """Eq. 11: D (+) d_new — fuse with an overlapping existing track (the first, or the best with
    ``match="best_iou"``), or append d_new."""
    if match not in FUSION_MATCHES:
        raise ValueError(f"fusion match must be one of {FUSION_MATCHES}, got {match!r}")
    best, best_iou = -1, -1.0
    for i, exist in enumerate(current):
        iou = float(track_iou_per_frame(new, exist).max(initial=0.0))
        if iou >= iou_threshold and iou > best_iou:
            best, best_iou = i, iou
            if match == "first":
                break
    if best < 0:
        return current + [new]
    return current[:best] + [fuse_pair(new, current[best])] + current[best + 1 :]


def fuse_video(existing: list[Detection], new: list[Detection], iou_threshold: float = 0.5,
               match: str = "first") -> list[Detection]:
    """Eq. 9-10: D_v^(k+1) = D_v^(k) (+) D_retained,v^(k), folding the new detections in one by one."""
    current = list(existing)
    for d in new:
        current = fuse_one(current, d, iou_threshold, match)
    return current


def fuse_dataset(
    existing: dict[int, list[Detection]],
    new: dict[int, list[Detection]],
    iou_threshold: float = 0.5,
    fusion: bool = True,
    match: str = "first",
) -> dict[int, list[Detection]]:
    """Eq. 4, 12-13: the training set of round k+1 as {video_id: detections}, video ids ascending.

    existing: T^(k), the current pseudo-labels per video; new: D_retained^(k) per video.
    New videos take all their retained detections (eq. 4); existing videos fuse (eq. 13); an existing video
    without new detections keeps its tracks unchanged.
    ``fusion=False`` replaces the whole set with the new detections (Table 3 ablation).
    """
    new = {v: d for v, d in new.items() if d}  # pi_1 only sees videos with a retained detection
    if not fusion:
        return dict(sorted(new.items()))
    out = {v: fuse_video(dets, new.get(v, []), iou_threshold, match) for v, dets in existing.items()}  # eq. 13
    out.update({v: dets for v, dets in new.items() if v not in existing})  # eq. 4
    return dict(sorted(out.items()))
