"""Eq. 4-13: overlap predicate, frame-wise fusion, fusion into a video and into the dataset."""

from __future__ import annotations

import numpy as np
import pytest

from _selftrain_cases import EMPTY, box, masks_of, track
from autoqvis.selftrain.fusion import fuse_dataset, fuse_one, fuse_pair, fuse_video, overlaps

A = box(0, 0, 4, 4)  # 16 px
A75 = box(0, 0, 4, 3)  # IoU 0.75 with A
A60 = box(0, 1, 4, 5)  # IoU 0.6 with A
FAR = box(6, 6, 10, 10)


def test_overlap_in_any_single_frame():  # eq. 5
    new = track([FAR, A, EMPTY])
    assert overlaps(new, track([A, A60, EMPTY]))  # 0.6 in frame 1
    assert not overlaps(new, track([A, box(0, 0, 4, 1), EMPTY]))  # 0.25 at best
    assert overlaps(track([A]), track([box(0, 0, 4, 2)]))  # exactly 0.5 counts
    assert not overlaps(track([EMPTY]), track([EMPTY]))


def test_fuse_pair_mask_choice_and_selection():  # eq. 6-8
    m_new = [box(0, 0, 2, 2), box(0, 0, 2, 3), box(0, 0, 2, 4), box(0, 0, 2, 5)]
    m_old = [box(5, 0, 7, 2), box(5, 0, 7, 3), box(5, 0, 7, 4), box(5, 0, 7, 5)]
    new = track(m_new, score=0.8, pred_iou=[0.9, 0.8, 0.2, 0.1], quality=[0.72, 0.64, 0.16, 0.08],
                selected=[1, 1, 0, 0])
    old = track(m_old, score=0.6, pred_iou=[0.5, 0.4, 0.95, 0.3], quality=[0.3, 0.24, 0.57, 0.18],
                selected=[1, 0, 1, 0])
    fused = fuse_pair(new, old)
    # (S_new, S_exist) per frame: (1,1)->new, (1,0)->new, (0,1)->existing, (0,0)->new
    for got, want in zip(masks_of(fused), [m_new[0], m_new[1], m_old[2], m_new[3]]):
        np.testing.assert_array_equal(got, want)
    assert fused.selected == [1, 1, 1, 0]  # eq. 7: max
    assert fused.quality == [0.72, 0.64, 0.57, 0.08]  # Q from the chosen mask's source
    assert fused.pred_iou == [0.9, 0.8, 0.95, 0.1]
    assert fused.score == 0.8 and fused.video_id == 1


def test_fuse_video_adds_non_overlapping_and_fuses_overlapping():  # eq. 9-11
    exist = track([A, A], score=0.5, selected=[1, 1], quality=[0.9, 0.9])
    fusing = track([A75, FAR], score=0.9, selected=[0, 1], quality=[0.1, 0.9])
    added = track([FAR, EMPTY], score=0.8, selected=[1, 1], quality=[0.8, 0.0])
    out = fuse_video([exist], [fusing, added])
    assert len(out) == 2
    np.testing.assert_array_equal(masks_of(out[0])[0], A)  # existing selected, new not -> existing
    np.testing.assert_array_equal(masks_of(out[0])[1], FAR)
    assert out[0].score == 0.9 and out[0].selected == [1, 1]
    assert out[1] is added


def test_fuse_takes_the_first_overlapping_track_in_order():  # issue 14 item 5: the official `break`
    e1 = track([A], score=0.5, selected=[1], quality=[0.5])
    e2 = track([A75], score=0.5, selected=[1], quality=[0.5])
    new = track([box(0, 0, 4, 3)], score=0.9, selected=[1], quality=[0.9])  # IoU 0.75 with e1, 1.0 with e2
    out = fuse_one([e1, e2], new)
    assert len(out) == 2 and out[1] is e2
    assert out[0].score == 0.9  # e1, the first match despite its lower IoU, replaced in place by the fused track
    np.testing.assert_array_equal(masks_of(out[0])[0], A75)
    out = fuse_video([e1, e2], [new])  # the default of the whole chain too
    assert out[1] is e2 and out[0].score == 0.9
    assert fuse_dataset({1: [e1, e2]}, {1: [new]})[1][1] is e2


def test_fuse_best_iou_switch_takes_the_highest_iou_track():  # selftrain.fusion_match: best_iou
    e1 = track([A], score=0.5, selected=[1], quality=[0.5])
    e2 = track([A75], score=0.5, selected=[1], quality=[0.5])
    new = track([box(0, 0, 4, 3)], score=0.9, selected=[1], quality=[0.9])
    out = fuse_one([e1, e2], new, match="best_iou")
    assert out[0] is e1 and len(out) == 2
    assert out[1].score == 0.9  # e2 replaced in place by the fused track
    assert fuse_dataset({1: [e1, e2]}, {1: [new]}, match="best_iou")[1][0] is e1
    with pytest.raises(ValueError, match="fusion match"):
        fuse_one([e1], new, match="max")


def test_fuse_video_folds_into_the_current_set():
    # the second new detection overlaps the first new one (added just before), not the existing one
    exist = track([FAR], score=0.5, selected=[1], quality=[0.5])
    first = track([A], score=0.9, selected=[1], quality=[0.9])
    second = track([A60], score=0.8, selected=[0], quality=[0.2])
    out = fuse_video([exist], [first, second])
    assert len(out) == 2
    np.testing.assert_array_equal(masks_of(out[1])[0], A)  # `first` is selected, `second` is not
    assert out[1].score == 0.8 and out[1].selected == [1]


def test_fuse_dataset_new_existing_and_replace():  # eq. 4, 12-13
    old = {1: [track([A], video_id=1, selected=[1], quality=[1.0])],
           2: [track([A], video_id=2, selected=[1], quality=[1.0])]}
    new = {2: [track([FAR], video_id=2, selected=[1], quality=[0.9])],
           3: [track([A], video_id=3, selected=[1], quality=[0.9])],
           4: []}
    fused = fuse_dataset(old, new)
    assert list(fused) == [1, 2, 3]  # video 4 has no retained detection: not in the set
    assert fused[1] == old[1]  # existing video without new detections keeps its labels
    assert len(fused[2]) == 2 and fused[3] == new[3]
    replaced = fuse_dataset(old, new, fusion=False)
    assert list(replaced) == [2, 3] and replaced[2] == new[2]


def test_fuse_pair_without_predicted_iou():
    new = track([A, A], selected=[0, 0], quality=[0.1, 0.1], pred_iou=[])
    old = track([A75, A75], selected=[1, 0], quality=[0.9, 0.9], pred_iou=[])
    fused = fuse_pair(new, old)
    assert fused.pred_iou == [] and fused.quality == [0.9, 0.1] and fused.selected == [1, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fusion_keeps_every_existing_slot_and_never_unselects(seed):
    rng = np.random.default_rng(seed)

    def rand_track():
        masks = [box(int(y0), int(x0), int(y0) + 4, int(x0) + 4) for y0, x0 in rng.integers(0, 7, (3, 2))]
        return track(masks, score=float(rng.random()), selected=[int(s) for s in rng.integers(0, 2, 3)],
                     quality=[0.5] * 3)

    old = [rand_track() for _ in range(4)]
    new = [rand_track() for _ in range(5)]
    out = fuse_video(old, new)
    assert len(old) <= len(out) <= len(old) + len(new)
    # a fused track replaces its existing track in place, and eq. 7 only ever raises S^t
    for before, after in zip(old, out):
        assert all(a >= b for a, b in zip(after.selected, before.selected))
    assert sum(len(o.selected) for o in out) == 3 * len(out)
