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
RLE encoding, decoding, areas and boxes go through pycocotools; the counts strings, which
pycocotools never checks, are validated in bulk by :mod:`autoqvis.data.rle_batch`.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, is_finite_number, read_json
from .rle_batch import counts_problems, counts_syntax_problem, gc_paused, is_canonical, scan_tracks

RLE = dict  # {"size": [h, w], "counts": str}, COCO compressed RLE (column-major runs, 0s first)

_VIDEO_KEYS = ("id", "file_names", "height", "width", "length")
_ANN_KEYS = ("id", "video_id", "category_id", "segmentations", "areas", "bboxes", "iscrowd")
_RESULT_KEYS = ("video_id", "score", "category_id", "segmentations")
_PER_FRAME_EXTRAS = ("selected", "quality", "pred_iou")  # pseudo-label keys with one entry per frame
_BBOX_SLACK = 1.0  # pixels a stored bbox may overhang the frame (rounding in third-party tools)
# pycocotools holds RLE runs in 32 bits and rasterises polygons on a 5x int grid: larger frames overflow it
MAX_FRAME_SIDE, MAX_FRAME_PIXELS = 2**16, 2**31 - 1


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
        from PIL import Image, UnidentifiedImageError

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


# ------------------------------------------------------------------------------------ RLE helpers
def encode_mask(mask: np.ndarray) -> RLE:
    """bool (H, W) -> COCO compressed RLE with a ``str`` counts (json-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """bool (N, H, W) -> N compressed RLEs (one pycocotools call)."""
    masks = np.asarray(masks, dtype=np.uint8)
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def decode_rle(rle: RLE) -> np.ndarray:
    """Compressed RLE -> bool (H, W)."""
    with warnings.catch_warnings():  # pycocotools 2.0.x + numpy 2 warn about a copy keyword, harmlessly
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return mask_utils.decode(rle).astype(bool)
        except ValueError as e:  # pycocotools refuses runs that overrun the frame
            raise AutoQVISError(f"malformed RLE of size {rle.get('size')}: {e}") from None


_AREA_CHUNK = 255  # pycocotools 2.0.11 + numpy 2: area() of more than 255 RLEs raises OverflowError


def rle_area_array(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel counts of N RLEs -> int64 (N,) via pycocotools, in chunks it can take."""
    chunks = [mask_utils.area(list(rles[i:i + _AREA_CHUNK])) for i in range(0, len(rles), _AREA_CHUNK)]
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


def rle_areas(rles: Sequence[RLE | None]) -> list[int | None]:
    """Pixel count of each RLE, None for None."""
    present = [r for r in rles if r is not None]
    areas = iter(rle_area_array(present).tolist())
    return [next(areas) if r is not None else None for r in rles]


def rle_bboxes(rles: Sequence[RLE | None]) -> list[list[float] | None]:
    """[x, y, w, h] of each RLE (all zeros for an empty mask), None for None."""
    present = [r for r in rles if r is not None]
    boxes = iter(mask_utils.toBbox(present).tolist() if present else [])
    return [next(boxes) if r is not None else None for r in rles]


# ------------------------------------------------------------------------------------ validation
def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_file_name(name: Any, loc: str) -> str:
    """A frame path must stay inside the image root: relative, no ``..``, no drive."""
    if not isinstance(name, str) or not name:
        raise AutoQVISError(f"{loc}: must be a non-empty string, got {name!r}")
    if ":" not in name and "\\" not in name and name[0] != "/" and ".." not in name.split("/"):
        return name  # no drive, root or '..' under either convention (the common case, without pathlib)
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or name.startswith(("/", "\\")):
        raise AutoQVISError(f"{loc}: {name!r} is an absolute path; file_names must be relative to the image root")
    if ".." in posix.parts or ".." in win.parts:
        raise AutoQVISError(f"{loc}: {name!r} escapes the image root ('..'); file_names must stay inside it")
    return name


def _parse_video(rec: Any, name: str, k: int) -> Video:
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{name}: videos[{k}]: must be an object, got {type(rec).__name__}")
    if not _is_int(rec.get("id")):
        raise AutoQVISError(f"{name}: videos[{k}]: field 'id' must be an integer, got {rec.get('id')!r}")
    loc = f"{name}: video {rec['id']}"
    for key in ("height", "width"):
        if not _is_int(rec.get(key)) or rec[key] <= 0:
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


def frame_too_large(h: int, w: int) -> bool:
    """A frame too large for pycocotools (see MAX_FRAME_SIDE, MAX_FRAME_PIXELS)."""
    return max(h, w) > MAX_FRAME_SIDE or h * w > MAX_FRAME_PIXELS


def polygon_in_range(poly: Sequence[float], h: int, w: int) -> bool:
    """Every vertex (x, y) of a flat polygon lies within one frame size of the h x w frame.

    pycocotools rasterises each edge point by point (time linear in its length) and crashes on
    coordinates beyond the int range, so far-away vertices must not reach it.
    """
    xs, ys = poly[0::2], poly[1::2]
    return -w <= min(xs) and max(xs) <= 2 * w and -h <= min(ys) and max(ys) <= 2 * h


def to_rle(seg: Any, h: int, w: int, loc: str) -> RLE | None:
    """One frame's segmentation (compressed/uncompressed RLE, polygons, null) -> compressed RLE | None.

    Only structure and size are checked here; counts strings are checked in bulk (``rle_check``).
    """
    if seg is None or (isinstance(seg, list) and not seg):
        return None  # [] is falsy: the official code treats it as absent too
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise AutoQVISError(f"{loc}: RLE 'size' must be [height, width], got {size!r}")
        if list(size) != [h, w]:
            raise AutoQVISError(f"{loc}: RLE size is {list(size)} but the video is {h}x{w} (height x width)")
        counts = seg.get("counts")
        if isinstance(counts, str):
            return {"size": [h, w], "counts": counts}
        if isinstance(counts, bytes):
            try:
                return {"size": [h, w], "counts": counts.decode("ascii")}
            except UnicodeDecodeError:
                raise AutoQVISError(f"{loc}: malformed RLE: counts has a non-ASCII byte") from None
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                raise AutoQVISError(f"{loc}: uncompressed RLE counts must be non-negative integers")
            if sum(counts) != h * w:
                raise AutoQVISError(f"{loc}: malformed RLE: uncompressed counts sum to {sum(counts)} "
                                    f"but the frame has {h * w} pixels")
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
            return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        raise AutoQVISError(f"{loc}: RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")
    if isinstance(seg, list):
        for k, poly in enumerate(seg):
            if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
                    and all(is_finite_number(v) for v in poly)):
                raise AutoQVISError(f"{loc}: polygon {k} must be a list of >= 3 finite (x, y) pairs")
            if not polygon_in_range(poly, h, w):
                raise AutoQVISError(f"{loc}: polygon {k} has a vertex more than a frame size outside the "
                                    f"{w}x{h} frame")
        rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in seg], h, w))
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    raise AutoQVISError(f"{loc}: must be an RLE object, a polygon list or null, got {type(seg).__name__}")


def _check_segmentations(tracks: list[list[Any]], sizes: list[list[int]], locs: list[str],
                         workers: int | None) -> None:
    """Validate (and convert in place, to compressed RLE) every frame of every track.

    tracks: N per-frame lists; sizes: N [h, w]; locs: N record locations for messages.
    """
    report = scan_tracks(tracks, sizes, workers)
    converted = []
    for i in report.noncanonical:  # rare: polygons, uncompressed RLE, or an error to name
        h, w = sizes[i]
        tracks[i][:] = [to_rle(s, h, w, f"{locs[i]}: segmentations[{t}]") for t, s in enumerate(tracks[i])]
        converted.append(i)
    problem = report.problem
    if converted:
        again = scan_tracks([tracks[i] for i in converted], [sizes[i] for i in converted], workers=1).problem
        if again is not None and (problem is None or converted[again[0]] < problem[0]):
            problem = (converted[again[0]], again[1], again[2])
    if problem is not None:
        i, t, reason = problem
        raise AutoQVISError(f"{locs[i]}: segmentations[{t}]: malformed RLE: {reason}")


def check_track_masks(segs: list[Any], size: list[int], loc: str, full: bool = True) -> list[RLE | None]:
    """One track's masks, one by one: the message a bulk check (``scan_tracks``) reports for this track.

    segs: per-frame segmentations of a video of ``size`` [h, w]; loc: the record, for messages.
    Returns them as compressed RLE or None (polygons and uncompressed RLE converted); raises
    AutoQVISError at the first bad frame. full: check that the runs cover the frame, else only the
    string syntax (``counts_syntax_problem``).
    """
    h, w = size
    if not all(s is None or is_canonical(s, size) for s in segs):
        segs = [to_rle(s, h, w, f"{loc}: segmentations[{t}]") for t, s in enumerate(segs)]
    frames = [t for t, s in enumerate(segs) if s is not None]
    counts = [segs[t]["counts"] for t in frames]
    if full:
        problems = counts_problems(counts, [h * w] * len(counts))
        problem = next(((k, p) for k, p in enumerate(problems) if p is not None), None)
    else:
        problem = counts_syntax_problem(counts)
    if problem is not None:
        raise AutoQVISError(f"{loc}: segmentations[{frames[problem[0]]}]: malformed RLE: {problem[1]}")
    return list(segs)


def _per_frame_list(rec: dict, key: str, length: int, loc: str) -> list | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise AutoQVISError(f"{loc}: field '{key}' must be a list with one entry per frame, got {type(value).__name__}")
    if len(value) != length:
        raise AutoQVISError(f"{loc}: field '{key}' has {len(value)} entries, the video has {length} frames")
    return value


def _finite_numbers(values: list[Any]) -> bool:
    """All ints or floats (not bools, nor subclasses: those take the slow path) and finite."""
    try:
        return set(map(type, values)) <= {int, float} and all(map(math.isfinite, values))
    except OverflowError:  # an int beyond the float range
        return False


def _check_areas(areas: list, loc: str) -> list[float | None]:
    present = [a for a in areas if a is not None]
    if _finite_numbers(present) and min(present, default=0) >= 0:  # the common case, in bulk
        return areas
    for t, a in enumerate(areas):
        if a is not None and not (is_finite_number(a) and a >= 0):
            raise AutoQVISError(f"{loc}: areas[{t}] must be a finite number >= 0 or null, got {a!r}")
    return areas


def _check_bboxes(bboxes: list, video: Video, loc: str) -> list[list[float] | None]:
    present = [b for b in bboxes if b is not None]
    if set(map(type, present)) <= {list} and set(map(len, present)) <= {4} \
            and _finite_numbers(list(itertools.chain.from_iterable(present))):  # the common case, in bulk
        x, y, bw, bh = np.array(present, dtype=np.float64).reshape(-1, 4).T
        if not ((bw < 0) | (bh < 0) | (x < -_BBOX_SLACK) | (y < -_BBOX_SLACK) | (x + bw > video.width + _BBOX_SLACK)
                | (y + bh > video.height + _BBOX_SLACK)).any():
            return bboxes
    for t, b in enumerate(bboxes):
        if b is None:
            continue
        if not (isinstance(b, list) and len(b) == 4 and all(is_finite_number(v) for v in b)):
            raise AutoQVISError(f"{loc}: bboxes[{t}] must be [x, y, w, h] of finite numbers or null, got {b!r:.80}")
        x, y, bw, bh = b
        if (bw < 0 or bh < 0 or x < -_BBOX_SLACK or y < -_BBOX_SLACK
                or x + bw > video.width + _BBOX_SLACK or y + bh > video.height + _BBOX_SLACK):
            raise AutoQVISError(f"{loc}: bboxes[{t}] {b} lies outside the {video.width}x{video.height} frame")
    return bboxes


def _check_per_frame_extras(rec: dict, length: int, loc: str) -> None:
    for key in _PER_FRAME_EXTRAS:
        for t, v in enumerate(_per_frame_list(rec, key, length, loc) or []):
            if v is not None and not is_finite_number(v):
                raise AutoQVISError(f"{loc}: {key}[{t}] must be a finite number or null, got {v!r}")


def _parse_annotation(rec: Any, name: str, k: int, videos: dict[int, Video], categories: set[int]) -> Annotation:
    """Everything but the masks' content (checked in bulk afterwards)."""
    if not isinstance(rec, dict):
        raise AutoQVISError(f"{name}: annotations[{k}]: must be an object, got {type(rec).__name__}")
    ann_id = rec.get("id")
    if not _is_int(ann_id):
        raise AutoQVISError(f"{name}: annotations[{k}]: field 'id' must be an integer, got {ann_id!r}")
    loc = f"{name}: annotation {ann_id}"
    if ann_id <= 0:
        raise AutoQVISError(f"{loc}: annotation ids must be >= 1 (the YouTubeVIS evaluator takes id 0 for "
                            "'unmatched' and would never match this object)")
    vid = rec.get("video_id")
    if not _is_int(vid) or vid not in videos:
        raise AutoQVISError(f"{loc}: field 'video_id' {vid!r} is not the id of a video in this file")
    video = videos[vid]
    loc = f"{loc} (video {vid})"
    cat = rec.get("category_id")
    if not _is_int(cat):
        raise AutoQVISError(f"{loc}: field 'category_id' must be an integer, got {cat!r}")
    if categories and cat not in categories:
        raise AutoQVISError(f"{loc}: category_id {cat} is not among the file's categories {sorted(categories)}")
    iscrowd = rec.get("iscrowd", 0)
    if not (_is_int(iscrowd) or isinstance(iscrowd, bool)) or iscrowd not in (0, 1):
        raise AutoQVISError(f"{loc}: field 'iscrowd' must be 0 or 1, got {iscrowd!r}")
    segs = _per_frame_list(rec, "segmentations", video.length, loc)
    if segs is None:
        raise AutoQVISError(f"{loc}: field 'segmentations' is missing (one RLE or null per frame)")
    areas = _per_frame_list(rec, "areas", video.length, loc)
    bboxes = _per_frame_list(rec, "bboxes", video.length, loc)
    _check_per_frame_extras(rec, video.length, loc)
    return Annotation(int(ann_id), int(vid), int(cat), list(segs),
                      _check_areas(areas, loc) if areas is not None else None,  # type: ignore[arg-type]
                      _check_bboxes(bboxes, video, loc) if bboxes is not None else None,  # type: ignore[arg-type]
                      int(iscrowd), {key: v for key, v in rec.items() if key not in _ANN_KEYS})


def _parse_categories(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise AutoQVISError(f"{name}: field 'categories' must be a list, got {type(value).__name__}")
    seen: set[int] = set()
    for k, cat in enumerate(value):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise AutoQVISError(f"{name}: categories[{k}]: must be an object with an integer 'id'")
        if cat["id"] in seen:
            raise AutoQVISError(f"{name}: categories[{k}]: duplicate category id {cat['id']}")
        seen.add(cat["id"])
    return value


@gc_paused
def load_ytvis(path_or_dict: str | os.PathLike | dict, image_root: str | os.PathLike | None = None,
               workers: int | None = None) -> YTVISDataset:
    """Read and validate a YouTubeVIS json (a path, or the already-parsed dict, which is not modified).

    image_root: folder the ``file_names`` are relative to; default ``<json dir>/JPEGImages`` if it
    exists, else ``<json dir>`` (for a dict: the current folder). workers: processes for the mask
    checks of large files (default up to 2).
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
    _check_segmentations([a.segmentations for a in annotations],
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
        _check_segmentations([r["segmentations"] for r in out],
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
    """Top-level fields of one result; its masks are checked in bulk afterwards."""
    if type(rec) is not dict:
        raise AutoQVISError(f"{name}: result {k}: must be an object, got {type(rec).__name__}")
    vid = rec.get("video_id")
    video = videos.get(vid) if _is_int(vid) else None
    if video is None:
        raise AutoQVISError(f"{name}: result {k}: video_id {vid!r} is not a video of the ground truth")
    score = rec.get("score")
    if not (is_finite_number(score) and 0.0 <= score <= 1.0):
        raise AutoQVISError(f"{name}: result {k} (video {vid}): field 'score' must be a finite number in [0, 1], "
                            f"got {score!r}")
    cat = rec.get("category_id")
    if not _is_int(cat):
        raise AutoQVISError(f"{name}: result {k} (video {vid}): field 'category_id' must be an integer, got {cat!r}")
    segs = rec.get("segmentations")
    if type(segs) is not list or len(segs) != video.length:
        what = f"has {len(segs)} entries" if isinstance(segs, list) else "is missing or not a list"
        raise AutoQVISError(f"{name}: result {k} (video {vid}): segmentations {what}, "
                            f"the video has {video.length} frames (one RLE or null per frame)")
    if len(rec) > 4:
        quality = _per_frame_list(rec, "quality", video.length, f"{name}: result {k} (video {vid})")
        for t, q in enumerate(quality or []):
            if q is not None and not (is_finite_number(q) and 0.0 <= q <= 1.0):
                raise AutoQVISError(f"{name}: result {k} (video {vid}): quality[{t}] must be a finite number "
                                    f"in [0, 1] or null, got {q!r}")
    out = {"video_id": int(vid), "score": float(score), "category_id": int(cat), "segmentations": list(segs)}
    if len(rec) > 4:
        out.update((key, v) for key, v in rec.items() if key not in _RESULT_KEYS)
    return out


def save_results(results: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write a results list as json (atomic)."""
    atomic_write_json(path, list(results))
