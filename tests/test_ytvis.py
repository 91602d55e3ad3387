"""YouTubeVIS data layer: round trips, format conversion, lazy frames, and one test per validation error."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from autoqvis.data.rle_batch import counts_problems, counts_syntax_problem, scan_tracks
from autoqvis.core.tracks import decode_rle, encode_mask, encode_masks, rle_areas
from autoqvis.data.ytvis import YTVISDataset, load_results, load_ytvis, save_results, save_ytvis
from autoqvis.core.errors import AutoQVISError

H, W, T = 12, 16, 3


def _masks(seed: int, n: int = T) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((n, H, W), dtype=bool)
    for t in range(n):
        y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
        m[t, y:y + 4, x:x + rng.integers(2, 5)] = True
    return m


def _dataset_dict() -> dict:
    """Two videos, three tracks, with pseudo-label extras and one absent frame."""
    rles = encode_masks(_masks(1))
    rles2 = encode_masks(_masks(2))
    return {
        "info": {"description": "unit test"}, "licenses": [],
        "videos": [{"id": 1, "width": W, "height": H, "length": T, "file_names": [f"a/{t}.png" for t in range(T)],
                    "source": "toy"},
                   {"id": 5, "width": W, "height": H, "length": T, "file_names": [f"b/{t}.png" for t in range(T)]}],
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": rles,
             "areas": rle_areas(rles), "bboxes": [mask_utils.toBbox(r).tolist() for r in rles],
             "selected": [1, 0, 1], "quality": [0.9, 0.2, 0.8], "score": 0.7, "height": H, "width": W, "length": 1},
            {"id": 2, "video_id": 1, "category_id": 1, "iscrowd": 1, "segmentations": [rles2[0], None, rles2[2]],
             "areas": [int(mask_utils.area(rles2[0])), None, int(mask_utils.area(rles2[2]))],
             "bboxes": [mask_utils.toBbox(rles2[0]).tolist(), None, mask_utils.toBbox(rles2[2]).tolist()]},
            {"id": 3, "video_id": 5, "category_id": 1, "segmentations": rles2},  # areas/bboxes computed on load
        ],
    }


# ------------------------------------------------------------------------------------ RLE helpers
def test_encode_decode_area_match_pycocotools():
    masks = _masks(3, 5)
    rles = encode_masks(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [H, W] for r in rles)
    for m, r in zip(masks, rles):
        assert encode_mask(m) == r
        np.testing.assert_array_equal(decode_rle(r), m)
    assert rle_areas([rles[0], None]) == [int(masks[0].sum()), None]


def _reference_runs(counts: str) -> list[int] | None:
    """A plain transcription of pycocotools' rleFrString (None if a number is cut off)."""
    runs, p = [], 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p == len(counts):
                return None
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more, p, k = bool(c & 0x20), p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        runs.append(x + (runs[-2] if len(runs) > 2 else 0))
    return runs


def test_counts_checker_accepts_pycocotools_strings():
    rng = np.random.default_rng(0)
    masks = rng.random((300, 37, 53)) < rng.random((300, 1, 1))
    masks[:3], masks[3:6] = False, True
    counts = [r["counts"] for r in encode_masks(masks)]
    assert counts_problems(counts, [37 * 53] * 300) == [None] * 300


def test_cheap_syntax_check_finds_the_first_bad_string():
    good = encode_mask(np.eye(6, dtype=bool))["counts"]
    assert counts_syntax_problem([good] * 3) is None and counts_syntax_problem([]) is None
    assert counts_syntax_problem([good, good + "1i", good + "{", ""]) == (
        1, "counts ends in the middle of a number (truncated string)")
    assert counts_syntax_problem([good, good + "{", ""]) == (1, "counts has a character outside COCO's RLE code ('0'..'o')")
    assert counts_syntax_problem([good, "", good + "é"]) == (1, "counts is empty")
    assert counts_syntax_problem([good, good + "é"]) == (1, "counts has a non-ASCII character")


def test_counts_checker_agrees_with_a_reference_decoder_on_corrupted_strings():
    rng = np.random.default_rng(1)
    base = [r["counts"] for r in encode_masks(rng.random((40, 9, 11)) < 0.4)]
    alphabet = [chr(c) for c in range(48, 112)]
    corrupted = []
    for k in range(2000):
        s = list(base[k % 40])
        for _ in range(rng.integers(1, 3)):  # replace, insert or delete a character
            op, pos = rng.integers(0, 3), int(rng.integers(0, len(s)))
            if op == 0:
                s[pos] = alphabet[rng.integers(0, 64)]
            elif op == 1:
                s.insert(pos, alphabet[rng.integers(0, 64)])
            elif len(s) > 1:
                del s[pos]
        corrupted.append("".join(s))
    problems = counts_problems(corrupted, [99] * len(corrupted))
    n_bad = 0
    for s, problem in zip(corrupted, problems):
        runs = _reference_runs(s)
        valid = runs is not None and min(runs) >= 0 and sum(runs) == 99 and all(len(
            bin(abs(v))) < 40 for v in runs)
        assert (problem is None) == valid, (s, problem, runs)
        n_bad += not valid
    assert 1000 < n_bad < 2000  # both outcomes are exercised


def test_counts_checker_names_each_fault():
    good = encode_mask(np.eye(6, dtype=bool))["counts"]
    problems = counts_problems([good, good[:-1] + "\x7f", "", "1i", "0T10", "0@1", good + "1"], [36] * 7)
    assert problems[0] is None and problems[4] is None  # "0T10": runs 0, 36, 0 (zero-length runs are legal)
    assert "character outside" in problems[1]
    assert problems[2] == "counts is empty but the frame has 36 pixels"
    assert problems[3] == "counts ends in the middle of a number (truncated string)"
    assert problems[5] == "counts decodes to a negative run length"
    assert problems[6] == f"counts runs cover {sum(_reference_runs(good + '1'))} pixels but the frame has 36"


def test_parallel_scan_matches_sequential():
    rles = encode_masks(np.random.default_rng(4).random((50, 6, 7)) < 0.5)
    tracks = [[rles[(i + t) % 50] for t in range(4)] for i in range(6000)]
    tracks[4321] = list(tracks[4321])
    tracks[4321][2] = {"size": [6, 7], "counts": rles[0]["counts"] + "3"}
    tracks[5000] = [[[0.0, 0.0, 3.0, 0.0, 3.0, 3.0]], None, None, None]  # polygon: slow path
    sizes = [[6, 7]] * len(tracks)
    seq = scan_tracks(tracks, sizes, workers=1)
    par = scan_tracks(tracks, sizes, workers=2)
    assert seq == par
    assert seq.noncanonical == [5000]
    assert seq.problem[:2] == (4321, 2)


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_round_trip_keeps_masks_and_extra_keys(tmp_path):
    raw = _dataset_dict()
    before = copy.deepcopy(raw)
    ds = load_ytvis(raw)
    assert raw == before  # the input dict is not modified
    assert [v.id for v in ds.videos] == [1, 5] and ds.video(5).length == T
    ann3 = ds.annotations_of(5)[0]
    assert ann3.areas == rle_areas(raw["annotations"][2]["segmentations"])  # computed when absent
    assert ann3.bboxes[0] == mask_utils.toBbox(raw["annotations"][2]["segmentations"][0]).tolist()
    path = tmp_path / "out.json"
    save_ytvis(ds, path)
    again = load_ytvis(path)
    assert again.to_dict() == ds.to_dict()
    plain = json.loads(path.read_text())  # a plain YTVIS reader: json + pycocotools
    assert plain["info"] == raw["info"] and plain["videos"][0]["source"] == "toy"
    a1 = plain["annotations"][0]
    assert a1["selected"] == [1, 0, 1] and a1["quality"] == [0.9, 0.2, 0.8] and a1["score"] == 0.7
    for rle, m in zip(a1["segmentations"], _masks(1)):
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), m)
    assert plain["annotations"][1]["segmentations"][1] is None and plain["annotations"][1]["iscrowd"] == 1


def test_polygons_and_uncompressed_rle_are_converted():
    raw = _dataset_dict()
    m = _masks(1)[0]
    flat = m.flatten(order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))  # run boundaries
    runs = np.diff(np.r_[0, change]).tolist()
    runs = runs if flat[0] == 0 else [0] + runs
    runs[-1] = H * W - sum(runs[:-1])
    raw["annotations"][2]["segmentations"] = [{"size": [H, W], "counts": runs},
                                             [[2.0, 2.0, 8.0, 2.0, 8.0, 6.0, 2.0, 6.0]], []]
    ds = load_ytvis(raw)
    segs = ds.annotations[2].segmentations
    np.testing.assert_array_equal(decode_rle(segs[0]), m)
    assert isinstance(segs[1]["counts"], str) and 20 <= mask_utils.area(segs[1]) <= 40
    assert segs[2] is None  # an empty list is "absent", as the official code reads it


def test_results_round_trip_and_empty_list(tmp_path):
    gt = load_ytvis(_dataset_dict())
    rles = encode_masks(_masks(7))
    results = [{"video_id": 5, "score": 0.5, "category_id": 1, "segmentations": [rles[0], None, rles[2]],
                "pred_iou": [0.5, None, 1.0]}]
    path = tmp_path / "r.json"
    save_results(results, path)
    loaded = load_results(path, gt)
    assert loaded == results
    assert load_results([], gt) == []


def test_results_of_older_versions_read_quality_as_pred_iou(tmp_path):
    """Before pred_iou, a results file called the predicted IoU "quality": it reads back as pred_iou."""
    gt = load_ytvis(_dataset_dict())
    rles = encode_masks(_masks(7))
    old = {"video_id": 5, "score": 0.5, "category_id": 1, "segmentations": [rles[0], None, rles[2]],
           "quality": [0.25, None, 1.0]}
    save_results([old], tmp_path / "old.json")
    (loaded,) = load_results(tmp_path / "old.json", gt)
    assert loaded["pred_iou"] == [0.25, None, 1.0] and "quality" not in loaded
    both = {**old, "pred_iou": [0.5, None, 0.5]}  # a file with both keys means what it says
    assert load_results([both], gt)[0] == both
    with pytest.raises(AutoQVISError, match=r"result 0 \(video 5\): quality\[0\] must be a finite number"):
        load_results([{**old, "quality": [1.5, None, 1.0]}], gt)


# ------------------------------------------------------------------------------------ frames
def test_frames_are_read_lazily_from_the_image_root(tmp_path):
    raw = _dataset_dict()
    root = tmp_path / "JPEGImages"
    frame = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    (root / "a").mkdir(parents=True)
    Image.fromarray(frame).save(root / "a" / "1.png")
    (tmp_path / "v.json").write_text(json.dumps(raw))
    ds = load_ytvis(tmp_path / "v.json")  # no frame is opened here
    assert ds.image_root == root and ds.frame_path(1, 1) == root / "a" / "1.png"
    np.testing.assert_array_equal(ds.read_frame(ds.video(1), 1), frame)
    with pytest.raises(AutoQVISError, match=r"a/2\.png: frame 2 of video 1 not found"):
        ds.read_frame(1, 2)
    Image.fromarray(frame[:5]).save(root / "a" / "0.png")
    with pytest.raises(AutoQVISError, match="frame 0 of video 1 is 16x5, the video says 16x12"):
        ds.read_frame(1, 0)


# ------------------------------------------------------------------------------------ validation
def _edit(fn):
    raw = _dataset_dict()
    fn(raw)
    return raw


RLE0 = encode_masks(_masks(1))[0]
CASES = {
    "duplicate video id": (lambda d: d["videos"][1].update(id=1), r"video 1: duplicate video id \(videos\[1\]\)"),
    "duplicate annotation id": (lambda d: d["annotations"][2].update(id=2),
                                r"annotation 2: duplicate annotation id \(annotations\[2\]\)"),
    "annotation id 0": (lambda d: d["annotations"][0].update(id=0), r"annotation 0: annotation ids must be >= 1"),
    "unknown video_id": (lambda d: d["annotations"][0].update(video_id=9),
                         r"annotation 1: field 'video_id' 9 is not the id of a video"),
    "segmentations too short": (lambda d: d["annotations"][2]["segmentations"].pop(),
                                r"annotation 3 \(video 5\): field 'segmentations' has 2 entries, the video has 3"),
    "rle size": (lambda d: d["annotations"][2]["segmentations"].__setitem__(1, {"size": [H, W + 1], "counts": "0"}),
                 r"annotation 3 \(video 5\): segmentations\[1\]: RLE size is \[12, 17\] but the video is 12x16"),
    "rle counts total": (lambda d: d["annotations"][2]["segmentations"].__setitem__(
        2, {"size": [H, W], "counts": "0" + RLE0["counts"][1:]}),
        r"annotation 3 \(video 5\): segmentations\[2\]: malformed RLE: counts runs cover \d+ pixels but the frame has 192"),
    "rle counts character": (lambda d: d["annotations"][0]["segmentations"].__setitem__(
        0, {"size": [H, W], "counts": "{" + RLE0["counts"]}),
        r"annotation 1 \(video 1\): segmentations\[0\]: malformed RLE: counts has a character outside"),
    "negative area": (lambda d: d["annotations"][0]["areas"].__setitem__(1, -3),
                      r"annotation 1 \(video 1\): areas\[1\] must be a finite number >= 0 or null, got -3"),
    "non-finite area": (lambda d: d["annotations"][0]["areas"].__setitem__(2, math.inf),
                        r"annotation 1 \(video 1\): areas\[2\] must be a finite number >= 0 or null, got inf"),
    "bbox outside": (lambda d: d["annotations"][0]["bboxes"].__setitem__(0, [10.0, 2.0, 9.0, 3.0]),
                     r"annotation 1 \(video 1\): bboxes\[0\] \[10.0, 2.0, 9.0, 3.0\] lies outside the 16x12 frame"),
    "absolute file name": (lambda d: d["videos"][0]["file_names"].__setitem__(1, "/etc/passwd"),
                           r"video 1: file_names\[1\]: '/etc/passwd' is an absolute path"),
    "escaping file name": (lambda d: d["videos"][1]["file_names"].__setitem__(0, "b/../../x.jpg"),
                           r"video 5: file_names\[0\]: 'b/../../x.jpg' escapes the image root"),
    "length field": (lambda d: d["videos"][0].update(length=4),
                     r"video 1: field 'length' is 4 but file_names has 3 entries"),
    "unknown category": (lambda d: d["annotations"][1].update(category_id=7),
                         r"annotation 2 \(video 1\): category_id 7 is not among the file's categories \[1\]"),
    "bad iscrowd": (lambda d: d["annotations"][1].update(iscrowd=2), r"annotation 2 \(video 1\): field 'iscrowd'"),
    "selected length": (lambda d: d["annotations"][0].update(selected=[1, 1]),
                        r"annotation 1 \(video 1\): field 'selected' has 2 entries, the video has 3 frames"),
    "bad height": (lambda d: d["videos"][0].update(height=0), r"video 1: field 'height' must be a positive integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_validation_error_names_file_record_and_field(case, tmp_path):
    edit, pattern = CASES[case]
    raw = _edit(edit)
    if case == "non-finite area":  # json files cannot hold inf (read_json rejects it): use a dict
        with pytest.raises(AutoQVISError, match=rf"^<YouTubeVIS dict>: {pattern}"):
            load_ytvis(raw)
        return
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(AutoQVISError, match=rf"^{tmp_path}/bad\.json: {pattern}"):
        load_ytvis(path)


@pytest.mark.parametrize("text, pattern", [
    ("{not json", r"not valid JSON"),
    ("[1, 2]", r"a YouTubeVIS file must be a json object, got list"),
    ('{"annotations": []}', r"field 'videos' is missing or not a list"),
])
def test_file_level_errors(text, pattern, tmp_path):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(AutoQVISError, match=pattern):
        load_ytvis(path)


RESULT_CASES = {
    "unknown video": (lambda r: r.update(video_id=3), r"result 0: video_id 3 is not a video of the ground truth"),
    "score above 1": (lambda r: r.update(score=1.5), r"result 0 \(video 5\): field 'score' must be a finite number in \[0, 1\], got 1.5"),
    "negative score": (lambda r: r.update(score=-0.1), r"field 'score' must be a finite number in \[0, 1\], got -0.1"),
    "nan score": (lambda r: r.update(score=math.nan), r"field 'score' must be a finite number in \[0, 1\], got nan"),
    "missing segmentations": (lambda r: r.pop("segmentations"), r"result 0 \(video 5\): segmentations is missing"),
    "short segmentations": (lambda r: r["segmentations"].pop(),
                            r"result 0 \(video 5\): segmentations has 2 entries, the video has 3 frames"),
    "mask size": (lambda r: r["segmentations"].__setitem__(1, encode_mask(np.ones((H, W + 2), bool))),
                  r"result 0 \(video 5\): segmentations\[1\]: RLE size is \[12, 18\] but the video is 12x16"),
    "malformed counts": (lambda r: r["segmentations"].__setitem__(2, {"size": [H, W], "counts": "00"}),
                         r"result 0 \(video 5\): segmentations\[2\]: malformed RLE: counts runs cover 0 pixels"),
    "quality out of range": (lambda r: r.update(quality=[0.5, 2.0, 0.1]), r"result 0 \(video 5\): quality\[1\]"),
    "pred_iou out of range": (lambda r: r.update(pred_iou=[0.5, 0.1, -1.0]), r"result 0 \(video 5\): pred_iou\[2\]"),
    "pred_iou too short": (lambda r: r.update(pred_iou=[0.5]), r"field 'pred_iou' has 1 entries, the video has 3"),
    "category not an int": (lambda r: r.update(category_id="cat"), r"field 'category_id' must be an integer"),
}


@pytest.mark.parametrize("case", sorted(RESULT_CASES))
def test_each_results_error_names_the_record(case):
    gt = load_ytvis(_dataset_dict())
    rec = {"video_id": 5, "score": 0.5, "category_id": 1, "segmentations": encode_masks(_masks(9))}
    edit, pattern = RESULT_CASES[case]
    edit(rec)
    with pytest.raises(AutoQVISError, match=pattern) as err:
        load_results([rec], gt)
    assert str(err.value).startswith("<results list>: result 0")


def test_results_with_unknown_category_are_kept_and_not_a_list_is_rejected(tmp_path):
    gt = load_ytvis(_dataset_dict())
    rec = {"video_id": 5, "score": 0.5, "category_id": 999, "segmentations": [None] * T}
    assert load_results([rec], gt)[0]["category_id"] == 999
    path = tmp_path / "r.json"
    path.write_text('{"video_id": 5}')
    with pytest.raises(AutoQVISError, match=r"r\.json: a results file must be a json list"):
        load_results(path, gt)


def test_dataset_index_follows_edits():
    ds = load_ytvis(_dataset_dict())
    assert [a.id for a in ds.annotations_of(1)] == [1, 2]
    ds.annotations.pop(0)
    assert [a.id for a in ds.annotations_of(1)] == [2]
    with pytest.raises(AutoQVISError, match="no video with id 4"):
        ds.video(4)
    assert isinstance(ds, YTVISDataset)
