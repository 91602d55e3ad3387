"""COCO still-image annotations: round trips, lazy pixels and masks, one clear error per bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from autoqvis.data.coco import CocoDataset, decode_segmentation, load_coco, mask_to_annotation, save_coco
from autoqvis.core.errors import AutoQVISError

# pycocotools 2.0.x under numpy 2 warns on every decode; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

H, W = 12, 16


def _masks() -> np.ndarray:
    """Three bool (H, W) masks: a rectangle, an L shape and a crowd blob."""
    m = np.zeros((3, H, W), dtype=bool)
    m[0, 2:6, 3:9] = True
    m[1, 7:11, 1:4] = True
    m[1, 9:11, 4:10] = True
    m[2, 0:3, 12:16] = True
    return m


def _coco_dict() -> dict:
    """Two images; compressed RLE, uncompressed RLE (crowd), a polygon, unknown keys everywhere."""
    m = _masks()
    compressed = mask_to_annotation(m[0], 1, 1, score=0.9)
    flat = m[2].T.reshape(-1).astype(np.int64)  # uncompressed RLE: runs of the column-major pixels, 0s first
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    runs = np.diff(np.r_[0, change]).tolist()
    return {
        "info": {"description": "test"},
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W, "license": 3},
            {"id": 2, "file_name": "sub/b.png", "height": H, "width": W},
        ],
        "annotations": [
            {**{k: getattr(compressed, k) for k in ("id", "image_id", "category_id", "segmentation", "area", "bbox",
                                                    "iscrowd")}, "score": 0.9},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1, 7, 4, 7, 4, 11, 1, 11]],
             "area": 12.0, "bbox": [1, 7, 3, 4], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": runs},
             "area": 12.0, "bbox": [12, 0, 4, 3], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "fg"}],
    }


def _write_images(root) -> None:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(root / "sub" / "b.png")  # grey -> RGB


def test_round_trip_keeps_records_and_unknown_keys(tmp_path):
    data = _coco_dict()
    (tmp_path / "in.json").write_text(json.dumps(data))
    ds = load_coco(tmp_path / "in.json")
    save_coco(ds, tmp_path / "out.json")
    again = json.loads((tmp_path / "out.json").read_text())
    assert again["info"] == data["info"]
    assert again["images"] == data["images"]
    assert again["categories"] == data["categories"]
    assert again["annotations"] == data["annotations"]
    assert again["annotations"][0]["score"] == 0.9
    assert load_coco(tmp_path / "out.json").to_dict() == ds.to_dict()


def test_masks_decode_every_segmentation_kind():
    ds = load_coco(_coco_dict())
    m = _masks()
    got = ds.masks(1)  # crowd left out by default
    assert got.shape == (2, H, W) and got.dtype == bool
    np.testing.assert_array_equal(got[0], m[0])
    # the polygon covers the rectangle x in [1, 4], y in [7, 11] (pycocotools rasterisation)
    assert got[1].sum() == 12 and got[1][7:11, 1:4].all()
    with_crowd = ds.masks(1, include_crowd=True)
    assert with_crowd.shape == (3, H, W)
    np.testing.assert_array_equal(with_crowd[2], m[2])
    assert ds.masks(2).shape == (0, H, W)
    assert [a.id for a in ds.annotations_of(1, include_crowd=False)] == [1, 2]


def test_mask_to_annotation_area_and_bbox():
    m = _masks()[1]
    ann = mask_to_annotation(m, 7, 1)
    assert ann.area == float(m.sum()) == 24.0
    assert ann.bbox == [1.0, 7.0, 9.0, 4.0]
    np.testing.assert_array_equal(decode_segmentation(ann.segmentation, H, W), m)
    assert isinstance(ann.segmentation["counts"], str)


def test_missing_area_and_bbox_are_filled():
    data = _coco_dict()
    for ann in data["annotations"]:
        del ann["area"], ann["bbox"]
    ds = load_coco(data)
    assert [a.area for a in ds.annotations] == [24.0, 12.0, 12.0]
    assert ds.annotations[0].bbox == [3.0, 2.0, 6.0, 4.0]


def test_images_are_read_lazily_from_the_default_root(tmp_path):
    _write_images(tmp_path / "images")
    (tmp_path / "c.json").write_text(json.dumps(_coco_dict()))
    ds = load_coco(tmp_path / "c.json")
    assert ds.image_root == tmp_path / "images"
    a = ds.read_image(1)
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / "images" / "a.png")))
    b = ds.read_image(2)
    assert b.shape == (H, W, 3) and (b[..., 0] == b[..., 2]).all()


def test_image_size_mismatch_and_missing_file(tmp_path):
    _write_images(tmp_path)
    data = _coco_dict()
    data["images"][1]["height"] = H + 1
    data["annotations"] = data["annotations"][:1]
    (tmp_path / "c.json").write_text(json.dumps(data))
    ds = load_coco(tmp_path / "c.json")
    assert ds.image_root == tmp_path
    with pytest.raises(AutoQVISError, match=r"b\.png: image is 12x16 .* record says 13x16"):
        ds.read_image(2)
    (tmp_path / "a.png").unlink()
    with pytest.raises(AutoQVISError, match=r"a\.png: image file not found"):
        ds.read_image(1)
    with pytest.raises(AutoQVISError, match="no image with id 9"):
        ds.read_image(9)


def _broken(edit) -> dict:
    data = copy.deepcopy(_coco_dict())
    edit(data)
    return data


BAD_INPUTS = [
    ("annotation for a missing image", lambda d: d["annotations"][0].update(image_id=5),
     r"c\.json: annotation 1: image_id 5 names no image"),
    ("duplicate image id", lambda d: d["images"][1].update(id=1), r"duplicate image id 1"),
    ("duplicate annotation id", lambda d: d["annotations"][1].update(id=1), r"duplicate annotation id 1"),
    ("file_name escaping the root", lambda d: d["images"][0].update(file_name="../../etc/x.png"),
     r"image 1: file_name '\.\./\.\./etc/x\.png' must be a relative path inside"),
    ("absolute file_name", lambda d: d["images"][0].update(file_name="/tmp/x.png"), r"image 1: file_name"),
    ("bad RLE size", lambda d: d["annotations"][0]["segmentation"].update(size=[H, W + 1]),
     r"annotation 1 \(image 1\): segmentation: RLE size is \[12, 17\] but the image is 12x16"),
    ("uncompressed counts not covering the image", lambda d: d["annotations"][2]["segmentation"].update(counts=[3, 4]),
     r"annotation 3 \(image 1\): segmentation: malformed RLE: uncompressed counts sum to 7 but the frame has 192"),
    ("malformed compressed counts", lambda d: d["annotations"][0]["segmentation"].update(counts="52207~~"),
     r"annotation 1 \(image 1\): segmentation\.counts"),
    ("compressed counts too short", lambda d: d["annotations"][0]["segmentation"].update(counts="52"),
     r"annotation 1 \(image 1\): segmentation\.counts runs cover 7 pixels"),
    ("polygon with two points", lambda d: d["annotations"][1].update(segmentation=[[1, 2, 3, 4]]),
     r"annotation 2 \(image 1\): segmentation: polygon 0"),
    ("segmentation of a wrong type", lambda d: d["annotations"][1].update(segmentation="rle"),
     r"annotation 2 \(image 1\): segmentation must be"),
    ("unknown category", lambda d: d["annotations"][1].update(category_id=4),
     r"annotation 2 \(image 1\): category_id 4"),
    ("bad iscrowd", lambda d: d["annotations"][1].update(iscrowd=2), r"annotation 2 \(image 1\): iscrowd"),
    ("negative area", lambda d: d["annotations"][1].update(area=-1), r"annotation 2 \(image 1\): area"),
    ("bad bbox", lambda d: d["annotations"][1].update(bbox=[0, 0, 1]), r"annotation 2 \(image 1\): bbox"),
    ("missing height", lambda d: d["images"][0].pop("height"), r"images\[0\]: missing field 'height'"),
    ("zero width", lambda d: d["images"][0].update(width=0), r"image 1: width must be a positive integer"),
    ("string id", lambda d: d["annotations"][0].update(id="7"), r"annotations\[0\]: id must be an integer"),
    ("no images list", lambda d: d.pop("images"), r"c\.json: missing or non-list field 'images'"),
]


@pytest.mark.parametrize("what,edit,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_clear_error(tmp_path, what, edit, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_broken(edit)))
    with pytest.raises(AutoQVISError, match=message):
        load_coco(path)


def test_not_json_and_wrong_top_level(tmp_path):
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(AutoQVISError, match=r"c\.json: a COCO file must be a json object"):
        load_coco(tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(AutoQVISError, match=r"c\.json: not valid JSON"):
        load_coco(tmp_path / "c.json")


def test_in_memory_dataset_saves_atomically(tmp_path):
    ds = load_coco(_coco_dict())
    built = CocoDataset(ds.images, ds.annotations[:1], ds.categories, tmp_path)
    save_coco(built, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind
    assert len(load_coco(tmp_path / "x.json").annotations) == 1
