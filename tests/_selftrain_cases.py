"""Hand-built tracks for the self-training tests: rectangles on a small grid, one RLE per frame."""

from __future__ import annotations

import numpy as np

from autoqvis.core.tracks import Detection, encode_track

H, W = 10, 10


def box(y0: int, x0: int, y1: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    """bool (h, w) with rows y0:y1 and columns x0:x1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


EMPTY = np.zeros((H, W), dtype=bool)


def track(masks: list[np.ndarray], score: float = 0.9, video_id: int = 1, pred_iou=None,
          quality=None, selected=None) -> Detection:
    """A Detection from per-frame bool masks (an all-False mask becomes None)."""
    t = len(masks)
    return Detection(
        video_id=video_id,
        score=score,
        segmentations=encode_track(masks),
        pred_iou=list(pred_iou) if pred_iou is not None else [1.0] * t,
        quality=list(quality) if quality is not None else [],
        selected=list(selected) if selected is not None else [],
    )


def masks_of(det: Detection) -> list[np.ndarray]:
    import pycocotools.mask as mask_utils

    return [EMPTY if s is None else mask_utils.decode(s).astype(bool) for s in det.segmentations]


# A toy config small enough for CPU tests: 64-px clips, 10 queries, 3 decoder layers.
TINY_OVERRIDES = [
    "input.min_size_train=[64]", "input.max_size_train=96", "input.min_size_test=64", "input.max_size_test=96",
    "synth.min_size=[64]", "synth.max_size=96", "model.num_queries=10", "model.dec_layers=3",
    "loss.num_points=256", "train.batch_size=2", "selftrain.batch_size=2",
]
