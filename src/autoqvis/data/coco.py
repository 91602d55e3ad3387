"""COCO still-image annotations: the format of CutLER's ImageNet pseudo-labels.

A file holds ``images`` (``id``, ``file_name``, ``height``, ``width``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``segmentation``, ``area``, ``bbox``, ``iscrowd``) and ``categories``.
A segmentation is a compressed RLE (``counts`` a string), an uncompressed RLE (``counts`` a list of
run lengths) or a list of polygons. Loading checks the structure of every record (cheap); masks and
pixels are decoded only when asked for, and a mask that does not decode becomes an AutoQVISError
naming the annotation. Unknown keys are kept, so a file survives a load/save round trip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, read_json
from ..core.tracks import encode_mask
from .rle_batch import counts_problems, scan_tracks
from .validate import (MAX_FRAME_PIXELS, MAX_FRAME_SIDE, check_polygons, check_rle_dict, frame_too_large,
                       is_finite_number, is_int, path_outside_root)

_IMAGE_KEYS = ("id", "file_name", "height", "width")
_ANN_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")


@dataclass(slots=True)
class CocoImage:
    """One still image; ``extra`` keeps the keys this module does not interpret."""

    id: int
    file_name: str
    height: int
    width: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CocoAnnotation:
    """One instance. ``segmentation`` is kept as in the file (RLE dict or polygon list)."""

    id: int
    image_id: int
    category_id: int
    segmentation: Any
    area: float
    bbox: list[float]
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class CocoDataset:
    """Validated COCO annotations with lazy access to pixels and masks.

    Args:
        images, annotations, categories: the records (``categories`` as plain dicts).
        image_root: folder the ``file_name`` of every image is relative to.
        path: the json this came from (for messages); None when built in memory.
        extra: top-level keys other than images/annotations/categories (``info``, ``licenses``...).
    """

    def __init__(
        self,
        images: list[CocoImage],
        annotations: list[CocoAnnotation],
        categories: list[dict[str, Any]],
        image_root: str | os.PathLike,
        path: str | os.PathLike | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.images = images
        self.annotations = annotations
        self.categories = categories
        self.image_root = Path(image_root)
        self.path = Path(path) if path is not None else None
        self.extra = extra or {}
        self._images_by_id = {im.id: im for im in images}
        self._anns_by_image: dict[int, list[CocoAnnotation]] = {im.id: [] for im in images}
        for ann in annotations:
            if ann.image_id not in self._anns_by_image:
                raise AutoQVISError(f"{self._name}: annotation {ann.id}: image_id {ann.image_id} names no image")
            self._anns_by_image[ann.image_id].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "coco dataset"

    def image(self, image_id: int) -> CocoImage:
        try:
            return self._images_by_id[image_id]
        except KeyError:
            raise AutoQVISError(f"{self._name}: no image with id {image_id}") from None

    def annotations_of(self, image_id: int, include_crowd: bool = True) -> list[CocoAnnotation]:
        """The annotations of one image, in file order."""
        self.image(image_id)
        return [a for a in self._anns_by_image[image_id] if include_crowd or not a.iscrowd]

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.image(image_id).file_name

    def read_image(self, image_id: int) -> np.ndarray:
        """The pixels of one image: uint8 (H, W, 3) RGB, EXIF orientation applied, size checked."""
        image = self.image(image_id)
        return read_rgb(self.image_path(image_id), expected_hw=(image.height, image.width))

    def mask(self, ann: CocoAnnotation) -> np.ndarray:
        """Decode one annotation: bool (H, W) at its image's size."""
        image = self.image(ann.image_id)
        try:
            return decode_segmentation(ann.segmentation, image.height, image.width)
        except (ValueError, TypeError) as e:
            raise AutoQVISError(
                f"{self._name}: annotation {ann.id} (image {ann.image_id}): segmentation does not decode ({e})"
            ) from None

    def masks(self, image_id: int, include_crowd: bool = False) -> np.ndarray:
        """All instance masks of one image: bool (N, H, W), file order; crowd regions left out by default."""
        image = self.image(image_id)
        anns = self.annotations_of(image_id, include_crowd=include_crowd)
        if not anns:
            return np.zeros((0, image.height, image.width), dtype=bool)
        return np.stack([self.mask(a) for a in anns])

    def check_masks(self) -> None:
        """Decode every segmentation once (slow on large sets): any mask that does not decode fails here."""
        for ann in self.annotations:
            self.mask(ann)

    def to_dict(self) -> dict[str, Any]:
        """The json object (records in order, unknown keys kept)."""
        images = [{"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width, **im.extra}
                  for im in self.images]
        annotations = [
            {"id": a.id, "image_id": a.image_id, "category_id": a.category_id, "segmentation": a.segmentation,
             "area": a.area, "bbox": a.bbox, "iscrowd": a.iscrowd, **a.extra}
            for a in self.annotations
        ]
        return {**self.extra, "images": images, "annotations": annotations, "categories": self.categories}


# ------------------------------------------------------------------------------------------ masks
def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (compressed / uncompressed RLE or polygons) -> bool (height, width)."""
    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle["counts"], str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        return mask_utils.decode(rle).astype(bool)
    rles = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def mask_to_annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int = 1,
                       **extra: Any) -> CocoAnnotation:
    """A bool (H, W) mask -> an annotation with compressed RLE, area and xywh bbox from pycocotools."""
    segmentation = encode_mask(mask)
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    area = float(mask_utils.area(rle))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    return CocoAnnotation(ann_id, image_id, category_id, segmentation, area, bbox, 0, dict(extra))


def read_rgb(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB; optionally check its size against the annotation."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise AutoQVISError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise AutoQVISError(f"{path}: not a readable image ({e})") from None
    if expected_hw is not None and rgb.shape[:2] != tuple(expected_hw):
        raise AutoQVISError(
            f"{path}: image is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but its record says "
            f"{expected_hw[0]}x{expected_hw[1]}"
        )
    return rgb


# ------------------------------------------------------------------------------------- validation
def _check_segmentation(seg: Any, hw: tuple[int, int], where: str) -> None:
    """Structure and size of an annotation's RLE dict or polygon list (compressed counts: in bulk, later)."""
    if isinstance(seg, dict):
        if isinstance(seg.get("counts"), bytes):  # json gives str; a dict handed in must too (kept as given)
            raise AutoQVISError(f"{where}: segmentation: RLE 'counts' must be a string or a list of integers, got bytes")
        check_rle_dict(seg, *hw, f"{where}: segmentation", of="image")
    elif isinstance(seg, list):
        if not seg:
            raise AutoQVISError(f"{where}: segmentation is an empty polygon list")
        check_polygons(seg, *hw, f"{where}: segmentation")
    else:
        raise AutoQVISError(f"{where}: segmentation must be an RLE object or a polygon list")


def _parse_image(rec: Any, i: int, name: str) -> CocoImage:
    where = f"{name}: images[{i}]"
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{where}: expected an object, got {type(rec).__name__}")
    for key in _IMAGE_KEYS:
        if key not in rec:
            raise AutoQVISError(f"{where}: missing field {key!r}")
    if not is_int(rec["id"]):
        raise AutoQVISError(f"{where}: id must be an integer, got {rec['id']!r}")
    where = f"{name}: image {rec['id']}"
    if not isinstance(rec["file_name"], str) or not rec["file_name"] or path_outside_root(rec["file_name"]):
        raise AutoQVISError(f"{where}: file_name {rec['file_name']!r} must be a relative path inside the image root")
    for key in ("height", "width"):
        if not is_int(rec[key]) or rec[key] <= 0:
            raise AutoQVISError(f"{where}: {key} must be a positive integer, got {rec[key]!r}")
    if frame_too_large(rec["height"], rec["width"]):
        raise AutoQVISError(f"{where}: height x width = {rec['height']} x {rec['width']}: images are limited to "
                            f"{MAX_FRAME_SIDE} pixels a side and {MAX_FRAME_PIXELS} in all (pycocotools)")
    extra = {k: v for k, v in rec.items() if k not in _IMAGE_KEYS}
    return CocoImage(rec["id"], rec["file_name"], rec["height"], rec["width"], extra)


def _parse_annotation(rec: Any, i: int, name: str, images: dict[int, CocoImage],
                      category_ids: set[int]) -> CocoAnnotation:
    where = f"{name}: annotations[{i}]"
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{where}: expected an object, got {type(rec).__name__}")
    for key in ("id", "image_id", "segmentation"):
        if key not in rec:
            raise AutoQVISError(f"{where}: missing field {key!r}")
    if not is_int(rec["id"]):
        raise AutoQVISError(f"{where}: id must be an integer, got {rec['id']!r}")
    where = f"{name}: annotation {rec['id']}"
    image = images.get(rec["image_id"]) if is_int(rec["image_id"]) else None
    if image is None:
        raise AutoQVISError(f"{where}: image_id {rec['image_id']!r} names no image in the file")
    where = f"{where} (image {image.id})"
    category_id = rec.get("category_id", 1)
    if not is_int(category_id) or (category_ids and category_id not in category_ids):
        raise AutoQVISError(f"{where}: category_id {category_id!r} is not one of the file's categories")
    seg = rec["segmentation"]
    _check_segmentation(seg, (image.height, image.width), where)
    iscrowd = rec.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, bool):
        raise AutoQVISError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}")
    area, bbox = rec.get("area"), rec.get("bbox")  # None: filled from the mask once the RLE is checked
    if area is not None and (not is_finite_number(area) or area < 0):
        raise AutoQVISError(f"{where}: area must be a non-negative number, got {area!r}")
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)
                                 and bbox[2] >= 0 and bbox[3] >= 0):
        raise AutoQVISError(f"{where}: bbox must be [x, y, width, height] with width, height >= 0, got {bbox!r}")
    extra = {k: v for k, v in rec.items() if k not in _ANN_KEYS}
    return CocoAnnotation(rec["id"], image.id, category_id, seg, area, bbox, iscrowd, extra)


def _area_and_bbox(seg: Any, height: int, width: int, where: str) -> tuple[float, list[float]]:
    """Fill a missing area / bbox from the segmentation (pycocotools, no decode of the pixels)."""
    try:
        if isinstance(seg, dict):
            rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else \
                {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        else:
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return float(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]
    except (ValueError, TypeError) as e:
        raise AutoQVISError(f"{where}: segmentation does not decode ({e})") from None


def _check_compressed_counts(annotations: list[CocoAnnotation], images: dict[int, CocoImage], name: str) -> None:
    """Every compressed RLE string decodes to runs that cover its image exactly (vectorised, on two
    processes for large files; pycocotools' decoder does not validate the string)."""
    items = [a for a in annotations if isinstance(a.segmentation, dict) and isinstance(a.segmentation["counts"], str)]
    sizes = [[images[a.image_id].height, images[a.image_id].width] for a in items]
    report = scan_tracks([[a.segmentation] for a in items], sizes)
    bad = [(items[report.problem[0]], report.problem[2])] if report.problem is not None else []
    odd = report.noncanonical  # RLE dicts with extra keys: checked one list at a time
    problems = counts_problems([items[i].segmentation["counts"] for i in odd], [sizes[i][0] * sizes[i][1] for i in odd])
    bad += [(items[i], p) for i, p in zip(odd, problems) if p is not None]
    if bad:
        ann, problem = bad[0]
        raise AutoQVISError(f"{name}: annotation {ann.id} (image {ann.image_id}): segmentation.{problem}")


def _check_unique(ids: list[int], what: str, name: str) -> None:
    seen: set[int] = set()
    for x in ids:
        if x in seen:
            raise AutoQVISError(f"{name}: duplicate {what} id {x}")
        seen.add(x)


def _parse_categories(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise AutoQVISError(f"{name}: categories must be a list")
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not is_int(c.get("id")):
            raise AutoQVISError(f"{name}: categories[{i}]: must be an object with an integer id")
    _check_unique([c["id"] for c in cats], "category", name)
    return cats


def default_image_root(json_path: Path) -> Path:
    """``<json dir>/images`` when that folder exists, else the json's folder."""
    images = json_path.parent / "images"
    return images if images.is_dir() else json_path.parent


# ------------------------------------------------------------------------------------- load / save
def load_coco(path_or_dict: str | os.PathLike | dict[str, Any], image_root: str | os.PathLike | None = None,
              check_masks: bool = False) -> CocoDataset:
    """Read and validate a COCO json (or an already parsed dict).

    Args:
        path_or_dict: the json file, or its parsed content.
        image_root: folder of the images; default ``<json dir>/images`` if it exists, else ``<json dir>``
            (the current folder for a dict).
        check_masks: also decode every segmentation now (slow for ImageNet-sized files).
    Returns:
        CocoDataset. Raises AutoQVISError naming the file, the record and the field on bad input.
    """
    if isinstance(path_or_dict, dict):
        data, path, name = path_or_dict, None, "coco dataset"
        root = Path(image_root) if image_root is not None else Path(".")
    else:
        path = Path(path_or_dict)
        data, name = read_json(path, "COCO annotation file"), str(path)
        root = Path(image_root) if image_root is not None else default_image_root(path)
    if not isinstance(data, dict):
        raise AutoQVISError(f"{name}: a COCO file must be a json object at the top level")
    if not isinstance(data.get("images"), list):
        raise AutoQVISError(f"{name}: missing or non-list field 'images'")
    ann_recs = data.get("annotations", [])
    if not isinstance(ann_recs, list):
        raise AutoQVISError(f"{name}: field 'annotations' must be a list")
    categories = _parse_categories(data, name)
    images = [_parse_image(rec, i, name) for i, rec in enumerate(data["images"])]
    _check_unique([im.id for im in images], "image", name)
    by_id = {im.id: im for im in images}
    cat_ids = {c["id"] for c in categories}
    annotations = [_parse_annotation(rec, i, name, by_id, cat_ids) for i, rec in enumerate(ann_recs)]
    _check_unique([a.id for a in annotations], "annotation", name)
    _check_compressed_counts(annotations, by_id, name)
    for ann in annotations:
        if ann.area is None or ann.bbox is None:
            image = by_id[ann.image_id]
            area, bbox = _area_and_bbox(ann.segmentation, image.height, image.width,
                                        f"{name}: annotation {ann.id} (image {ann.image_id})")
            ann.area = area if ann.area is None else ann.area
            ann.bbox = bbox if ann.bbox is None else ann.bbox
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    dataset = CocoDataset(images, annotations, categories, root, path, extra)
    if check_masks:
        dataset.check_masks()
    return dataset


def save_coco(dataset: CocoDataset, path: str | os.PathLike) -> None:
    """Write the dataset as COCO json, atomically (a crash never leaves a half-written file)."""
    atomic_write_json(path, dataset.to_dict())


__all__ = [
    "CocoImage",
    "CocoAnnotation",
    "CocoDataset",
    "load_coco",
    "save_coco",
    "decode_segmentation",
    "mask_to_annotation",
    "read_rgb",
    "default_image_root",
]
