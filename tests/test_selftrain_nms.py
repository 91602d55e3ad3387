"""Eq. 16-18: score filter and spatiotemporal NMS on hand-built tracks."""

from __future__ import annotations

import numpy as np
import pytest

from _selftrain_cases import EMPTY, box, masks_of, track
from autoqvis.core.tracks import frame_ious
from autoqvis.selftrain.pseudo_label import detection_from_dict, detection_to_annotation, detection_to_dict, detections_from_prediction, filter_by_score, pseudo_label_video, spatiotemporal_nms

A = box(0, 0, 4, 4)  # 16 px
FAR = box(6, 6, 10, 10)  # disjoint from A


def test_filter_by_score_keeps_exactly_025():
    dets = [track([A], score=s) for s in (0.25, 0.2499, 0.9, 0.0)]
    assert [d.score for d in filter_by_score(dets, 0.25)] == [0.25, 0.9]


def test_frame_ious_per_frame_and_empty_vs_empty_is_zero():
    a = track([A, A, EMPTY])
    b = track([box(0, 0, 4, 2), FAR, EMPTY])
    ious = frame_ious([a.segmentations], [b.segmentations])
    assert ious.shape == (3, 1, 1)
    np.testing.assert_allclose(ious[:, 0, 0], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(frame_ious([a.segmentations], [a.segmentations])[:, 0, 0], [1.0, 1.0, 0.0])


def test_nms_suppresses_on_overlap_in_a_single_frame():
    high = track([A, A, A], score=0.9)
    dup_in_one_frame = track([FAR, A, FAR], score=0.8)  # IoU 1 with `high` in frame 1 only
    assert spatiotemporal_nms([high, dup_in_one_frame]) == [high]


def test_nms_threshold_is_inclusive():
    high = track([A], score=0.9)
    half = track([box(0, 0, 4, 2)], score=0.5)  # IoU exactly 0.5 -> suppressed (>=)
    below = track([box(0, 0, 10, 10)], score=0.9)
    just_below = track([box(0, 0, 7, 7)], score=0.5)  # 49/100 = 0.49 -> kept
    assert spatiotemporal_nms([high, half]) == [high]
    assert spatiotemporal_nms([below, just_below]) == [below, just_below]


def test_nms_only_kept_tracks_suppress():
    a = track([A, EMPTY], score=0.9)
    b = track([box(0, 0, 4, 3), FAR], score=0.8)  # IoU 0.75 with a in frame 0 -> suppressed by a
    c = track([box(6, 0, 10, 4), box(6, 6, 10, 9)], score=0.7)  # 0.75 with b in frame 1, but b is gone
    d = track([EMPTY, EMPTY], score=0.6)  # empty-vs-empty never overlaps
    e = track([EMPTY, EMPTY], score=0.5)
    assert spatiotemporal_nms([a, b, c, d, e]) == [a, c, d, e]


def test_nms_walks_the_list_order_not_the_scores():  # the official apply_nmsV2: no re-sorting
    low_first = track([A], score=0.3)
    high = track([A], score=0.9)
    assert spatiotemporal_nms([low_first, high]) == [low_first]


def test_nms_ties_keep_input_order():
    first = track([A], score=0.7, pred_iou=[0.1])
    second = track([A], score=0.7, pred_iou=[0.2])
    assert spatiotemporal_nms([first, second]) == [first]
    assert spatiotemporal_nms([second, first]) == [second]


def test_nms_empty_input():
    assert spatiotemporal_nms([]) == []


def test_pseudo_label_video_suppresses_then_filters():
    masks = np.stack([np.stack([A, A]), np.stack([A, FAR]), np.stack([FAR, FAR]), np.stack([FAR, EMPTY])])
    pred = {"scores": np.array([0.95, 0.9, 0.24, 0.3]), "masks": masks,
            "pred_iou": np.array([[0.9, 1.2], [0.5, 0.5], [0.1, 0.1], [0.7, -0.1]])}
    kept, before = pseudo_label_video(3, pred, 0.25, 0.5)
    assert before == 4  # every raw track goes through NMS
    # 0.9 duplicates 0.95 in frame 0; the 0.24 track, though dropped by the score filter afterwards, first
    # suppressed the 0.3 track (IoU 1 in frame 0): the official order. Filtering first would keep the 0.3 track.
    assert [d.score for d in kept] == [0.95]
    pred["scores"] = np.array([0.95, 0.9, 0.3, 0.24])
    pred["masks"] = masks[[0, 1, 3, 2]]
    pred["pred_iou"] = pred["pred_iou"][[0, 1, 3, 2]]
    kept, _ = pseudo_label_video(3, pred, 0.25, 0.5)
    assert [d.score for d in kept] == [0.95, 0.3]
    assert kept[0].pred_iou == [0.9, 1.0] and kept[1].pred_iou == [0.7, 0.0]  # clipped to [0, 1]
    assert kept[0].video_id == 3
    np.testing.assert_array_equal(masks_of(kept[1])[0], FAR)


def test_detection_round_trip_and_annotation():
    det = track([A, EMPTY], score=0.8, pred_iou=[0.5, 0.25], quality=[0.4, 0.2], selected=[0, 1])
    assert detection_from_dict(detection_to_dict(det)) == det
    ann = detection_to_annotation(det, ann_id=7)
    assert ann["areas"] == [16, None] and ann["bboxes"] == [[0.0, 0.0, 4.0, 4.0], None]
    assert ann["selected"] == [0, 1] and ann["quality"] == [0.4, 0.2] and ann["score"] == 0.8
    assert detection_from_dict(ann) == det


def test_detections_from_prediction_without_quality():
    pred = {"scores": np.array([0.5]), "masks": np.stack([np.stack([A])])}
    (det,) = detections_from_prediction(0, pred)
    assert det.pred_iou == [] and det.areas() == [16]


def test_detection_from_dict_rejects_length_mismatch():
    from autoqvis.core.errors import AutoQVISError

    bad = detection_to_dict(track([A, A]))
    bad["selected"] = [1]
    with pytest.raises(AutoQVISError, match="selected has 1 entries, segmentations has 2"):
        detection_from_dict(bad, "x.jsonl: line 3")


def test_annotation_without_predictor_loads_as_ytvis():
    from autoqvis.data.ytvis import load_ytvis

    det = track([A, EMPTY], score=0.8, pred_iou=[], quality=[0.8, 0.8], selected=[1, 1])
    ann = detection_to_annotation(det, ann_id=1)
    assert "pred_iou" not in ann
    ds = load_ytvis({"videos": [{"id": 1, "file_names": ["a.jpg", "b.jpg"], "height": 10, "width": 10}],
                     "annotations": [ann], "categories": [{"id": 1, "name": "object"}]})
    assert ds.annotations[0].extra["selected"] == [1, 1] and ds.annotations[0].areas == [16, None]


def test_detection_writer_resumes_after_a_cut_line(tmp_path):
    from autoqvis.selftrain.pseudo_label import DetectionWriter, iter_detection_file

    path = tmp_path / "detections.jsonl"
    w = DetectionWriter(path)
    w.write(1, [track([A], video_id=1)])
    w.write(2, [])
    w.abandon()  # killed: only the .partial file exists, and its last line is cut
    partial = tmp_path / "detections.jsonl.partial"
    partial.write_text(partial.read_text() + '{"video_id": 3, "detec')
    assert not path.exists()
    w = DetectionWriter(path, resume=True)
    assert w.done_videos == {1, 2}
    w.write(3, [track([FAR], video_id=3, score=0.4)])
    w.close()
    got = [(v, [(d.video_id, d.score) for d in dets]) for v, dets in iter_detection_file(path)]
    assert got == [(1, [(1, 0.9)]), (2, []), (3, [(3, 0.4)])] and not partial.exists()
    # the lines are the DET.jsonl form `autoqvis select` reads
    import json

    line = json.loads(path.read_text().splitlines()[0])
    assert set(line) == {"video_id", "detections"} and set(line["detections"][0]) == {"score", "segmentations", "pred_iou"}
