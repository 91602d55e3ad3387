"""benchmarks/round2_drop.py: the val predictions' kinds (true / duplicate / partial / background)."""

from __future__ import annotations

import json

from _helpers import load_benchmark
from _selftrain_cases import box
from autoqvis.core.tracks import encode_track


def test_prediction_kinds(tmp_path):
    rd = load_benchmark("round2_drop")
    a, b = box(0, 0, 4, 4), box(6, 6, 10, 10)
    gt = {1: [encode_track([a, a]), encode_track([b, b])]}
    preds = [(0.9, [a, a]), (0.8, [a, a]),  # true, then a duplicate of the same object
             (0.7, [box(0, 0, 4, 1), box(0, 0, 4, 1)]),  # video IoU 0.25 with a: partial
             (0.6, [box(0, 8, 2, 10), box(0, 8, 2, 10)]),  # touches nothing: background
             (0.55, [b, b]),  # the second object: true
             (0.4, [box(0, 8, 2, 10), box(0, 8, 2, 10)])]  # below the score a user keeps: not counted
    path = tmp_path / "val_results.json"
    path.write_text(json.dumps([{"video_id": 1, "score": s, "category_id": 1, "segmentations": encode_track(m)}
                                for s, m in preds]))
    assert rd.prediction_counts(path, gt) == {"true": 2, "duplicate": 1, "partial": 1, "background": 1}


def test_trained_frames_and_their_unlabelled_objects():
    """Only eq. 14's eligible frames train; in each, a true object that no label covers at IoU >= 0.5 counts once."""
    from _selftrain_cases import EMPTY, track

    rd = load_benchmark("round2_drop")
    a, b, c = box(0, 0, 4, 4), box(6, 6, 10, 10), box(0, 6, 4, 10)
    gt = {1: [encode_track([a, a, a, a]), encode_track([b, b, b, EMPTY]), encode_track([c, c, c, c])]}
    label_a = track([a, a, a, a], selected=[1, 1, 0, 1])  # frame 2 not selected: not eligible
    label_c = track([c, box(0, 6, 4, 7), c, c], selected=[1, 1, 1, 1])  # frame 1 too loose (IoU 0.25) to cover c
    frames, unlabelled = rd.trained_frame_counts({1: [label_a, label_c]}, gt)
    # trained frames 0, 1, 3; uncovered: b in 0 and 1 (absent in 3), c in 1
    assert (frames, unlabelled) == (3, 3)
    assert rd.trained_frame_counts({1: [label_a]}, {}) == (3, 0)  # no ground truth: nothing to miss
