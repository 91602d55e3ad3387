"""Class-agnostic YouTubeVIS evaluation: the reference cases, an oracle against the official code, the CLI."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

from autoqvis import cli
from autoqvis.core.tracks import encode_masks, rle_areas, rle_bboxes
from autoqvis.data.ytvis import load_ytvis
from autoqvis.core.errors import AutoQVISError
from autoqvis.core.fileio import read_json
from autoqvis.core.tracks import video_iou
from autoqvis.eval.ytvis_eval import STAT_KEYS, evaluate, evaluate_detailed, format_summary

CASES = ["01_mixed_basic", "02_perfect", "03_many_fp_maxdets", "04_crowd", "05_area_ranges", "06_ties_nulls_empty"]


# ------------------------------------------------------------------------------------ reference cases
@pytest.mark.parametrize("case", CASES)
def test_reference_case_is_reproduced_bit_for_bit(case, reference_dir):
    folder = reference_dir / "ytvis_eval" / case
    expected = json.loads((folder / "expected.json").read_text())
    out = evaluate_detailed(folder / "gt.json", folder / "results.json", workers=1)
    assert out.stats == expected["stats"]  # exact: the same float64 operations as the official code
    assert format_summary(out.stats) == expected["summary_lines"]
    diag = expected["diagnostics"]
    np.testing.assert_array_equal(out.recall[:, 0], np.array(diag["recall_T_A_M"]))
    prec = out.precision[:, :, 0]  # (T, R, A, M)
    mean_prec = np.where((prec > -1).all(1), prec.mean(1), -1)
    np.testing.assert_allclose(mean_prec, np.array(diag["mean_precision_T_A_M"]), rtol=0, atol=1e-12)
    for vid, want in diag["video_iou"].items():
        got = out.video_iou[int(vid)]
        assert got["dt_result_index"] == want["dt_result_index"] and got["gt_id"] == want["gt_id"]
        np.testing.assert_array_equal(got["iou"].reshape(-1), np.array(want["iou"], dtype=float).reshape(-1))


def test_cli_prints_the_table_and_writes_the_flat_json(reference_dir, tmp_path, capsys):
    folder = reference_dir / "ytvis_eval" / "04_crowd"
    out = tmp_path / "m.json"
    rc = cli.main(["evaluate", "--gt", str(folder / "gt.json"), "--results", str(folder / "results.json"),
                   "--out", str(out)])
    assert rc == 0
    expected = json.loads((folder / "expected.json").read_text())
    printed = capsys.readouterr().out.splitlines()
    assert printed[:12] == expected["summary_lines"]
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(STAT_KEYS) and metrics == expected["stats"]


def test_cli_reports_bad_input_in_one_line(reference_dir, tmp_path, capsys):
    folder = reference_dir / "ytvis_eval" / "01_mixed_basic"
    results = json.loads((folder / "results.json").read_text())
    results[3]["segmentations"] = results[3]["segmentations"][:-1]
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(results))
    rc = cli.main(["evaluate", "--gt", str(folder / "gt.json"), "--results", str(bad), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith(f"autoqvis evaluate: error: {bad}: result 3 (video ")
    assert "segmentations has" in err and not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------------------------ random sets
def _blob_masks(rng: np.random.Generator, t: int, h: int, w: int, radius: float | None = None) -> np.ndarray:
    """(t, h, w) bool: a moving ellipse, sometimes absent (all False) in a frame."""
    yy, xx = np.mgrid[:h, :w]
    r = radius if radius is not None else rng.uniform(2, 0.3 * min(h, w))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    vy, vx = rng.normal(0, 2, 2)
    masks = np.stack([((yy - cy - vy * k) / r) ** 2 + ((xx - cx - vx * k) / (r * 1.3)) ** 2 <= 1 for k in range(t)])
    masks[rng.random(t) < 0.15] = False
    return masks


def make_random_set(seed: int) -> tuple[dict, list]:
    """A small YTVIS GT + results exercising crowd, ties, nulls, empty RLEs, area ranges and maxDets."""
    rng = np.random.default_rng(seed)
    videos, anns, results = [], [], []
    n_videos = 6
    for vid in range(1, n_videos + 1):
        big = vid == 1  # one video of large frames for the medium / large ranges
        h, w = (300, 400) if big else (int(rng.integers(20, 60)), int(rng.integers(30, 80)))
        t = int(rng.integers(2, 6))
        videos.append({"id": vid, "height": h, "width": w, "length": t, "file_names": [f"{vid}/{k}.jpg" for k in range(t)]})
        radii = [40, 90, 110, 150] if big else [None] * int(rng.integers(0, 5))  # big: small, medium, large
        gt_masks = [_blob_masks(rng, t, h, w, r) for r in radii]
        for masks in gt_masks:
            segs = [r if m.any() else None for r, m in zip(encode_masks(masks), masks)]
            areas = rle_areas(segs)
            if rng.random() < 0.2:  # stored areas are what counts, not the masks'
                areas = [a * 40 if a else a for a in areas]
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": int(rng.integers(1, 4)),
                         "iscrowd": int(rng.random() < 0.15), "segmentations": segs, "areas": areas,
                         "bboxes": rle_bboxes(segs)})
        preds = []
        for masks in gt_masks:
            for _ in range(int(rng.integers(0, 3))):
                noisy = np.roll(masks, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
                preds.append(noisy)
        n_fp = 110 if vid == 2 else int(rng.integers(0, 6))  # video 2 goes past maxDets = 100
        preds += [_blob_masks(rng, t, h, w) for _ in range(n_fp)]
        for masks in preds:
            segs = encode_masks(masks)
            segs = [s if m.any() or rng.random() < 0.5 else None for s, m in zip(segs, masks)]  # null or empty RLE
            results.append({"video_id": vid, "score": float(rng.choice([0.3, 0.5, 0.7, 0.9])),
                            "category_id": int(rng.choice([1, 2, 3, 7])), "segmentations": segs})
    order = rng.permutation(len(results))
    gt = {"videos": videos, "annotations": anns,
          "categories": [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]}
    return gt, [results[i] for i in order]


def _official():
    """The official YTVIS / YTVISeval from mmdet's copy, loaded without importing mmdet's __init__."""
    spec = importlib.util.find_spec("mmdet")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("oracle needs mmdet: .venv/bin/pip install --no-deps mmdet==3.3.0")
    np.float = float  # the copy still uses np.float (removed in numpy 1.24)
    folder = Path(spec.submodule_search_locations[0]) / "evaluation" / "functional"
    mods = []
    for name in ("ytvis", "ytviseval"):
        s = importlib.util.spec_from_file_location(f"_oracle_{name}", folder / f"{name}.py")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        mods.append(mod)
    return mods[0].YTVIS, mods[1].YTVISeval


def official_evaluate(gt: dict, results: list) -> tuple[dict, np.ndarray, np.ndarray]:
    ytvis, ytviseval = _official()
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = ytvis(copy.deepcopy(gt))
        ev = ytviseval(gt_api, gt_api.loadRes(copy.deepcopy(results)), "segm")
        ev.params.useCats = 0
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_KEYS, map(float, ev.stats))), ev.eval["precision"], ev.eval["recall"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sets_match_the_official_evaluator_exactly(seed):
    gt, results = make_random_set(seed)
    want, precision, recall = official_evaluate(gt, results)
    got = evaluate_detailed(load_ytvis(gt), results, workers=1)
    assert got.stats == want
    np.testing.assert_array_equal(got.precision, precision)
    np.testing.assert_array_equal(got.recall, recall)
    defined = [k for k in STAT_KEYS if want[k] > -1]
    assert len(defined) >= 10 and 0 < want["AP"] < 1  # the set exercises (nearly) every number


def test_worker_processes_give_identical_numbers_and_errors():
    gt, results = make_random_set(3)
    results = results * 3  # > 300 results: the pool is used
    ds = load_ytvis(gt)
    assert evaluate_detailed(ds, results, workers=2).stats == evaluate_detailed(ds, results, workers=1).stats
    k = next(i for i, r in enumerate(results) if r["segmentations"][0] is not None and r["video_id"] == 3)
    size = results[k]["segmentations"][0]["size"]
    cut = copy.deepcopy(results)  # a string ending inside a number: found by the cheap check in the workers
    cut[k]["segmentations"][0] = {"size": size, "counts": "1i"}
    short = copy.deepcopy(results)  # well-formed but too few runs: found with check_masks
    short[k]["segmentations"][0] = {"size": size, "counts": "0"}
    where = rf"^<results list>: result {k} \(video 3\): segmentations\[0\]: malformed RLE: "
    for workers in (1, 2):
        with pytest.raises(AutoQVISError, match=where + "counts ends in the middle of a number"):
            evaluate(ds, cut, workers=workers)
        with pytest.raises(AutoQVISError, match=where + "counts runs cover 0 pixels"):
            evaluate(ds, short, workers=workers, check_masks=True)


def test_polygon_results_are_converted_like_their_rle():
    gt, results = make_random_set(4)
    k = next(i for i, r in enumerate(results) if r["video_id"] != 1)
    v = next(v for v in gt["videos"] if v["id"] == results[k]["video_id"])
    square = [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0, 9.0]]
    as_poly = copy.deepcopy(results)
    as_poly[k]["segmentations"] = [square] * v["length"]
    from pycocotools import mask as mask_utils

    rle = mask_utils.merge(mask_utils.frPyObjects(square, v["height"], v["width"]))
    as_rle = copy.deepcopy(results)
    as_rle[k]["segmentations"] = [{"size": rle["size"], "counts": rle["counts"].decode()}] * v["length"]
    ds = load_ytvis(gt)
    assert evaluate(ds, as_poly, workers=1) == evaluate(ds, as_rle, workers=1)


def test_unknown_result_category_is_dropped_as_officially():
    gt, results = make_random_set(5)
    ds = load_ytvis(gt)
    kept = [r for r in results if r["category_id"] != 7]
    assert len(kept) < len(results)
    assert evaluate(ds, results, workers=1) == evaluate(ds, kept, workers=1)


def test_empty_results_give_zero_where_there_is_gt_and_minus_one_elsewhere():
    gt, _ = make_random_set(0)
    small_only = {**gt, "videos": gt["videos"][1:], "annotations": [a for a in gt["annotations"] if a["video_id"] != 1]}
    stats = evaluate(load_ytvis(small_only), [], workers=1)
    assert stats == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": -1.0, "APl": -1.0,
                     "AR1": 0.0, "AR10": 0.0, "AR100": 0.0, "ARs": 0.0, "ARm": -1.0, "ARl": -1.0}
    no_gt = {**small_only, "annotations": []}
    assert set(evaluate(load_ytvis(no_gt), [], workers=1).values()) == {-1.0}


def test_perfect_self_evaluation_gives_ap_one():
    gt, _ = make_random_set(6)
    gt["annotations"] = [{**a, "iscrowd": 0, "areas": rle_areas(a["segmentations"])} for a in gt["annotations"]]
    results = [{"video_id": a["video_id"], "score": 1.0, "category_id": a["category_id"],
                "segmentations": a["segmentations"]} for a in gt["annotations"]]
    stats = evaluate(load_ytvis(gt), results, workers=1)
    assert stats["AP"] == stats["AP50"] == stats["AR100"] == 1.0


def test_video_iou_equals_summed_mask_overlaps():
    rng = np.random.default_rng(7)
    h, w, t = 23, 31, 4
    dts = [_blob_masks(rng, t, h, w) for _ in range(6)]
    gts = [_blob_masks(rng, t, h, w) for _ in range(3)]
    to_segs = lambda ms: [r if m.any() or k % 2 else None for k, (r, m) in enumerate(zip(encode_masks(ms), ms))]  # noqa: E731
    got, areas = video_iou([to_segs(m) for m in dts], [to_segs(m) for m in gts])
    want = np.array([[(d & g).sum() / max((d | g).sum(), 1) for g in gts] for d in dts])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(areas, np.array([m.sum((1, 2)) for m in dts]))
    assert 0 < got.max() < 1


def test_dataset_built_in_code_with_a_wrong_mask_is_refused():
    gt, results = make_random_set(8)
    ds = load_ytvis(gt)
    ann = next(a for a in ds.annotations if a.video_id != 1 and a.segmentations[0] is not None)
    h, w = ds.video(ann.video_id).height, ds.video(ann.video_id).width
    ann.segmentations[0] = {"size": [w, h], "counts": ann.segmentations[0]["counts"]}  # transposed size
    with pytest.raises(AutoQVISError, match=rf"ground truth annotation {ann.id} \(video {ann.video_id}\): "
                                            r"segmentations\[0\]: not a compressed RLE of the video's size"):
        evaluate(ds, results, workers=1)


# ------------------------------------------------------------------------------------ parts
@pytest.fixture
def many_parts(monkeypatch):
    """Cut even small inputs into parts (2 per worker), as a YouTubeVIS-val file is."""
    from autoqvis.eval import ytvis_parts

    monkeypatch.setattr(ytvis_parts, "_PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(ytvis_parts, "_PARALLEL_MIN_RESULTS", 0)


def _shuffled_set(seed: int) -> tuple[dict, list]:
    """A random set whose videos are spread over the whole results list (every part holds some of every
    video's results, video 2 more than 100 of them)."""
    gt, results = make_random_set(seed)
    order = np.random.default_rng(seed).permutation(2 * len(results))
    return gt, [copy.deepcopy(results[i % len(results)]) for i in order]


def test_file_read_in_parts_gives_the_numbers_of_one_part(tmp_path, many_parts):
    gt, results = _shuffled_set(9)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    ds = load_ytvis(gt)
    whole = evaluate_detailed(ds, results, workers=1)  # one part, in this process
    for source in (path, results):
        parts = evaluate_detailed(ds, source, workers=2)  # 4 parts on 2 worker processes
        assert parts.stats == whole.stats
        np.testing.assert_array_equal(parts.precision, whole.precision)
        assert parts.video_iou.keys() == whole.video_iou.keys()
        for vid, want in whole.video_iou.items():
            got = parts.video_iou[vid]
            assert got["dt_result_index"] == want["dt_result_index"] and got["gt_id"] == want["gt_id"]
            np.testing.assert_array_equal(got["iou"], want["iou"])
    assert len(whole.video_iou[2]["dt_result_index"]) == 100  # video 2 had more: its first 100 are kept


def test_json_array_parts_are_the_elements_or_refused():
    from autoqvis.data.json_array import parse_part, split_array

    gt, results = make_random_set(10)
    results[5]["note"] = '}, {"video_id": 1, "x": ['  # a boundary look-alike inside a string
    raw = json.dumps(results).encode()
    for n in (1, 2, 3, 7):
        ranges = split_array(raw, n)
        assert len(ranges) == n
        parts = [parse_part(raw, ranges, i) for i in range(n)]
        assert [r for p in parts for r in p] == results
    cut = raw.index(b'}, {\\"video_id') + 1  # a cut inside that string: its part does not parse
    assert parse_part(raw, [(0, cut), (cut + 2, len(raw))], 0) is None
    assert parse_part(b'[{"a": NaN}, {"b": 1}]', [(0, 11), (13, 22)], 0) is None
    assert split_array(b'{"videos": []}', 4) == [(0, 14)]


def test_results_file_cut_in_the_wrong_places_is_read_whole(tmp_path, many_parts, monkeypatch):
    from autoqvis.eval import ytvis_parts

    def inside_strings(path: Path, parts: int) -> list[tuple[int, int]]:
        raw = path.read_bytes()
        cuts = [m.start() + 1 for m in __import__("re").finditer(rb'\}, \{\\"', raw)][:parts - 1]
        return [(a + 2 if a else 0, b) for a, b in zip([0] + cuts, cuts + [len(raw)])]

    gt, results = _shuffled_set(11)
    for r in results:
        r["note"] = '}, {"score": 1}'
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    monkeypatch.setattr(ytvis_parts, "split_array", inside_strings)
    read_whole = []
    monkeypatch.setattr(ytvis_parts, "read_json", lambda *a: read_whole.append(a) or read_json(*a))
    ds = load_ytvis(gt)
    assert evaluate(ds, path, workers=2) == evaluate(ds, results, workers=1)
    assert len(read_whole) == 1


def test_first_bad_result_of_the_file_is_reported_from_any_part(tmp_path, many_parts):
    gt, results = _shuffled_set(12)
    n = len(results)
    ds = load_ytvis(gt)
    late_field, early_mask = n - 3, 2  # fields are checked before masks, as in a serial check
    bad = copy.deepcopy(results)
    bad[late_field]["score"] = 1.5
    k = next(i for i in range(early_mask, n) if bad[i]["segmentations"][0] is not None)
    bad[k]["segmentations"][0] = {"size": bad[k]["segmentations"][0]["size"], "counts": "1i"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    vid = bad[late_field]["video_id"]
    for workers in (1, 2):
        with pytest.raises(AutoQVISError, match=rf"^{path}: result {late_field} \(video {vid}\): field 'score'"):
            evaluate(ds, path, workers=workers)
    bad[late_field]["score"] = 0.5
    late_mask = next(i for i in range(n - 1, k, -1) if bad[i]["segmentations"][-1] is not None)
    bad[late_mask]["segmentations"][-1] = [[1.0, 1.0, 2.0]]  # a polygon of too few points, later in the file
    path.write_text(json.dumps(bad))
    for workers in (1, 2):
        with pytest.raises(AutoQVISError, match=rf"^{path}: result {k} \(video {bad[k]['video_id']}\): "
                                                r"segmentations\[0\]: malformed RLE: counts ends in the middle"):
            evaluate(ds, path, workers=workers)
        bad[k]["segmentations"][0] = results[k]["segmentations"][0]
        with pytest.raises(AutoQVISError, match=rf"^<results list>: result {late_mask} .*segmentations\[\d+\]: "
                                                r"polygon 0 must be a list of >= 3"):
            evaluate(ds, bad, workers=workers)
        bad[k]["segmentations"][0] = {"size": results[k]["segmentations"][0]["size"], "counts": "1i"}


def test_fast_json_reads_the_floats_json_reads():
    from autoqvis.data.json_array import loads

    rng = np.random.default_rng(13)
    bits = rng.integers(0, 2**63, 20000, dtype=np.uint64) | (rng.integers(0, 2, 20000, dtype=np.uint64) << 63)
    floats = bits.view(np.float64)
    literals = [repr(float(x)) for x in floats[np.isfinite(floats)]]
    literals += [f"0.{rng.integers(0, 10**18)}{rng.integers(0, 10**9)}" for _ in range(5000)]
    literals += [f"{rng.integers(1, 10**15)}e{rng.integers(-330, 290)}" for _ in range(5000)]
    doc = "[" + ",".join(literals) + "]"
    assert [repr(x) for x in loads(doc.encode())] == [repr(x) for x in json.loads(doc)]


def test_video_ids_beyond_64_bits_are_fine():
    gt, results = make_random_set(14)
    big = copy.deepcopy(gt), copy.deepcopy(results)
    for v in big[0]["videos"]:
        v["id"] += 2**65
    for rec in big[0]["annotations"] + big[1]:
        rec["video_id"] += 2**65
    assert evaluate(load_ytvis(big[0]), big[1], workers=1) == evaluate(load_ytvis(gt), results, workers=1)


def test_fast_runs_check_finds_what_the_full_check_finds():
    from pycocotools import mask as mask_utils

    from autoqvis.data.rle_batch import counts_problems, first_bad_counts

    rng = np.random.default_rng(15)
    good = [r["counts"] for r in encode_masks(rng.random((300, 9, 13)) < rng.random((300, 1, 1)))]
    big = mask_utils.encode(np.asfortranarray((rng.random((300, 400, 2)) < 0.5).astype(np.uint8)))
    strings, pixels = good + [b["counts"].decode() for b in big], [117] * 300 + [120000] * 2
    alphabet = [chr(c) for c in range(40, 120)] + ["\u00e9"]
    for _ in range(1500):  # garbage: bad characters, cut-off numbers, short / long / negative runs
        strings.append("".join(rng.choice(alphabet, rng.integers(0, 10))))
        pixels.append(int(rng.choice([117, 36, 5])))
    for s in good[:100]:  # one character changed, or a number too long added
        i = int(rng.integers(0, len(s)))
        strings += [s[:i] + chr(48 + int(rng.integers(0, 64))) + s[i + 1:], s + "ooooooo1"]
        pixels += [117, 117]
    order = rng.permutation(len(strings))
    strings, pixels = [strings[i] for i in order], np.array(pixels)[order]
    problems = counts_problems(strings, pixels)
    assert 0 < sum(p is None for p in problems) < len(strings)
    for start in range(0, len(strings), 97):
        for width in (1, 4, 60, 1200):
            window = slice(start, start + width)
            want = next((i for i, p in enumerate(problems[window]) if p is not None), None)
            assert first_bad_counts(strings[window], pixels[window]) == want
    # a chunk holding a non-ASCII string still checks the others
    assert counts_problems([good[0] + "1", "\u00e9"], [117, 117])[0] is not None
