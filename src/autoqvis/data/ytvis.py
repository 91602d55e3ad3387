"""YouTubeVIS json: read, validate and write datasets and results lists.

A YouTubeVIS file holds ``videos`` (``id``, ``file_names``, ``height``, ``width``, ``length``),
``annotations`` (one track each: per-frame ``segmentations`` as COCO RLE or null, ``areas``,
``bboxes``, ``category_id``, ``iscrowd``) and ``categories``. A results file is a list of
``{video_id, score, category_id, segmentations}``.

Loading validates everything a later stage would otherwise trip over and raises one
:class:`AutoQVISError` naming the file, the record and the field. Masks are always held as COCO
*compressed* RLE dicts ``{"size": [h, w], "counts": str}``; uncompressed RLE and polygons are
converted on input. Unknown keys (pseudo-label flags ``selected``, ``quality``, ...) are kept in
``extra`` and written back, so a plain YouTubeVIS reader still loads our files and ignores them.
Words: ``pred_iou`` is the quality predictor's per-frame mask IoU (what ``autoqvis predict`` writes in a
results file), ``quality`` is Q = s * pred_iou (eq. 20, pseudo-label files). Results files written before that
split used ``quality`` for the predicted IoU; ``parse_result`` reads it as ``pred_iou``.
Masks and their areas and boxes: :mod:`autoqvis.core.tracks`; the checks shared with the COCO reader, masks
included (the counts strings, which pycocotools never checks, in bulk by :mod:`autoqvis.data.rle_batch`):
:mod:`autoqvis.data.validate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, read_json
from ..core.tracks import RLE, rle_areas, rle_bboxes
from .rle_batch import gc_paused
from .validate import (MAX_FRAME_PIXELS, MAX_FRAME_SIDE, check_areas, check_bboxes, check_segmentations,
                       frame_too_large, is_finite_number, is_int, path_outside_root, per_frame_list)

_VIDEO_KEYS = ("id", "file_names", "height", "width", "length")
_ANN_KEYS = ("id", "video_id", "category_id", "segmentations", "areas", "bboxes", "iscrowd")
_RESULT_KEYS = ("video_id", "score", "category_id", "segmentations")
_PER_FRAME_EXTRAS = ("selected", "quality", "pred_iou")  # pseudo-label keys with one entry per frame


# ------------------------------------------------------------------------------------ records
@dataclass
class Video:
    """One video: ``file_names`` (one per frame, relative to the image root) of ``height x width``."""

    id: int
    file_names: list[str]
    height: int
    width: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.file_names)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "width": self.width, "height": self.height, "length": self.length,
                "file_names": list(self.file_names), **self.extra}


@dataclass
class Annotation:
    """One object track; every list has one entry per frame of its video (None: absent there).

    segmentations: list[RLE | None]; areas: list[float | None] (as stored, the evaluator's area);
    bboxes: list[[x, y, w, h] | None]; extra: unknown keys, e.g. S^t ``selected`` and Q^t ``quality``.
    """

    id: int
    video_id: int
    category_id: int
    segmentations: list[RLE | None]
    areas: list[float | None]
    bboxes: list[list[float] | None]
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "video_id": self.video_id, "category_id": self.category_id,
                "iscrowd": self.iscrowd, "segmentations": self.segmentations, "areas": self.areas,
                "bboxes": self.bboxes, **self.extra}


@dataclass
class YTVISDataset:
    """Videos, their annotation tracks and categories; frames are read from ``image_root`` on demand."""

    videos: list[Video]
    annotations: list[Annotation]
    categories: list[dict[str, Any]]
    image_root: Path | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index_key: tuple | None = None

    def _index(self) -> tuple[dict[int, Video], dict[int, list[Annotation]]]:
        # Rebuilt when a list is replaced or grows/shrinks, so callers may edit the lists freely.
        key = (id(self.videos), len(self.videos), id(self.annotations), len(self.annotations))
        if key != self._index_key:
            self._videos_by_id = {v.id: v for v in self.videos}
            self._anns_by_video: dict[int, list[Annotation]] = {v.id: [] for v in self.videos}
            for a in self.annotations:
                self._anns_by_video.setdefault(a.video_id, []).append(a)
            self._index_key = key
        return self._videos_by_id, self._anns_by_video

    def video(self, video_id: int) -> Video:
        try:
            return self._index()[0][video_id]
        except KeyError:
            raise AutoQVISError(f"{self.name}: no video with id {video_id}") from None

    def annotations_of(self, video_id: int) -> list[Annotation]:
        """The tracks of one video, in file order."""
        return list(self._index()[1].get(video_id, []))

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<YouTubeVIS data>"

    def frame_path(self, video: Video | int, t: int) -> Path:
        video = video if isinstance(video, Video) else self.video(video)
        root = self.image_root if self.image_root is not None else Path(".")
        return root / video.file_names[t]

    def read_frame(self, video: Video | int, t: int) -> np.ndarray:
        """Frame ``t`` of ``video`` as uint8 (H, W, 3) RGB."""
        video = video if isinstance(video, Video) else self.video(video)
        path = self.frame_path(video, t)
        try:
            with Image.open(path) as img:
                frame = np.asarray(img.convert("RGB"))
        except FileNotFoundError:
            raise AutoQVISError(f"{path}: frame {t} of video {video.id} not found "
                                f"(image root {self.image_root})") from None
        except (UnidentifiedImageError, OSError) as e:
            raise AutoQVISError(f"{path}: frame {t} of video {video.id} is not a readable image ({e})") from None
        if frame.shape[:2] != (video.height, video.width):
            raise AutoQVISError(f"{path}: frame {t} of video {video.id} is {frame.shape[1]}x{frame.shape[0]}, "
                                f"the video says {video.width}x{video.height}")
        return frame

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "videos": [v.to_dict() for v in self.videos],
                "annotations": [a.to_dict() for a in self.annotations], "categories": self.categories}


# ------------------------------------------------------------------------------------ record parsing
def _check_file_name(name: Any, loc: str) -> str:
    """A frame path must stay inside the image root: relative, no ``..``, no drive."""
    if not isinstance(name, str) or not name:
        raise AutoQVISError(f"{loc}: must be a non-empty string, got {name!r}")
    problem = path_outside_root(name)
    if problem == "absolute":
        raise AutoQVISError(f"{loc}: {name!r} is an absolute path; file_names must be relative to the image root")
    if problem == "escapes":
        raise AutoQVISError(f"{loc}: {name!r} escapes the image root ('..'); file_names must stay inside it")
    return name


def _parse_video(rec: Any, name: str, k: int) -> Video:
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{name}: videos[{k}]: must be an object, got {type(rec).__name__}")
    if not is_int(rec.get("id")):
        raise AutoQVISError(f"{name}: videos[{k}]: field 'id' must be an integer, got {rec.get('id')!r}")
    loc = f"{name}: video {rec['id']}"
    for key in ("height", "width"):
        if not is_int(rec.get(key)) or rec[key] <= 0:
            raise AutoQVISError(f"{loc}: field '{key}' must be a positive integer, got {rec.get(key)!r}")
    if frame_too_large(rec["height"], rec["width"]):
        raise AutoQVISError(f"{loc}: fields 'height' x 'width' = {rec['height']} x {rec['width']}: frames are limited "
                            f"to {MAX_FRAME_SIDE} pixels a side and {MAX_FRAME_PIXELS} in all (pycocotools)")
    names = rec.get("file_names")
    if not isinstance(names, list) or not names:
        raise AutoQVISError(f"{loc}: field 'file_names' must be a non-empty list of frame paths, got {names!r:.80}")
    names = [_check_file_name(n, f"{loc}: file_names[{t}]") for t, n in enumerate(names)]
    if "length" in rec and rec["length"] != len(names):
        raise AutoQVISError(f"{loc}: field 'length' is {rec['length']!r} but file_names has {len(names)} entries")
    extra = {k: v for k, v in rec.items() if k not in _VIDEO_KEYS}
    return Video(int(rec["id"]), names, int(rec["height"]), int(rec["width"]), extra)


def _check_per_frame_extras(rec: dict, length: int, loc: str) -> None:
    for key in _PER_FRAME_EXTRAS:
        for t, v in enumerate(per_frame_list(rec, key, length, loc) or []):
            if v is not None and not is_finite_number(v):
                raise AutoQVISError(f"{loc}: {key}[{t}] must be a finite number or null, got {v!r}")


def _parse_annotation(rec: Any, name: str, k: int, videos: dict[int, Video], categories: set[int]) -> Annotation:
    """Everything but the masks' content (checked in bulk afterwards)."""
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{name}: annotations[{k}]: must be an object, got {type(rec).__name__}")
    ann_id = rec.get("id")
    if not is_int(ann_id):
        raise AutoQVISError(f"{name}: annotations[{k}]: field 'id' must be an integer, got {ann_id!r}")
    loc = f"{name}: annotation {ann_id}"
    if ann_id <= 0:
        raise AutoQVISError(f"{loc}: annotation ids must be >= 1 (the YouTubeVIS evaluator takes id 0 for "
                            "'unmatched' and would never match this object)")
    vid = rec.get("video_id")
    if not is_int(vid) or vid not in videos:
        raise AutoQVISError(f"{loc}: field 'video_id' {vid!r} is not the id of a video in this file")
    video = videos[vid]
    loc = f"{loc} (video {vid})"
    cat = rec.get("category_id")
    if not is_int(cat):
        raise AutoQVISError(f"{loc}: field 'category_id' must be an integer, got {cat!r}")
    if categories and cat not in categories:
        raise AutoQVISError(f"{loc}: category_id {cat} is not among the file's categories {sorted(categories)}")
    iscrowd = rec.get("iscrowd", 0)
    if not (is_int(iscrowd) or isinstance(iscrowd, bool)) or iscrowd not in (0, 1):
        raise AutoQVISError(f"{loc}: field 'iscrowd' must be 0 or 1, got {iscrowd!r}")
    segs = per_frame_list(rec, "segmentations", video.length, loc)
    if segs is None:
        raise AutoQVISError(f"{loc}: field 'segmentations' is missing (one RLE or null per frame)")
    areas = per_frame_list(rec, "areas", video.length, loc)
    bboxes = per_frame_list(rec, "bboxes", video.length, loc)
    _check_per_frame_extras(rec, video.length, loc)
    return Annotation(int(ann_id), int(vid), int(cat), list(segs),
                      check_areas(areas, loc) if areas is not None else None,  # type: ignore[arg-type]
                      check_bboxes(bboxes, video.width, video.height, loc) if bboxes is not None else None,  # type: ignore[arg-type]
                      int(iscrowd), {key: v for key, v in rec.items() if key not in _ANN_KEYS})


def _parse_categories(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise AutoQVISError(f"{name}: field 'categories' must be a list, got {type(value).__name__}")
    seen: set[int] = set()
    for k, cat in enumerate(value):
        if not isinstance(cat, dict) or not is_int(cat.get("id")):
            raise AutoQVISError(f"{name}: categories[{k}]: must be an object with an integer 'id'")
        if cat["id"] in seen:
            raise AutoQVISError(f"{name}: categories[{k}]: duplicate category id {cat['id']}")
        seen.add(cat["id"])
    return value


@gc_paused
def load_ytvis(path_or_dict: str | os.PathLike | dict, image_root: str | os.PathLike | None = None,
               workers: int | None = None, check_masks: bool = True) -> YTVISDataset:
    """Read and validate a YouTubeVIS json (a path, or the already-parsed dict, which is not modified).

    image_root: folder the ``file_names`` are relative to; default ``<json dir>/JPEGImages`` if it
    exists, else ``<json dir>`` (for a dict: the current folder). workers: processes for the mask
    checks of large files (default up to 2). check_masks=False skips the mask validator (structure, size, runs):
    only for files autoqvis wrote itself (a self-training run reading back its own pseudo-labels), whose masks are
    pycocotools' compressed RLE of the right size; every other field is still checked.
    Missing ``areas``/``bboxes`` are computed from the masks; stored ones are kept as they are.
    """
    if isinstance(path_or_dict, dict):
        raw, path, name = path_or_dict, None, "<YouTubeVIS dict>"
        default_root = Path(".")
    else:
        path = Path(path_or_dict)
        raw, name = read_json(path, "YouTubeVIS json"), str(path)
        default_root = path.parent / "JPEGImages" if (path.parent / "JPEGImages").is_dir() else path.parent
    if not isinstance(raw, dict):
        raise AutoQVISError(f"{name}: a YouTubeVIS file must be a json object, got {type(raw).__name__}")
    if not isinstance(raw.get("videos"), list):
        raise AutoQVISError(f"{name}: field 'videos' is missing or not a list (not a YouTubeVIS file?)")
    categories = _parse_categories(raw.get("categories"), name)
    videos: dict[int, Video] = {}
    for k, rec in enumerate(raw["videos"]):
        video = _parse_video(rec, name, k)
        if video.id in videos:
            raise AutoQVISError(f"{name}: video {video.id}: duplicate video id (videos[{k}])")
        videos[video.id] = video
    anns_raw = raw.get("annotations") or []
    if not isinstance(anns_raw, list):
        raise AutoQVISError(f"{name}: field 'annotations' must be a list, got {type(anns_raw).__name__}")
    cat_ids = {c["id"] for c in categories}
    annotations: list[Annotation] = []
    seen: set[int] = set()
    for k, rec in enumerate(anns_raw):
        ann = _parse_annotation(rec, name, k, videos, cat_ids)
        if ann.id in seen:
            raise AutoQVISError(f"{name}: annotation {ann.id}: duplicate annotation id (annotations[{k}])")
        seen.add(ann.id)
        annotations.append(ann)
    if check_masks:
        check_segmentations([a.segmentations for a in annotations],
                            [[videos[a.video_id].height, videos[a.video_id].width] for a in annotations],
                            [f"{name}: annotation {a.id} (video {a.video_id})" for a in annotations], workers)
    for ann in annotations:
        if ann.areas is None:
            ann.areas = rle_areas(ann.segmentations)
        if ann.bboxes is None:
            ann.bboxes = rle_bboxes(ann.segmentations)
    extra = {k: v for k, v in raw.items() if k not in ("videos", "annotations", "categories")}
    root = Path(image_root) if image_root is not None else default_root
    return YTVISDataset(list(videos.values()), annotations, categories, root, path, extra)


def save_ytvis(dataset: YTVISDataset, path: str | os.PathLike) -> None:
    """Write ``dataset`` as YouTubeVIS json (atomic; extra keys included)."""
    atomic_write_json(path, dataset.to_dict())


# ------------------------------------------------------------------------------------ results
@gc_paused
def load_results(path_or_list: str | os.PathLike | list, gt: YTVISDataset,
                 workers: int | None = None, check_masks: bool = True) -> list[dict[str, Any]]:
    """Read and validate a results list against the videos of ``gt``.

    Returns ``[{"video_id", "score", "category_id", "segmentations": [RLE | None per frame], ...extra}]``
    in file order (new dicts; a given list is not modified). Rejected, though the official loader
    accepts them by accident: a segmentation list of another length than the video, masks of another
    size than the video, malformed RLE, a score outside [0, 1]. A ``category_id`` missing from the GT
    categories is kept: the evaluator ignores it, like the official one. An empty list is valid.
    check_masks=False leaves the per-frame masks unchecked (the evaluator checks them itself, part
    by part, in its worker processes); workers: processes for the mask checks (default up to 2).
    """
    if isinstance(path_or_list, list):
        raw, name = path_or_list, "<results list>"
    else:
        raw, name = read_json(Path(path_or_list), "results json"), str(path_or_list)
    if not isinstance(raw, list):
        raise AutoQVISError(f"{name}: a results file must be a json list of predictions, got {type(raw).__name__}")
    videos = {v.id: v for v in gt.videos}
    out = [parse_result(rec, name, k, videos) for k, rec in enumerate(raw)]
    if check_masks:
        check_segmentations([r["segmentations"] for r in out],
                             [[videos[r["video_id"]].height, videos[r["video_id"]].width] for r in out],
                             _LazyLocs(name, out), workers)
    return out


class _LazyLocs:
    """``locs[k]`` for results, built only when an error is reported (10^5 f-strings add up)."""

    def __init__(self, name: str, results: list[dict[str, Any]]):
        self.name, self.results = name, results

    def __getitem__(self, k: int) -> str:
        return result_location(self.name, k, self.results[k]["video_id"])


def result_location(name: str, k: int, video_id: int) -> str:
    """How messages name result k of a results file or list."""
    return f"{name}: result {k} (video {video_id})"


def parse_result(rec: Any, name: str, k: int, videos: dict[int, Video]) -> dict[str, Any]:
    """Top-level fields of one result; its masks are checked in bulk afterwards. An old file's ``quality`` (the
    predicted IoU then) comes back as ``pred_iou``."""
    if type(rec) is not dict:
        raise AutoQVISError(f"{name}: result {k}: must be an object, got {type(rec).__name__}")
    vid = rec.get("video_id")
    video = videos.get(vid) if is_int(vid) else None
    if video is None:
        raise AutoQVISError(f"{name}: result {k}: video_id {vid!r} is not a video of the ground truth")
    score = rec.get("score")
    if not (is_finite_number(score) and 0.0 <= score <= 1.0):
        raise AutoQVISError(f"{name}: result {k} (video {vid}): field 'score' must be a finite number in [0, 1], "
                            f"got {score!r}")
    cat = rec.get("category_id")
    if not is_int(cat):
        raise AutoQVISError(f"{name}: result {k} (video {vid}): field 'category_id' must be an integer, got {cat!r}")
    segs = rec.get("segmentations")
    if type(segs) is not list or len(segs) != video.length:
        what = f"has {len(segs)} entries" if isinstance(segs, list) else "is missing or not a list"
        raise AutoQVISError(f"{name}: result {k} (video {vid}): segmentations {what}, "
                            f"the video has {video.length} frames (one RLE or null per frame)")
    if len(rec) > 4:
        for key in ("pred_iou", "quality"):
            values = per_frame_list(rec, key, video.length, f"{name}: result {k} (video {vid})")
            for t, q in enumerate(values or []):
                if q is not None and not (is_finite_number(q) and 0.0 <= q <= 1.0):
                    raise AutoQVISError(f"{name}: result {k} (video {vid}): {key}[{t}] must be a finite number "
                                        f"in [0, 1] or null, got {q!r}")
    out = {"video_id": int(vid), "score": float(score), "category_id": int(cat), "segmentations": list(segs)}
    if len(rec) > 4:
        out.update((key, v) for key, v in rec.items() if key not in _RESULT_KEYS)
        if "quality" in out and "pred_iou" not in out:  # written before pred_iou: "quality" was the predicted IoU
            out["pred_iou"] = out.pop("quality")
    return out


def save_results(results: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write a results list as json (atomic)."""
    atomic_write_json(path, list(results))
