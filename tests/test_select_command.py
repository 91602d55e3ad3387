"""`autoqvis select` on hand-built detections: inclusive thresholds, empty frames, PL.json, bad inputs."""

from __future__ import annotations

import json

import pytest

from _selftrain_cases import EMPTY, box, track
from autoqvis.cli import main

A = box(0, 0, 4, 4)
HALF = box(0, 0, 4, 2)  # IoU exactly 0.5 with A
FAR = box(6, 6, 10, 10)


def _line(video_id, *tracks):
    return json.dumps({"video_id": video_id, "detections": [
        {"score": t.score, "segmentations": t.segmentations, "pred_iou": t.pred_iou} for t in tracks]})


@pytest.fixture
def files(tmp_path):
    videos = {"videos": [{"id": v, "width": 10, "height": 10, "length": 3,
                          "file_names": [f"v{v}/{t}.jpg" for t in range(3)]} for v in (1, 2, 3)],
              "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "videos.json").write_text(json.dumps(videos))
    lines = [
        # Q exactly tau in frames 0-1 (0.75 x 1.0), 0.375 in frame 2
        _line(1, track([A, A, A], score=0.75, pred_iou=[1.0, 1.0, 0.5])),
        # score exactly 0.25; frame 2 empty (counts as selected)
        _line(2, track([A, A, EMPTY], score=0.25, pred_iou=[1.0, 1.0, 1.0])),
        # the second track overlaps the first at IoU exactly 0.5 in frame 0 only: suppressed
        _line(3, track([A, A, A], score=0.9, pred_iou=[1.0] * 3), track([HALF, FAR, FAR], score=0.8, pred_iou=[1.0] * 3)),
    ]
    (tmp_path / "det.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def _select(files, *extra):
    out = files / "pl.json"
    assert main(["select", "--detections", str(files / "det.jsonl"), "--unlabeled", str(files / "videos.json"),
                 "--out", str(out), *extra]) == 0
    pl = json.loads(out.read_text())
    return {v["id"]: v["eligible_frames"] for v in pl["videos"]}, pl


def test_thresholds_are_inclusive(files):
    eligible, pl = _select(files, "--tau", "0.75")
    assert eligible == {1: [0, 1], 3: [0, 1, 2]}  # video 2: Q = 0.25 < 0.75
    assert [a["selected"] for a in pl["annotations"] if a["video_id"] == 1] == [[1, 1, 0]]
    assert len([a for a in pl["annotations"] if a["video_id"] == 3]) == 1  # NMS at IoU 0.5 exactly

    eligible, pl = _select(files, "--tau", "0.25")
    assert eligible[2] == [0, 1, 2]  # score 0.25 passes the filter; the empty frame is eligible
    ann = next(a for a in pl["annotations"] if a["video_id"] == 2)
    assert ann["segmentations"][2] is None and ann["selected"] == [1, 1, 1]

    eligible, _ = _select(files, "--tau", "0.25", "--score-threshold", "0.2501")
    assert 2 not in eligible


def test_previous_state_fuses_and_keeps_videos_without_new_tracks(files):
    _select(files, "--tau", "0.75")
    (files / "round0.json").write_bytes((files / "pl.json").read_bytes())
    (files / "det.jsonl").write_text(_line(1, track([A, A, HALF], score=0.8, pred_iou=[0.5, 1.0, 1.0])) + "\n")
    eligible, pl = _select(files, "--tau", "0.75", "--previous", str(files / "round0.json"))
    assert eligible == {1: [0, 1, 2], 3: [0, 1, 2]}  # video 3 had no new track: kept as it was
    (fused,) = [a for a in pl["annotations"] if a["video_id"] == 1]
    # frame 0: new unselected (Q 0.4), old selected -> old mask; frames 1-2: the new selected masks
    assert fused["selected"] == [1, 1, 1] and fused["score"] == 0.8
    assert fused["segmentations"][2] == track([HALF]).segmentations[0]


@pytest.mark.parametrize("line, message", [
    (_line(9, track([A, A, A])), "line 1: video_id 9 is not a video of the unlabeled set"),
    (_line(1, track([A, A])), "line 1: detections\\[0\\]: segmentations has 2 entries, video 1 has 3 frames"),
    (json.dumps({"video_id": 1, "detections": [{"score": 0.9, "segmentations": [
        {"size": [20, 10], "counts": "0"}] * 3, "pred_iou": [1, 1, 1]}]}), "RLE size is \\[20, 10\\]"),
    ('{"video_id": 1', "line 1: not JSON"),
])
def test_bad_detections_are_one_line_errors(files, capsys, line, message):
    (files / "det.jsonl").write_text(line + "\n")
    rc = main(["select", "--detections", str(files / "det.jsonl"), "--unlabeled", str(files / "videos.json"),
               "--out", str(files / "pl.json")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and "det.jsonl" in err
    import re

    assert re.search(message, err), err
    assert not (files / "pl.json").exists()


def test_a_null_mask_in_a_previous_file_reads_as_selected(files):
    from autoqvis.selftrain.curate import read_training_set

    _select(files, "--tau", "0.25")
    pl = json.loads((files / "pl.json").read_text())
    ann = next(a for a in pl["annotations"] if a["video_id"] == 2)
    ann["selected"] = [1, 1, 0]  # frame 2 is empty
    (files / "edited.json").write_text(json.dumps(pl))
    _, state = read_training_set(files / "edited.json")
    assert state[2][0].selected == [1, 1, 1]
