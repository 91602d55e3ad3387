"""Many COCO compressed-RLE ``counts`` strings at once, with numpy: validity, areas and boxes.

pycocotools parses any string without checking it: runs that do not add up to ``h * w`` give wrong
areas and IoUs and make its decoder fail. Here the strings are decoded to runs in bulk (one numpy
pass over thousands of strings) to check them; the same pass gives each mask's area and tight box,
which the evaluator uses so that every RLE is read once (pycocotools still computes all
intersections). ``scan_tracks`` checks whole files, on two processes when they are large
(a YouTubeVIS-val results file holds ~10^6 RLEs).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

_CHUNK = 1000  # strings per numpy pass: ~150k characters keeps the temporaries in cache
_MAX_DIGITS = 7  # 35 bits: more than any frame's pixel count
_PARALLEL_MIN = 20_000  # RLEs below which a process pool costs more than it saves
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CountsInfo:
    """problems: (N,) None or why the string is malformed; areas: (N,) int64 pixel counts;
    boxes: (N, 4) float64 tight [x, y, w, h] of the 1-pixels (zeros for empty or malformed masks)."""

    problems: list[str | None]
    areas: np.ndarray
    boxes: np.ndarray


def inspect_counts(counts: Sequence[str], heights: Sequence[int] | np.ndarray,
                   n_pixels: Sequence[int] | np.ndarray) -> CountsInfo:
    """Decode N counts strings of frames with ``heights`` (N,) and ``n_pixels`` (N,) = h * w.

    A string is valid when it decodes as pycocotools' ``rleFrString`` does (5 data bits per
    character from '0', 0x20 = more characters follow, 0x10 = sign of the last one, runs after the
    second stored as the difference to the run two before) to non-negative runs summing to h*w.
    Areas equal pycocotools' ``area`` (sum of the odd runs) for valid strings.
    """
    heights = np.asarray(heights, dtype=np.int64)
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    parts = [_inspect_chunk(counts[i:i + _CHUNK], heights[i:i + _CHUNK], n_pixels[i:i + _CHUNK])
             for i in range(0, len(counts), _CHUNK)]
    if not parts:
        return CountsInfo([], np.zeros(0, dtype=np.int64), np.zeros((0, 4)))
    return CountsInfo([p for part in parts for p in part.problems], np.concatenate([p.areas for p in parts]),
                      np.concatenate([p.boxes for p in parts]))


def counts_problems(counts: Sequence[str], n_pixels: Sequence[int] | np.ndarray) -> list[str | None]:
    """Only the validity part of :func:`inspect_counts`: N entries, None or the reason."""
    return inspect_counts(counts, np.ones(len(counts), dtype=np.int64), n_pixels).problems


def _inspect_chunk(counts: Sequence[str], heights: np.ndarray, n_pixels: np.ndarray) -> CountsInfo:
    n = len(counts)
    info = CountsInfo([None] * n, np.zeros(n, dtype=np.int64), np.zeros((n, 4)))
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=n)
    if (lengths == 0).any():  # an empty string has no runs at all
        keep = np.flatnonzero(lengths)
        for i in np.flatnonzero((lengths == 0) & (n_pixels > 0)):
            info.problems[i] = f"counts is empty but the frame has {int(n_pixels[i])} pixels"
        sub = _inspect_chunk([counts[i] for i in keep], heights[keep], n_pixels[keep])
        for j, i in enumerate(keep):
            info.problems[i] = sub.problems[j]
        info.areas[keep], info.boxes[keep] = sub.areas, sub.boxes
        return info
    joined = "".join(counts)
    if not joined.isascii():
        info.problems[:] = [None if c.isascii() else "counts has a non-ASCII character" for c in counts]
        return info
    code = np.frombuffer(joined.encode("ascii"), dtype=np.uint8) - np.uint8(48)  # wraps below '0'
    str_end = np.cumsum(lengths) - 1
    bad = np.zeros(n, dtype=np.int8)  # 1 bad character, 2 truncated, 3 number too long
    bad[np.searchsorted(str_end, np.flatnonzero(code > 63))] = 1
    is_last = code < 32  # last character of a number
    bad[~is_last[str_end] & (bad == 0)] = 2
    is_last[str_end] = True  # a truncated number must not run into the next string
    last = np.flatnonzero(is_last)
    first = np.empty_like(last)
    first[0], first[1:] = 0, last[:-1] + 1
    digits = last - first + 1
    too_long = np.searchsorted(str_end, last[digits > _MAX_DIGITS])
    bad[too_long] = np.maximum(bad[too_long], 3)
    value = _numbers(code, first, last, digits)
    first_value = np.searchsorted(last, str_end - lengths + 1)  # every string holds >= 1 number
    count = np.diff(np.r_[first_value, len(value)])
    odd = ((np.arange(len(value)) - np.repeat(first_value, count)) & 1).astype(bool)  # run of 1s
    runs = _runs_from_values(value, first_value, count, odd)
    totals = np.add.reduceat(runs, first_value)
    negative = np.zeros(n, dtype=bool)
    negative[np.searchsorted(first_value, np.flatnonzero(runs < 0), side="right") - 1] = True
    for i in np.flatnonzero((bad > 0) | negative | (totals != n_pixels)):
        info.problems[i] = _reason(int(bad[i]), bool(negative[i]), int(totals[i]), int(n_pixels[i]))
    ok = np.fromiter((p is None for p in info.problems), dtype=bool, count=n)
    info.areas[:] = np.where(ok, np.add.reduceat(np.where(odd, runs, 0), first_value), 0)
    info.boxes[:] = _boxes(runs, odd, first_value, heights) * ok[:, None]
    return info


def _numbers(code: np.ndarray, first: np.ndarray, last: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """(V,) signed numbers from the 6-bit characters ``code`` ((C,) uint8, '0' = 0) of V numbers."""
    value = (code[first] & 31).astype(np.int64)
    sel = np.flatnonzero(digits > 1)
    for k in range(1, _MAX_DIGITS):
        if len(sel) == 0:
            break
        value[sel] |= (code[first[sel] + k] & 31).astype(np.int64) << (5 * k)
        sel = sel[digits[sel] > k + 1]
    negative = np.flatnonzero(code[last] & 16)
    value[negative] -= np.left_shift(1, 5 * np.minimum(digits[negative], _MAX_DIGITS))
    return value


def _runs_from_values(value: np.ndarray, first_value: np.ndarray, count: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """Undo the delta coding: run[m] = value[m] + run[m-2] for m > 2, within each string.

    value: (V,) numbers of all strings back to back; first_value, count: (N,) where each string
    starts and how many numbers it has; odd: (V,) m is odd. A stride-2 running sum over everything,
    minus its value just before each string's two chains (m = 1, 3, ... and m = 2, 4, ...).
    """
    csum = np.empty(len(value) + 2, dtype=np.int64)  # csum[i + 2] = value[i] + value[i - 2] + ...
    csum[:2] = 0
    csum[2::2] = np.cumsum(value[0::2])
    csum[3::2] = np.cumsum(value[1::2])
    base = np.where(odd, np.repeat(csum[first_value + 1], count), np.repeat(csum[first_value + 2], count))
    base[first_value] = csum[first_value]  # m = 0 stands alone
    return csum[2:] - base


def _boxes(runs: np.ndarray, odd: np.ndarray, first_value: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """(N, 4) tight [x, y, w, h] of the 1-runs of each string (column-major pixels), zeros if none."""
    boxes = np.zeros((len(first_value), 4))
    ends = np.cumsum(runs)  # position after each run, counted over all strings
    ones = np.flatnonzero(odd & (runs > 0))
    if len(ones) == 0:
        return boxes
    seg = np.searchsorted(ones, first_value)  # each string's 1-runs: ones[seg[s]:seg[s + 1]]
    seg_len = np.diff(np.r_[seg, len(ones)])
    offset = np.r_[0, ends][first_value]  # where each string starts
    stop = ends[ones] - np.repeat(offset, seg_len) - 1  # last pixel of each 1-run
    start = stop - runs[ones] + 1
    h = heights[0] if (heights == heights[0]).all() else np.repeat(heights, seg_len)
    x0, x1 = start // h, stop // h
    y0, y1 = start - x0 * h, stop - x1 * h
    across = x1 > x0  # a run across a column boundary spans every row
    y0[across] = 0
    y1[across] = (h if np.ndim(h) == 0 else h[across]) - 1
    has = seg_len > 0
    at = seg[has]
    xmin, ymin = np.minimum.reduceat(x0, at), np.minimum.reduceat(y0, at)
    xmax, ymax = np.maximum.reduceat(x1, at), np.maximum.reduceat(y1, at)
    boxes[has] = np.stack([xmin, ymin, xmax - xmin + 1, ymax - ymin + 1], 1)
    return boxes


def _reason(bad: int, negative: bool, total: int, n_pixels: int) -> str:
    if bad == 1:
        return "counts has a character outside COCO's RLE code ('0'..'o')"
    if bad == 2:
        return "counts ends in the middle of a number (truncated string)"
    if bad == 3:
        return "counts holds a number too large for any frame"
    if negative:
        return "counts decodes to a negative run length"
    return f"counts runs cover {total} pixels but the frame has {n_pixels}"


# ------------------------------------------------------------------------------------ whole files
@dataclass
class ScanReport:
    """noncanonical: tracks with a frame that is not a compressed RLE of the right size or null
    (polygons, uncompressed RLE, wrong size, garbage: the caller looks at those one by one);
    problem: the first (track, frame, reason) whose counts string is malformed, or None."""

    noncanonical: list[int]
    problem: tuple[int, int, str] | None


_STATE: tuple = ()  # (tracks, sizes) handed to forked workers without pickling


def is_canonical(seg: Any, size: list[int]) -> bool:
    """A compressed RLE dict ``{"size": size, "counts": str}`` and nothing else."""
    return type(seg) is dict and len(seg) == 2 and seg.get("size") == size and type(seg.get("counts")) is str


def _scan_range(bounds: tuple[int, int]) -> ScanReport:
    tracks, sizes = _STATE
    noncanonical, where, counts, n_pixels = [], [], [], []
    for i in range(*bounds):
        size, segs = sizes[i], tracks[i]
        if not all(s is None or is_canonical(s, size) for s in segs):
            noncanonical.append(i)
            continue
        for t, s in enumerate(segs):
            if s is not None:
                where.append((i, t))
                counts.append(s["counts"])
                n_pixels.append(size[0] * size[1])
    problems = counts_problems(counts, n_pixels)
    bad = next((k for k, p in enumerate(problems) if p is not None), None)
    return ScanReport(noncanonical, None if bad is None else (*where[bad], problems[bad]))  # type: ignore[arg-type]


def scan_tracks(tracks: Sequence[Sequence[Any]], sizes: Sequence[list[int]], workers: int | None = None,
                parallel_min: int = _PARALLEL_MIN) -> ScanReport:
    """Check every frame of every track: canonical compressed RLE of ``sizes[i]`` ([h, w]) or None.

    tracks: N lists of per-frame segmentations; sizes: N frame sizes. With at least ``parallel_min``
    frames and ``workers`` > 1 (default: up to 2) the tracks are split over forked processes.
    """
    global _STATE
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    n_frames = sum(len(t) for t in tracks)
    parallel = use_pool(workers, n_frames, parallel_min)
    n_parts = 4 * workers if parallel else 1
    step = max(1, -(-len(tracks) // n_parts))
    bounds = [(a, min(a + step, len(tracks))) for a in range(0, len(tracks), step)]
    _STATE = (tracks, sizes)
    try:
        if parallel:
            with forked_pool(workers) as pool:
                reports = pool.map(_scan_range, bounds)
        else:
            reports = [_scan_range(b) for b in bounds]
    finally:
        _STATE = ()
    problem = next((r.problem for r in reports if r.problem is not None), None)
    return ScanReport([i for r in reports for i in r.noncanonical], problem)


# ------------------------------------------------------------------------------------ processes
def use_pool(workers: int, n_items: int, minimum: int) -> bool:
    """Whether a forked pool pays off: > 1 worker, at least ``minimum`` items, and fork is safe (Linux)."""
    return workers > 1 and n_items >= minimum and sys.platform.startswith("linux")


@contextlib.contextmanager
def forked_pool(workers: int) -> Iterator[Any]:
    """A fork-context pool; the parent's objects are frozen out of gc first, so that the children's
    collections do not touch (and so copy) the whole inherited heap."""
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield pool
    finally:
        gc.unfreeze()


def gc_paused(fn: F) -> F:
    """Run ``fn`` with the cyclic gc off: parsing 10^6 json objects otherwise triggers collections
    that cost more than the parsing (the objects hold no cycles)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper  # type: ignore[return-value]
