"""Quality-guided selection (supplement 6.2, eq. 19-22) and the frames a video trains on (eq. 14, whose rule,
``eligible_frames``, lives in :mod:`autoqvis.core.tracks`: the training dataset applies it too).

Conventions taken from the authors' code, where the paper is silent:
- a frame where the track's mask is empty counts as *selected* (S^t = 1): an absent object is not a
  wrong label, and it must not make the frame ineligible for every other track of the video;
- a track is retained when it has at least ``min_selected_frames`` selected frames with a NON-EMPTY
  mask. Eq. 22 asks for one; the authors' code asks for two (``SelfTrainConfig.min_selected_frames = 2``).
Without the quality predictor (Table 3, "w/o quality predictor") Q^t = s alone, with tau = 0.85.

Beyond the paper (issue 17; each off unless its switch is set, ``docs/fidelity.md``): frames judged with their
track's other frames, not alone --
- ``smooth_quality``: Q^t replaced by the median of Q over the track's non-empty frames t-r..t+r, so one spike
  or dip along an otherwise steady track does not decide the frame;
- ``hysteresis_select``: a frame with tau_low <= Q^t < tau is selected too when its track's median Q (over its
  non-empty frames) is >= tau: a good track keeps the frames just under the threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ..core.errors import AutoQVISError
from ..core.tracks import Detection, eligible_frames, selection_flags
from ..eval.analysis import true_ious


def quality_scores(det: Detection, use_quality_predictor: bool = True) -> list[float]:
    """Eq. 20: Q_d^t = s_d * IoU_d^t per frame (T floats); without the predictor Q_d^t = s_d."""
    if not use_quality_predictor:
        return [det.score] * det.num_frames
    if len(det.pred_iou) != det.num_frames:
        raise AutoQVISError(
            f"video {det.video_id}: a detection has {len(det.pred_iou)} predicted IoUs for {det.num_frames} "
            "frames; the model has no quality predictor (use --no-quality-predictor)"
        )
    return [det.score * iou for iou in det.pred_iou]


def select_frames(det: Detection, quality: Sequence[float], tau: float) -> list[int]:
    """Eq. 21: S_d^t = 1 where Q_d^t >= tau, and where the mask is empty (the authors' convention). (T,)"""
    return [int(seg is None or q >= tau) for seg, q in zip(det.segmentations, quality)]


def smooth_quality(det: Detection, quality: Sequence[float], radius: int) -> list[float]:
    """Q along the track: per non-empty frame, the median of Q over the non-empty frames within ``radius`` frames
    (empty frames keep their Q: they are selected whatever it is). radius 0: unchanged."""
    if radius <= 0:
        return list(quality)
    present = [t for t, seg in enumerate(det.segmentations) if seg is not None]
    out = list(quality)
    for t in present:
        window = [quality[u] for u in present if abs(u - t) <= radius]
        out[t] = float(np.median(window))
    return out


def hysteresis_select(det: Detection, quality: Sequence[float], tau: float, tau_low: float) -> list[int]:
    """Eq. 21 with a track-level second chance: S^t = 1 where the mask is empty or Q^t >= tau, and also where
    Q^t >= tau_low when the track's median Q over its non-empty frames is >= tau. (T,)"""
    present = [q for q, seg in zip(quality, det.segmentations) if seg is not None]
    low = tau_low if present and float(np.median(present)) >= tau else tau
    return [int(seg is None or q >= low) for seg, q in zip(det.segmentations, quality)]


def score_and_select(dets: list[Detection], tau: float, use_quality_predictor: bool = True, *,
                     smooth_radius: int = 0, tau_low: float | None = None) -> list[Detection]:
    """Eq. 20-21 for every detection: copies with ``quality`` and ``selected`` filled. ``smooth_radius`` > 0:
    Q smoothed along the track first (the stored Q is the smoothed one); ``tau_low``: the track-level second
    chance of ``hysteresis_select``. Both off: the paper's rule."""
    out = []
    for d in dets:
        q = smooth_quality(d, quality_scores(d, use_quality_predictor), smooth_radius)
        sel = select_frames(d, q, tau) if tau_low is None else hysteresis_select(d, q, tau, tau_low)
        out.append(dataclasses.replace(d, quality=q, selected=sel))
    return out


def num_selected_nonempty(det: Detection) -> int:
    """Frames where the track is both selected and present."""
    return sum(1 for s, seg in zip(det.selected, det.segmentations) if s and seg is not None)


def retain(dets: list[Detection], min_selected_frames: int = 2) -> list[Detection]:
    """Eq. 22: keep a track with at least ``min_selected_frames`` selected non-empty frames."""
    return [d for d in dets if num_selected_nonempty(d) >= min_selected_frames]


def oracle_select(dets: list[Detection], gt_segmentations: Sequence[Sequence[Any]], iou_threshold: float = 0.5,
                  within_selection: bool = False) -> list[Detection]:
    """Table 2's "practical limit" (an oracle, for analysis only): S^t = 1 where the mask's TRUE IoU with its
    best-matching ground-truth track (``autoqvis.eval.analysis.true_ious``) is >= iou_threshold; empty
    frames stay selected as in eq. 21. Q^t is kept as it was.

    within_selection: a diagnosis, not a paper row -- keep the tracks' own S^t and only drop its frames whose true
    IoU is below the threshold (the quality predictor's selection without its errors)."""
    frame_iou, _ = true_ious(dets, gt_segmentations)
    return [
        dataclasses.replace(d, selected=[int(seg is None or (iou >= iou_threshold and (s or not within_selection)))
                                         for s, seg, iou in zip(d.selected, d.segmentations, f)])
        for d, f in zip(dets, frame_iou)
    ]


def training_frames(annotations_of_one_video: Sequence[Any], min_eligible_frames: int = 2) -> list[int]:
    """The frames a video trains on: its eligible frames (eq. 14), or none when there are fewer than
    ``min_eligible_frames`` (the official ``filter_marked_results`` asks for 2)."""
    frames = eligible_frames([selection_flags(a) for a in annotations_of_one_video])
    return frames if len(frames) >= min_eligible_frames else []
