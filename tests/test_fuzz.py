"""Fuzzing of the loaders and the evaluator (issue 7): whatever json they are given, they either return or
raise ``AutoQVISError`` -- never another exception, a crash of pycocotools, or a hang.

Hypothesis runs derandomised (the same examples on every run) with a bounded number of examples. Inputs are
(a) random json values, (b) valid files with one to three nodes replaced by random json values (reaches the
deep checks), (c) valid files with random RLE ``counts`` strings, sizes, uncompressed runs and polygons,
(d) frames of huge or odd sizes with masks of that size, (e) random bytes as a file.
Bugs these found (and the fixes): polygons with far-away vertices crashed pycocotools (segfault) or took
minutes; frames over 2^31 pixels overflowed it (OverflowError); RLEs whose runs do not cover the frame
made the evaluator hang in pycocotools' iou.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from autoqvis.data.coco import load_coco
from autoqvis.core.tracks import encode_mask
from autoqvis.data.ytvis import load_results, load_ytvis
from autoqvis.core.errors import AutoQVISError
from autoqvis.eval.ytvis_eval import evaluate
from autoqvis.core.fileio import read_json

T, H, W = 3, 12, 16

# AUTOQVIS_FUZZ_EXAMPLES=5000 runs a long, randomised campaign (how the bugs fixed with these tests were found);
# the default is a short derandomised run for the suite.
_LONG = int(os.environ.get("AUTOQVIS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(derandomize=not _LONG, database=None, deadline=None, max_examples=_LONG or 120,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# json leaves include the values loaders trip over: huge / negative ints, inf and nan floats, odd strings
LEAVES = (st.none() | st.booleans()
          | st.integers(min_value=-(2**70), max_value=2**70)
          | st.sampled_from([0, 1, -1, 2, 3, H, W, 2**31, 2**63, 10**30])
          | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=12)
          | st.sampled_from(["", "0", "..", "../x.png", "/abs.png", "v1/00000.png", "PP0", "\u00e9"]))
JSON = st.recursive(LEAVES, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids,
                                                                                       max_size=5), max_leaves=20)
RLE_CHARS = st.text(alphabet=string.digits + string.ascii_letters[:40] + ":;<=>?@[\\]^_`" + " \x00\u00ff", max_size=24)


def _masks(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((T, H, W), bool)
    for t in range(T):
        y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
        m[t, y:y + 4, x:x + 5] = True
    return m


def gt_dict() -> dict:
    return {"videos": [{"id": 1, "width": W, "height": H, "length": T, "file_names": [f"v/{t}.png" for t in range(T)]},
                       {"id": 2, "width": W, "height": H, "file_names": [f"w/{t}.png" for t in range(T)]}],
            "annotations": [{"id": k + 1, "video_id": 1 + k % 2, "category_id": 1, "iscrowd": 0,
                             "segmentations": [encode_mask(m) for m in _masks(k)],
                             "areas": [20.0] * T, "bboxes": [[1.0, 1.0, 5.0, 4.0]] * T} for k in range(3)],
            "categories": [{"id": 1, "name": "object"}]}


def results_list() -> list:
    return [{"video_id": 1 + k % 2, "score": 0.5 + 0.1 * k, "category_id": 1,
             "segmentations": [encode_mask(m) for m in _masks(k + 10)]} for k in range(3)]


def coco_dict() -> dict:
    return {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                       {"id": 2, "file_name": "b.png", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": encode_mask(_masks(0)[0])},
                            {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]], "area": 35.0,
                             "bbox": [1.0, 1.0, 7.0, 5.0]}],
            "categories": [{"id": 1, "name": "object"}]}


GT = load_ytvis(gt_dict())


# ----------------------------------------------------------------------------------------- mutations
def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) to a node of a json value, the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, base: Any, values=JSON) -> Any:
    """``base`` with one to three nodes replaced by a drawn value (or a dict key removed)."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        if not path:
            return draw(values)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return doc


_SCRATCH = Path(tempfile.mkdtemp(prefix="autoqvis-fuzz-"))
atexit.register(shutil.rmtree, _SCRATCH, True)


def as_input(doc: Any, top: type) -> Any:
    """``doc`` itself when the loader takes it in memory (a dict, or a list of results), else a json file
    holding it (a file may hold any json value at the top level)."""
    if isinstance(doc, top):
        return doc
    path = _SCRATCH / "doc.json"
    path.write_text(json.dumps(doc))
    return path


def only_our_error(fn, *args) -> None:
    try:
        fn(*args)
    except AutoQVISError as e:
        assert str(e).strip(), "an empty error message"


# ---------------------------------------------------------------------------------------------- tests
@FUZZ
@given(JSON)
def test_random_json_everywhere(value):
    for wrapped in (value, {"videos": value}, {"images": value}, [value]):
        only_our_error(load_ytvis, as_input(wrapped, dict))
        only_our_error(load_coco, as_input(wrapped, dict))
        only_our_error(load_results, as_input(wrapped, list), GT)
        only_our_error(evaluate, GT, as_input(wrapped, list))


@FUZZ
@given(mutated(gt_dict()))
def test_mutated_ytvis(doc):
    try:
        gt = load_ytvis(as_input(doc, dict))
    except AutoQVISError:
        return
    only_our_error(evaluate, gt, results_list())


@FUZZ
@given(mutated(results_list()))
def test_mutated_results(doc):
    only_our_error(load_results, as_input(doc, list), GT)
    only_our_error(evaluate, GT, as_input(doc, list))


@FUZZ
@given(mutated(coco_dict()))
def test_mutated_coco(doc):
    only_our_error(load_coco, as_input(doc, dict), None, True)


SIZES = st.lists(st.integers(-3, 40) | st.sampled_from([2**31, 2**32 + H, 10**12]), min_size=0, max_size=3)
POLY = st.lists(st.floats(-1e12, 1e12, allow_nan=False) | st.sampled_from([0.0, -0.5, W + 0.5, 1e300, -1e300]),
                min_size=0, max_size=10)
SEGMENTATION = (st.fixed_dictionaries({"size": SIZES | st.just([H, W]), "counts": RLE_CHARS})
                | st.fixed_dictionaries({"size": st.just([H, W]),
                                         "counts": st.lists(st.integers(-2, H * W + 2), max_size=6)})
                | st.lists(POLY, max_size=2) | st.none())


@FUZZ
@given(st.lists(SEGMENTATION, min_size=T, max_size=T), st.integers(0, 2))
def test_random_rle_strings_sizes_and_polygons(segs, which):
    """The masks of a GT track, a result and a COCO annotation replaced by random ones."""
    gt = gt_dict()
    gt["annotations"][which]["segmentations"] = segs
    for key in ("areas", "bboxes"):
        gt["annotations"][which].pop(key)
    only_our_error(load_ytvis, gt)
    res = results_list()
    res[which]["segmentations"] = copy.deepcopy(segs)
    only_our_error(load_results, res, GT)
    only_our_error(evaluate, GT, res)
    only_our_error(evaluate, GT, res, 1, True)  # check_masks: every counts string decoded
    coco = coco_dict()
    coco["annotations"][which % 2]["segmentation"] = copy.deepcopy(segs[0]) if segs[0] is not None else []
    only_our_error(load_coco, coco, None, True)


SIDE = st.integers(-2, 2**40) | st.sampled_from([1, 46340, 65536, 65537, 2**31 - 1, 2**31, 2**32 + 1, 10**30])


@FUZZ
@given(SIDE, SIDE, st.sampled_from(["zeros", "string", "uncompressed", "polygon"]), RLE_CHARS,
       st.lists(st.floats(-2e5, 2e5, allow_nan=False), min_size=6, max_size=8))
def test_random_frame_sizes(h, w, kind, counts, poly):
    """Huge or odd frame sizes with masks of that size: pycocotools overflows past 32 bits, must not be reached."""
    if kind == "zeros":  # one run of h*w zeros, coded as pycocotools codes it (a valid mask of any size)
        seg = {"size": [h, w], "counts": _coco_number(max(h * w, 0))}
    elif kind == "string":
        seg = {"size": [h, w], "counts": counts}
    elif kind == "uncompressed":
        seg = {"size": [h, w], "counts": [h * w]}
    else:
        seg = [poly[: len(poly) // 2 * 2]]
    video = {"id": 1, "height": h, "width": w, "file_names": ["a.png"]}
    gt = {"videos": [video], "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [seg]}]}
    only_our_error(load_ytvis, gt)
    try:
        empty = load_ytvis({"videos": [video]})
    except AutoQVISError:
        empty = GT
    res = [{"video_id": 1, "score": 0.5, "category_id": 1, "segmentations": [copy.deepcopy(seg)]}]
    only_our_error(load_results, res, empty)
    only_our_error(evaluate, empty, res)
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": copy.deepcopy(seg)}]}
    only_our_error(load_coco, coco)


def _coco_number(n: int) -> str:
    """A non-negative number in COCO's RLE string code (5 bits a character, 0x20 = more follow)."""
    out = []
    while True:
        c, n = n & 0x1F, n >> 5
        more = n != 0 or (c & 0x10) != 0
        out.append(chr(c + (0x20 if more else 0) + 48))
        if not more:
            return "".join(out)


@FUZZ
@given(data=st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_random_bytes_as_a_file(data, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz.json"
    path.write_bytes(data)
    only_our_error(read_json, path)
    only_our_error(load_ytvis, path)
    only_our_error(load_coco, path)
    only_our_error(load_results, path, GT)
    only_our_error(evaluate, GT, path)


def test_valid_inputs_still_load():
    """The fuzzers' starting points are valid (so the mutations test the checks, not a broken base)."""
    assert len(load_ytvis(gt_dict()).annotations) == 3
    assert len(load_results(results_list(), GT)) == 3
    assert len(load_coco(coco_dict(), check_masks=True).annotations) == 2
    stats = evaluate(GT, results_list())
    assert set(stats) >= {"AP", "AR100"} and all(-1 <= v <= 1 for v in stats.values())
    with pytest.raises(AutoQVISError):
        load_ytvis(json.loads('{"videos": 3}'))
    for h, w in [(H, W), (1, 1), (300, 517), (46340, 46340)]:  # the "zeros" masks of the frame-size fuzzer
        expected = mask_utils.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)["counts"].decode()
        assert _coco_number(h * w) == expected
