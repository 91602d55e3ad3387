"""Checks of many COCO compressed-RLE ``counts`` strings at once, with numpy.

pycocotools parses any string without checking it: runs that do not add up to ``h * w`` give wrong
areas and IoUs and make its decoder fail. ``counts_problems`` decodes the strings to runs in bulk
(one numpy pass over thousands of strings) only to check them; all RLE arithmetic stays with
pycocotools. ``counts_syntax_problem`` is the cheap part of the check (alphabet, no cut-off number),
``first_bad_counts`` the full check without reasons (faster), ``scan_tracks`` checks whole files, on
two processes when they are large (a YouTubeVIS-val results file holds ~10^6 RLEs).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import multiprocessing
import operator
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

_CHUNK = 1000  # strings per numpy pass: ~150k characters keeps the temporaries in cache
_MAX_DIGITS = 7  # 35 bits: more than any frame's pixel count
_PARALLEL_MIN = 20_000  # RLEs below which a process pool costs more than it saves
F = TypeVar("F", bound=Callable[..., Any])


def counts_problems(counts: Sequence[str], n_pixels: Sequence[int] | np.ndarray) -> list[str | None]:
    """Check N counts strings against their frames' pixel counts (N,) = h * w.

    Returns N entries: None when the string decodes, as pycocotools' ``rleFrString`` does (5 data
    bits per character from '0', 0x20 = more characters follow, 0x10 = sign of the last one, runs
    after the second stored as the difference to the run two before), to non-negative runs summing
    to h*w; else a short reason.
    """
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    return [p for i in range(0, len(counts), _CHUNK) for p in _chunk_problems(counts[i:i + _CHUNK], n_pixels[i:i + _CHUNK])]


def counts_syntax_problem(counts: Sequence[str]) -> tuple[int, str] | None:
    """The cheap part of the check, two byte passes: the first (index, reason) of a string that is
    empty, leaves COCO's alphabet ('0'..'o') or ends inside a number; None if all are fine."""
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
    found: list[tuple[int, int, str]] = []  # (string, rank of the reason on that string, reason)
    if len(lengths) and (lengths == 0).any():
        found.append((int(np.argmax(lengths == 0)), 0, "counts is empty"))
    joined = "".join(counts)
    if not joined.isascii():
        found.append((next(i for i, c in enumerate(counts) if not c.isascii()), 0, "counts has a non-ASCII character"))
    elif joined:
        text = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        str_end = np.cumsum(lengths) - 1
        if text.min() < 48 or text.max() > 111:  # two reductions, no temporaries: the common case is clean
            bad = np.flatnonzero(text - np.uint8(48) > 63)
            found.append((int(np.searchsorted(str_end, bad[0])), 0, _reason(1, False, 0, 0)))
        nonempty = np.flatnonzero(lengths)
        cut = nonempty[text[str_end[nonempty]] - np.uint8(48) >= 32]
        if len(cut):
            found.append((int(cut[0]), 1, _reason(2, False, 0, 0)))
    first = min(found, default=None)
    return None if first is None else (first[0], first[2])


def first_bad_counts(counts: Sequence[str], n_pixels: Sequence[int] | np.ndarray) -> int | None:
    """Index of the first string :func:`counts_problems` finds fault with, or None, in 85% of its
    time or less: no reasons (ask ``counts_problems`` about the one string), fewer passes over the runs.

    A string that decodes to a negative run or to runs that do not sum to its frame's pixel count
    (n_pixels (N,) = h * w) is one pycocotools' ``iou`` would never return on.
    """
    n_pixels = np.asarray(n_pixels, dtype=np.int64)
    for i in range(0, len(counts), _CHUNK):
        chunk, pixels = counts[i:i + _CHUNK], n_pixels[i:i + _CHUNK]
        lengths = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
        joined = "".join(chunk)
        bad = None if joined.isascii() and len(chunk) and lengths.min() > 0 else 0
        if bad is None:  # the syntax check, on the same bytes
            text = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
            ends = np.cumsum(lengths) - 1
            if text.min() < 48 or text.max() > 111 or text[ends].max() >= 80:
                bad = 0
            else:
                bad = _chunk_bad_runs(text, ends, pixels)
        if bad is not None:  # the first fault of the chunk, whatever it is
            return i + next(k for k, p in enumerate(_chunk_problems(chunk, pixels)) if p is not None)
    return None


_VALUE = np.array([(c - 48 & 15) - (c - 48 & 16) for c in range(256)], dtype=np.int64)  # one-character numbers


def _chunk_bad_runs(text: np.ndarray, ends: np.ndarray, n_pixels: np.ndarray) -> int | None:
    """A string of the chunk with a bad run or total, or None.

    text: (C,) uint8 the strings back to back, their syntax checked; ends: (S,) index of each one's last
    character; n_pixels: (S,). Runs are stride-2 running sums of a string's numbers (run m = number m +
    run m-2 from m = 3 on), so the numbers at the chunk's even and at its odd positions form two arrays
    whose running sums, taken once, hold every string's two chains of runs as contiguous segments:
    per-string minima and sums of the segments (``reduceat``) tell whether every run is >= 0 and what
    the runs add up to, without building the runs.
    """
    last = np.flatnonzero(text < 80)  # each number's last character ('0' + 32); every string ends with one
    value = _VALUE[text[last]]
    multi = np.flatnonzero(text[last - 1] >= 80)  # numbers of several characters (index -1: a string's end)
    if len(multi):
        start = np.where(multi > 0, last[multi - 1] + 1, 0)
        n = last[multi] - start + 1
        if n.max() > _MAX_DIGITS:  # a number too long for any frame
            return int(np.searchsorted(ends, last[multi[np.argmax(n > _MAX_DIGITS)]]))
        x = np.zeros(len(multi), dtype=np.int64)
        for k in range(int(n.max())):
            has = np.flatnonzero(n > k)
            x[has] |= (text[start[has] + k].astype(np.int64) - 48 & 31) << (5 * k)
        value[multi] = x - ((text[last[multi]].astype(np.int64) - 48 & 16) << (5 * n - 4))
    f = np.r_[0, np.searchsorted(last, ends[:-1]) + 1]  # each string's first number
    m = np.diff(np.r_[f, len(value)])  # numbers per string
    par = f & 1  # the parity of the positions of the string's runs 0, 2, 4, ...
    chains, mins, sums, sizes = [], [], [], []
    for c, start in ((0, (f + 1) >> 1), (1, f >> 1)):  # each string's segment of chain c
        chain = np.empty((len(value) + 1 - c) // 2 + 1, dtype=np.int64)  # running sums + a sentinel,
        np.cumsum(value[c::2], out=chain[:-1])  # which empty segments at the end start at
        size = np.where(par == c, (m + 1) >> 1, m >> 1)
        chain[-1] = 0
        sums.append(np.where(size > 0, np.add.reduceat(chain, start), 0))
        chain[-1] = np.iinfo(np.int64).max  # the last segment runs into the sentinel: neutral for minima
        mins.append(np.where(size > 0, np.minimum.reduceat(chain, start), 0))
        chains.append(chain)
        sizes.append(size)
    even_min, even_sum, even_size = (np.where(par == 0, x[0], x[1]) for x in (mins, sums, sizes))
    odd_min, odd_sum, odd_size = (np.where(par == 0, x[1], x[0]) for x in (mins, sums, sizes))
    base_even = np.where(par == 0, chains[0][f >> 1], chains[1][f >> 1])  # run 0's own running sum
    before = ((f + 1) >> 1) - 1  # the odd chain's base: the running sum just before its first number
    base_odd = np.where(before < 0, 0, np.where(par == 0, chains[1][before], chains[0][before]))
    first = value[f]
    negative = (first < 0) | (even_min < base_even) | ((odd_size > 0) & (odd_min < base_odd))
    total = first + even_sum - even_size * base_even + odd_sum - odd_size * base_odd
    bad = negative | (total != n_pixels)
    return int(np.argmax(bad)) if bad.any() else None


def _chunk_problems(counts: Sequence[str], n_pixels: np.ndarray) -> list[str | None]:
    n = len(counts)
    problems: list[str | None] = [None] * n
    lengths = np.fromiter(map(len, counts), dtype=np.int64, count=n)
    if (lengths == 0).any():  # an empty string has no runs at all
        keep = np.flatnonzero(lengths)
        for i in np.flatnonzero((lengths == 0) & (n_pixels > 0)):
            problems[i] = f"counts is empty but the frame has {int(n_pixels[i])} pixels"
        for i, p in zip(keep, _chunk_problems([counts[i] for i in keep], n_pixels[keep])):
            problems[i] = p
        return problems
    joined = "".join(counts)
    if not joined.isascii():  # those strings get this reason, the others the full check
        ascii_ = [i for i, c in enumerate(counts) if c.isascii()]
        problems = ["counts has a non-ASCII character"] * n
        for i, p in zip(ascii_, _chunk_problems([counts[i] for i in ascii_], n_pixels[ascii_])):
            problems[i] = p
        return problems
    code = np.frombuffer(joined.encode("ascii"), dtype=np.uint8) - np.uint8(48)  # wraps below '0'
    str_end = np.cumsum(lengths) - 1
    bad = np.zeros(n, dtype=np.int8)  # 1 bad character, 2 truncated, 3 number too long
    bad[np.searchsorted(str_end, np.flatnonzero(code > 63))] = 1
    is_last = code < 32  # last character of a number
    bad[~is_last[str_end] & (bad == 0)] = 2
    is_last[str_end] = True  # a truncated number must not run into the next string
    last = np.flatnonzero(is_last)
    value = _numbers(code, last, np.flatnonzero(~is_last), bad, str_end)
    first_value = np.searchsorted(last, str_end - lengths + 1)  # every string holds >= 1 number
    count = np.diff(np.r_[first_value, len(value)])
    odd = _alternating(len(value)) ^ np.repeat((first_value & 1).astype(bool), count)  # m is odd
    runs = _runs_from_values(value, first_value, count, odd)
    totals = np.add.reduceat(runs, first_value)
    negative = np.zeros(n, dtype=bool)
    negative[np.searchsorted(first_value, np.flatnonzero(runs < 0), side="right") - 1] = True
    for i in np.flatnonzero((bad > 0) | negative | (totals != n_pixels)):
        problems[i] = _reason(int(bad[i]), bool(negative[i]), int(totals[i]), int(n_pixels[i]))
    return problems


def _numbers(code: np.ndarray, last: np.ndarray, more: np.ndarray, bad: np.ndarray, str_end: np.ndarray,
             ) -> np.ndarray:
    """(V,) signed numbers from the characters ``code`` ((C,) uint8, '0' = 0).

    last: (V,) index of each number's last character; more: indices of the other characters (few:
    most numbers are deltas of one character). Numbers with too many digits are flagged in ``bad``.
    """
    tail = code[last]
    value = (tail & 15).astype(np.int64) - (tail & 16)  # one character: 4 bits and a sign
    if len(more) == 0:
        return value
    owner = np.searchsorted(last, more)  # ascending: more and last are
    multi = owner[np.r_[True, owner[1:] != owner[:-1]]]  # numbers with more than one character
    first = np.r_[0, last[:-1] + 1][multi]
    digits = last[multi] - first + 1
    too_long = np.searchsorted(str_end, last[multi[digits > _MAX_DIGITS]])
    bad[too_long] = np.maximum(bad[too_long], 3)
    digits = np.minimum(digits, _MAX_DIGITS)
    x = np.zeros(len(multi), dtype=np.int64)
    for k in range(_MAX_DIGITS):
        has = np.flatnonzero(digits > k)
        if len(has) == 0:
            break
        x[has] |= (code[first[has] + k] & 31).astype(np.int64) << (5 * k)
    value[multi] = x - ((tail[multi] & 16).astype(np.int64) << (5 * digits - 4))  # sign: -2^(5 digits)
    return value


_ALTERNATING = np.zeros(0, dtype=bool)


def _alternating(n: int) -> np.ndarray:
    """[False, True, False, ...] of length n (cached)."""
    global _ALTERNATING
    if len(_ALTERNATING) < n:
        _ALTERNATING = np.arange(max(n, 2 * len(_ALTERNATING))) % 2 == 1
    return _ALTERNATING[:n]


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


@dataclass
class PresentFrames:
    """The present (not None) frames of canonical tracks, flattened track by track, frame by frame.

    counts: (P,) counts strings; track: (P,) int64 the track of each; n_pixels: (P,) int64 h * w of its
    track; tracks: the tracks themselves (for :meth:`locate`).
    """

    counts: list[str]
    track: np.ndarray
    n_pixels: np.ndarray
    tracks: Sequence[Sequence[Any]]

    def locate(self, k: int) -> tuple[int, int]:
        """(track, frame) of present frame k."""
        i = int(self.track[k])
        rank = k - int(np.searchsorted(self.track, i))  # present frames of track i before k
        return i, [t for t, s in enumerate(self.tracks[i]) if s is not None][rank]


def scan_frames(tracks: Sequence[Sequence[Any]], sizes: Sequence[list[int]]) -> tuple[list[int], PresentFrames]:
    """Sort N tracks (per-frame lists) of frame sizes ``sizes`` ([h, w] each) into canonical and not.

    Returns the indices of the tracks with a frame that is neither None nor a compressed RLE of their
    size (``is_canonical``), and the present frames of all the other tracks. A few passes of builtins
    over all frames at once; the tracks are looked at one by one only when one of those passes fails.
    """
    present = [s for segs in tracks for s in segs if s is not None]
    n_present = (np.fromiter(map(len, tracks), dtype=np.int64, count=len(tracks))
                 - np.fromiter(map(operator.methodcaller("count", None), tracks), dtype=np.int64, count=len(tracks)))
    counts = _canonical_counts(present, sizes, n_present)
    if counts is None:
        odd = [i for i, segs in enumerate(tracks) if not all(s is None or is_canonical(s, sizes[i]) for s in segs)]
        if odd:
            ok = sorted(set(range(len(tracks))) - set(odd))
            _, frames = scan_frames([tracks[i] for i in ok], [sizes[i] for i in ok])
            frames.track = np.asarray(ok, dtype=np.int64)[frames.track]
            frames.tracks = tracks
            return odd, frames
        counts = list(map(operator.itemgetter("counts"), present))
    track = np.repeat(np.arange(len(tracks)), n_present)
    pixels = np.fromiter((h * w for h, w in sizes), dtype=np.int64, count=len(sizes))
    return [], PresentFrames(counts, track, pixels[track], tracks)


def _canonical_counts(present: list[Any], sizes: Sequence[list[int]], per_track: np.ndarray) -> list[str] | None:
    """The counts strings of the present frames if every one is canonical, else None.

    per_track: (N,) how many of the present frames each track has (they come track by track)."""
    try:
        if not (set(map(type, present)) <= {dict} and set(map(len, present)) <= {2}):
            return None
        counts = list(map(operator.itemgetter("counts"), present))
        sizes_ok = (list(map(operator.itemgetter("size"), present))
                    == list(itertools.chain.from_iterable(map(itertools.repeat, sizes, per_track.tolist()))))
    except KeyError:  # a dict of two keys without "size" or "counts"
        return None
    return counts if sizes_ok and set(map(type, counts)) <= {str} else None


def _scan_range(bounds: tuple[int, int]) -> ScanReport:
    tracks, sizes = _STATE
    noncanonical, frames = scan_frames(tracks[bounds[0]:bounds[1]], sizes[bounds[0]:bounds[1]])
    problems = counts_problems(frames.counts, frames.n_pixels)
    bad = next((k for k, p in enumerate(problems) if p is not None), None)
    problem = None
    if bad is not None:
        track, frame = frames.locate(bad)
        problem = (bounds[0] + track, frame, problems[bad])
    return ScanReport([bounds[0] + i for i in noncanonical], problem)  # type: ignore[arg-type]


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
