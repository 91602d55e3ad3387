"""Validation of mask files shared by the YouTubeVIS (:mod:`autoqvis.data.ytvis`) and COCO (:mod:`autoqvis.data.coco`)
readers: values, file names inside their root, frame sizes, per-frame lists, and masks.

Masks have one validator: the structure of each segmentation here (:func:`to_rle`, :func:`check_rle_dict`,
:func:`check_polygons`), the compressed counts strings in bulk by :mod:`autoqvis.data.rle_batch`
(:func:`check_segmentations`, :func:`check_track_masks`).
"""

from __future__ import annotations

import itertools
import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..core.errors import AutoQVISError
from ..core.tracks import RLE
from .rle_batch import counts_problems, counts_syntax_problem, is_canonical, scan_tracks

# pycocotools holds RLE runs in 32 bits and rasterises polygons on a 5x int grid: larger frames overflow it
MAX_FRAME_SIDE, MAX_FRAME_PIXELS = 2**16, 2**31 - 1
_BBOX_SLACK = 1.0  # pixels a stored bbox may overhang the frame (rounding in third-party tools)


def is_finite_number(x: Any) -> bool:
    """An int or float (not a bool) that is finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any) -> bool:
    """An integer, numpy's included, not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def path_outside_root(name: str) -> str | None:
    """Why a relative file name would leave its root ("absolute", "escapes"), or None when it stays inside:
    no drive, no leading slash, no ``..`` part, under either the POSIX or the Windows convention."""
    if ":" not in name and "\\" not in name and name[:1] != "/" and ".." not in name.split("/"):
        return None  # the common case, without pathlib
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or name.startswith(("/", "\\")):
        return "absolute"
    if ".." in posix.parts or ".." in win.parts:
        return "escapes"
    return None


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


def check_rle_dict(seg: dict[str, Any], h: int, w: int, loc: str, of: str = "video") -> str | list[int]:
    """The structure of an RLE dict of an h x w frame (of a ``video`` or an ``image``, for messages): its
    ``counts``, a str (compressed; the runs are checked in bulk by :mod:`autoqvis.data.rle_batch`) or a list
    of run lengths that covers the frame."""
    size = seg.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) for v in size)):
        raise AutoQVISError(f"{loc}: RLE 'size' must be [height, width], got {size!r}")
    if list(size) != [h, w]:
        raise AutoQVISError(f"{loc}: RLE size is {list(size)} but the {of} is {h}x{w} (height x width)")
    counts = seg.get("counts")
    if isinstance(counts, str):
        return counts
    if isinstance(counts, bytes):
        try:
            return counts.decode("ascii")
        except UnicodeDecodeError:
            raise AutoQVISError(f"{loc}: malformed RLE: counts has a non-ASCII byte") from None
    if isinstance(counts, list):
        if not all(is_int(c) and c >= 0 for c in counts):
            raise AutoQVISError(f"{loc}: uncompressed RLE counts must be non-negative integers")
        if sum(counts) != h * w:
            raise AutoQVISError(f"{loc}: malformed RLE: uncompressed counts sum to {sum(counts)} "
                                f"but the frame has {h * w} pixels")
        return counts
    raise AutoQVISError(f"{loc}: RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")


def check_polygons(seg: list[Any], h: int, w: int, loc: str) -> None:
    """Flat polygons of >= 3 finite (x, y) pairs, none with a vertex far outside the h x w frame."""
    for k, poly in enumerate(seg):
        if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
                and all(is_finite_number(v) for v in poly)):
            raise AutoQVISError(f"{loc}: polygon {k} must be a list of >= 3 finite (x, y) pairs")
        if not polygon_in_range(poly, h, w):
            raise AutoQVISError(f"{loc}: polygon {k} has a vertex more than a frame size outside the "
                                f"{w}x{h} frame")


def to_rle(seg: Any, h: int, w: int, loc: str) -> RLE | None:
    """One frame's segmentation (compressed/uncompressed RLE, polygons, null) -> compressed RLE | None.

    Only structure and size are checked here; counts strings are checked in bulk (:mod:`autoqvis.data.rle_batch`).
    """
    if seg is None or (isinstance(seg, list) and not seg):
        return None  # [] is falsy: the official code treats it as absent too
    if isinstance(seg, dict):
        counts = check_rle_dict(seg, h, w, loc)
        if isinstance(counts, str):
            return {"size": [h, w], "counts": counts}
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    if isinstance(seg, list):
        check_polygons(seg, h, w, loc)
        rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in seg], h, w))
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    raise AutoQVISError(f"{loc}: must be an RLE object, a polygon list or null, got {type(seg).__name__}")


def check_segmentations(tracks: list[list[Any]], sizes: list[list[int]], locs: list[str],
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


def per_frame_list(rec: dict, key: str, length: int, loc: str) -> list | None:
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


def check_areas(areas: list, loc: str) -> list[float | None]:
    present = [a for a in areas if a is not None]
    if _finite_numbers(present) and min(present, default=0) >= 0:  # the common case, in bulk
        return areas
    for t, a in enumerate(areas):
        if a is not None and not (is_finite_number(a) and a >= 0):
            raise AutoQVISError(f"{loc}: areas[{t}] must be a finite number >= 0 or null, got {a!r}")
    return areas


def check_bboxes(bboxes: list, width: int, height: int, loc: str) -> list[list[float] | None]:
    present = [b for b in bboxes if b is not None]
    if set(map(type, present)) <= {list} and set(map(len, present)) <= {4} \
            and _finite_numbers(list(itertools.chain.from_iterable(present))):  # the common case, in bulk
        x, y, bw, bh = np.array(present, dtype=np.float64).reshape(-1, 4).T
        if not ((bw < 0) | (bh < 0) | (x < -_BBOX_SLACK) | (y < -_BBOX_SLACK) | (x + bw > width + _BBOX_SLACK)
                | (y + bh > height + _BBOX_SLACK)).any():
            return bboxes
    for t, b in enumerate(bboxes):
        if b is None:
            continue
        if not (isinstance(b, list) and len(b) == 4 and all(is_finite_number(v) for v in b)):
            raise AutoQVISError(f"{loc}: bboxes[{t}] must be [x, y, w, h] of finite numbers or null, got {b!r:.80}")
        x, y, bw, bh = b
        if (bw < 0 or bh < 0 or x < -_BBOX_SLACK or y < -_BBOX_SLACK
                or x + bw > width + _BBOX_SLACK or y + bh > height + _BBOX_SLACK):
            raise AutoQVISError(f"{loc}: bboxes[{t}] {b} lies outside the {width}x{height} frame")
    return bboxes
