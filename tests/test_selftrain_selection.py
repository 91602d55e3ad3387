"""Eq. 14 and 20-22: quality score, frame selection, retention, eligible frames."""

from __future__ import annotations

import pytest

from _selftrain_cases import EMPTY, box, track
from autoqvis.core.errors import AutoQVISError
from autoqvis.core.tracks import eligible_frames, encode_track, selection_flags
from autoqvis.selftrain.selection import quality_scores, retain, score_and_select, select_frames, training_frames

A = box(0, 0, 4, 4)


def test_quality_is_score_times_predicted_iou():  # eq. 20
    d = track([A] * 4, score=0.9, pred_iou=[1.0, 0.8, 0.9, 0.5])
    assert quality_scores(d) == pytest.approx([0.9, 0.72, 0.81, 0.45])


def test_quality_without_predictor_is_the_score():
    d = track([A] * 3, score=0.86, pred_iou=[0.1, 0.2, 0.3])
    assert quality_scores(d, use_quality_predictor=False) == [0.86, 0.86, 0.86]
    assert score_and_select([d], tau=0.85, use_quality_predictor=False)[0].selected == [1, 1, 1]
    assert score_and_select([d], tau=0.87, use_quality_predictor=False)[0].selected == [0, 0, 0]


def test_quality_needs_a_predicted_iou_per_frame():
    d = track([A, A], pred_iou=[])
    with pytest.raises(AutoQVISError, match="--no-quality-predictor"):
        quality_scores(d)


def test_select_frames_threshold_inclusive_and_empty_frames_selected():  # eq. 21
    d = track([A, A, A, EMPTY], score=1.0, pred_iou=[0.75, 0.7499, 0.9, 0.0])
    q = quality_scores(d)
    assert select_frames(d, q, tau=0.75) == [1, 0, 1, 1]  # the empty frame counts as selected


def test_score_and_select_fills_fields_without_touching_input():
    d = track([A, A], score=0.5, pred_iou=[1.0, 0.2])
    (out,) = score_and_select([d], tau=0.3)
    assert out.quality == pytest.approx([0.5, 0.1]) and out.selected == [1, 0]
    assert d.quality == [] and d.selected == []


def test_retain_counts_non_empty_selected_frames():  # eq. 22 (+ the authors' minimum of 2)
    one_real = track([A, EMPTY, A], score=1.0, pred_iou=[0.9, 0.0, 0.1])  # S = [1, 1(empty), 0]
    two_real = track([A, A, EMPTY], score=1.0, pred_iou=[0.9, 0.8, 0.0])  # S = [1, 1, 1(empty)]
    none = track([A, A], score=1.0, pred_iou=[0.1, 0.1])
    dets = score_and_select([one_real, two_real, none], tau=0.75)
    assert [d.pred_iou for d in retain(dets, 2)] == [[0.9, 0.8, 0.0]]
    assert len(retain(dets, 1)) == 2  # the paper's eq. 22: selected in at least one frame
    assert retain(dets, 1)[0].pred_iou == [0.9, 0.0, 0.1]


def flags(*tracks) -> list[list[int]]:
    """The S^t of each track (Detection, annotation dict or object), as eq. 14 reads them."""
    return [selection_flags(t) for t in tracks]


def test_eligible_frames_every_detection_selected():  # eq. 14
    a = track([A] * 5, selected=[1, 1, 0, 1, 1])
    b = track([A] * 5, selected=[1, 0, 1, 1, 1])
    c = track([A] * 5, selected=[1, 1, 1, 1, 0])
    assert eligible_frames(flags(a, b, c)) == [0, 3]
    assert eligible_frames(flags(a)) == [0, 1, 3, 4]


def test_eligible_frames_from_annotation_dicts_and_objects():
    class Ann:  # the shape of autoqvis.data.ytvis.Annotation
        def __init__(self, segs, extra):
            self.segmentations, self.extra = segs, extra

    seg = {"size": [10, 10], "counts": "046000V2"}
    pseudo = {"segmentations": [seg] * 3, "selected": [0, 1, 1]}
    gt = {"segmentations": [None] * 3}  # no flags: ground truth, every frame selected
    assert eligible_frames(flags(pseudo, gt)) == [1, 2]
    assert eligible_frames(flags(Ann([seg] * 3, {"selected": [1, 1, 0]}), gt)) == [0, 1]
    assert eligible_frames(flags()) == []


def test_an_empty_mask_is_selected_whatever_its_flag_says():  # the official mark_results
    seg = {"size": [10, 10], "counts": "046000V2"}
    assert eligible_frames(flags({"segmentations": [None, seg, None], "selected": [0, 0, 1]})) == [0, 2]
    assert training_frames([{"segmentations": [None, seg, seg], "selected": [0, 0, 1]}]) == [0, 2]
    assert training_frames([{"segmentations": [None, seg, seg], "selected": [0, 0, 0]}]) == []  # 1 < 2 frames
    assert training_frames([{"segmentations": [None, seg, seg], "selected": [0, 0, 0]}], 1) == [0]


def test_eligible_frames_rejects_mixed_lengths():
    with pytest.raises(AutoQVISError, match="number of frames"):
        eligible_frames(flags(track([A] * 2, selected=[1, 1]), track([A] * 3, selected=[1, 1, 1])))


def test_oracle_select_and_oracle_clean():
    """Table 2's practical limit selects by the true IoU alone; the issue-16 diagnosis (``within_selection``) keeps
    the rule's S^t and only drops its frames of true IoU < 0.5."""
    from autoqvis.selftrain.selection import oracle_select

    gt = encode_track([A, A, A, A, EMPTY])
    half = box(0, 0, 4, 2)  # IoU 0.5 with A: kept (inclusive)
    third = box(0, 0, 4, 1)  # IoU 0.25: dropped
    d = track([A, half, third, A, A], score=1.0, pred_iou=[0.9, 0.9, 0.9, 0.1, 0.1])  # Q: 3 selected, 2 not
    (scored,) = score_and_select([d], tau=0.7)
    assert scored.selected == [1, 1, 1, 0, 0]
    (practical,) = oracle_select([scored], [gt])
    assert practical.selected == [1, 1, 0, 1, 0]  # the true IoU alone; frame 4 (no ground truth) has IoU 0
    (clean,) = oracle_select([scored], [gt], within_selection=True)
    assert clean.selected == [1, 1, 0, 0, 0]  # the rule's frames minus the wrong one
    e = track([A, EMPTY], score=1.0, pred_iou=[0.1, 0.0])
    (scored_e,) = score_and_select([e], tau=0.7)
    assert oracle_select([scored_e], [encode_track([EMPTY, A])], within_selection=True)[0].selected == [0, 1]


def test_select_round_with_oracle_clean_drops_only_wrong_frames():
    from autoqvis.selftrain.curate import SelectionRule, select_round

    gt = [encode_track([A, A, A, A])]
    d = track([A, A, box(0, 0, 4, 1), A], score=1.0, pred_iou=[0.9, 0.9, 0.9, 0.2])
    rule = SelectionRule(tau=0.7)
    plain = select_round(iter([(1, [d])]), {}, rule)
    clean = select_round(iter([(1, [d])]), {}, rule, lambda vid: gt, oracle_clean=True)
    assert plain.retained[1][0].selected == [1, 1, 1, 0] and plain.counts["selected_frames"] == 3
    assert clean.retained[1][0].selected == [1, 1, 0, 0] and clean.counts["selected_frames"] == 2
    assert (plain.counts["quality"], clean.counts["quality"]) == ("predictor", "oracle_clean")


def test_select_round_with_a_strict_oracle_keeps_only_tight_masks():
    """selftrain.oracle_iou raises the practical limit's bar (an analysis row): a mask of true IoU 0.5 is kept at the
    paper's 0.5 and dropped at 0.75; the config reaches the rule, and a bar outside (0, 1] is refused."""
    from autoqvis.core.config import load_config
    from autoqvis.selftrain.curate import SelectionRule, select_round

    gt = [encode_track([A, A, A, A])]
    d = track([A, box(0, 0, 4, 2), A, A], score=1.0, pred_iou=[0.9, 0.9, 0.9, 0.9])  # frame 1: IoU 0.5
    paper = select_round(iter([(1, [d])]), {}, SelectionRule(tau=0.7), lambda vid: gt)
    strict = select_round(iter([(1, [d])]), {}, SelectionRule(tau=0.7, oracle_iou=0.75), lambda vid: gt)
    assert paper.retained[1][0].selected == [1, 1, 1, 1]
    assert strict.retained[1][0].selected == [1, 0, 1, 1] and strict.counts["selected_frames"] == 3
    cfg = load_config("toy", ["selftrain.oracle_selection=true", "selftrain.oracle_iou=0.75"])
    assert SelectionRule.from_config(cfg).oracle_iou == 0.75
    assert SelectionRule.from_config(load_config("toy")).oracle_iou == 0.5  # the paper's practical limit
    with pytest.raises(AutoQVISError, match="selftrain.oracle_iou"):
        load_config("toy", ["selftrain.oracle_iou=0"])


def test_restrict_to_videos_cuts_only_the_training_set():
    """The round-0-videos diagnosis: T^(k) keeps only the given videos; the rule's candidates, retained tracks and
    counts stay as selected."""
    from autoqvis.selftrain.curate import SelectionRule, restrict_to_videos, select_round

    d = track([A, A, A], score=1.0, pred_iou=[0.9, 0.9, 0.9])
    labels = select_round(iter([(1, [d]), (2, [d]), (5, [d])]), {}, SelectionRule(tau=0.7))
    cut = restrict_to_videos(labels, {2, 7})
    assert list(labels.state) == [1, 2, 5] and list(cut.state) == [2]
    assert cut.state[2] == labels.state[2]
    assert cut.retained == labels.retained and cut.candidates == labels.candidates and cut.counts == labels.counts
