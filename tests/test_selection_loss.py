"""benchmarks/selection_loss.py sorts pseudo-label frames by what they really are (issue 17's measurement)."""

from __future__ import annotations

import numpy as np

from autoqvis.core.tracks import Detection, encode_masks

from _helpers import load_benchmark


def box(y0: int, x0: int, h: int, w: int, frames: int = 2) -> np.ndarray:
    m = np.zeros((frames, 20, 40), bool)
    m[:, y0:y0 + h, x0:x0 + w] = True
    return m


def test_frame_kinds_names_each_kind_of_error():
    sl = load_benchmark("selection_loss")
    a, b = box(2, 2, 8, 8), box(2, 14, 8, 8)  # two objects, 4 px apart
    gt = [encode_masks(a), encode_masks(b)]
    switch = np.concatenate([a[:1], b[1:]])  # on object A, then jumps to B
    merged = box(2, 2, 8, 20)  # covers both and the gap
    loose = box(2, 2, 8, 3)  # 3/8 of A: IoU 0.375
    far = box(12, 30, 6, 6)  # background
    tracks = [a, switch, merged, loose, far]
    dets = [Detection(1, 0.9, encode_masks(m)) for m in tracks]
    dets.append(Detection(1, 0.9, [None, encode_masks(a)[1]]))  # an empty first frame
    kinds = sl.frame_kinds(dets, gt)
    assert kinds[0] == ["correct", "correct"]
    # the switching track's own object is the one it overlaps over the video (a tie here: the first, A)
    assert kinds[1] == ["correct", "switch"]
    assert kinds[2] == ["merged", "merged"]  # IoU 64/160 = 0.4 with each, covering all of both
    assert kinds[3] == ["loose", "loose"]
    assert kinds[4] == ["background", "background"]
    assert kinds[5] == [None, "correct"]
    assert sl.frame_kinds(dets[:1], []) == [["background", "background"]]
