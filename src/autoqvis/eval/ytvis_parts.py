"""The per-detection half of the evaluator: results read, checked and scored part by part.

A YouTubeVIS-val results file holds ~30,000 tracks and 10^6 RLE strings (150 MB of json). It is cut
into parts (byte ranges at result boundaries, see :mod:`autoqvis.data.json_array`, or slices of an
in-memory list), and each part, in a worker process that inherits the ground truth (and a results
list) by ``fork``:

1. reads and parses its bytes of the file;
2. checks each result's fields (``parse_result``), then its masks: structure and size (polygons and
   uncompressed RLE converted), counts strings: decoded in full for the results it scores (pycocotools'
   ``iou`` never returns on runs that do not cover the frame), the syntax only for the others (unless
   ``check_masks``);
3. for each video, takes the results that can be among the video's first 100 in the official order
   (the part's own first 100: a superset of the video's, since a part holds a subset of its results)
   and computes their per-frame areas and their video IoU with every GT track of the video.

Only small arrays travel back. A detection's IoU row depends on its own masks and the GT alone, so a
video whose results fall into two parts is scored in both and merged by :func:`run_parts`, which also
reports the first bad result of the file, with its index, exactly as a serial check would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import AutoQVISError
from ..core.fileio import read_json
from ..core.tracks import RLE, video_iou
from ..data.json_array import parse_part, split_array
from ..data.rle_batch import counts_syntax_problem, first_bad_counts, forked_pool, scan_frames, use_pool
from ..data.validate import check_track_masks, to_rle
from ..data.ytvis import Video, parse_result, result_location

_PARALLEL_MIN_BYTES = 4 << 20  # results json below which worker processes cost more than they save
_PARALLEL_MIN_RESULTS = 300  # the same for an in-memory results list
_PARTS_PER_WORKER = 2  # more parts than workers: a worker slowed down by other jobs takes fewer


def truthy_mean(areas: np.ndarray) -> np.ndarray:
    """Mean of the non-zero entries of each row, 0 if none: (N, L) int -> (N,) float64.

    Integer sums are exact, so this equals the official ``np.array([a for a in areas if a]).mean()``.
    """
    count = (areas > 0).sum(1)
    return np.divide(areas.sum(1).astype(np.float64), count, out=np.zeros(len(areas)), where=count > 0)


# ------------------------------------------------------------------------------------ inputs
@dataclass
class ResultsSource:
    """The results, as a json file cut into parts or as an in-memory list cut into slices.

    name: the file (or "<results list>") for messages; path + ranges: the file and the parts' byte
    ranges (:func:`split_array`); records + ranges: the list and the parts' index ranges.
    """

    name: str
    ranges: list[tuple[int, int]]
    path: Path | None = None
    records: list[Any] | None = None

    @classmethod
    def from_file(cls, path: Path, workers: int) -> "ResultsSource":
        """Cut the file into parts for ``workers`` processes; each part reads its own bytes."""
        try:
            size = path.stat().st_size
        except OSError:  # read_json names the problem
            read_json(path, "results json")
            raise
        parts = workers * _PARTS_PER_WORKER if workers > 1 and size >= _PARALLEL_MIN_BYTES else 1
        return cls(str(path), split_array(path, parts), path=path)

    @classmethod
    def from_list(cls, records: list[Any], name: str, workers: int) -> "ResultsSource":
        """Cut the list into parts for ``workers`` processes."""
        parts = workers * _PARTS_PER_WORKER if workers > 1 and len(records) >= _PARALLEL_MIN_RESULTS else 1
        step = max(1, -(-len(records) // parts))
        ranges = [(a, min(a + step, len(records))) for a in range(0, len(records), step)] or [(0, 0)]
        return cls(name, ranges, records=records)

    def part(self, i: int) -> list[Any] | None:
        """The results of part i; None if its bytes do not parse as that part of a json list."""
        if self.records is not None:
            return self.records[self.ranges[i][0]:self.ranges[i][1]]
        try:
            return parse_part(self.path, self.ranges, i)  # type: ignore[arg-type]
        except OSError:  # gone or unreadable since it was cut: read_json will say so
            return None


@dataclass
class Setting:
    """Everything a part needs: the results; the GT videos in ascending id order (``videos``) and each
    one's tracks in the official order (``gt_tracks``: G x L per video, same order); the evaluated
    categories (``cat_rank``: category id -> rank; None keeps every result); ``check_masks``; the
    detections kept per video. Videos are referred to by their position in ``videos`` (any int is a
    valid id)."""

    source: ResultsSource
    videos: list[Video]
    gt_tracks: list[list[list[RLE | None]]]
    cat_rank: dict[int, int] | None
    check_masks: bool
    max_dets: int

    def __post_init__(self) -> None:
        self.by_id = {v.id: v for v in self.videos}
        self.position = {v.id: i for i, v in enumerate(self.videos)}


@dataclass
class VideoRows:
    """Scored results of one video in one part: index (D,) in the part (or the file, once merged),
    iou (D, G) with the video's GT tracks, area (D,) mean non-zero mask area."""

    index: np.ndarray
    iou: np.ndarray
    area: np.ndarray


@dataclass
class PartOutput:
    """n: results in the part (None: its bytes did not parse); video, score, cat_rank (n,) per result
    (video: position in Setting.videos; cat_rank -1: category not evaluated); rows: video position ->
    VideoRows; top_error / mask_error: (index in the part, record) of the first result whose fields /
    masks are bad."""

    n: int | None
    video: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cat_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rows: dict[int, VideoRows] = field(default_factory=dict)
    top_error: tuple[int, Any] | None = None
    mask_error: tuple[int, Any] | None = None


# ------------------------------------------------------------------------------------ one part
def score_part(setting: Setting, i: int) -> PartOutput:
    """Parse, check and score part i (see the module docstring)."""
    records = setting.source.part(i)
    if records is None:
        return PartOutput(None)
    results = []
    for k, rec in enumerate(records):
        try:
            results.append(parse_result(rec, setting.source.name, k, setting.by_id))
        except AutoQVISError:
            return PartOutput(len(records), top_error=(k, rec))
    video = np.fromiter((setting.position[r["video_id"]] for r in results), dtype=np.int64, count=len(results))
    score = np.fromiter((r["score"] for r in results), dtype=np.float64, count=len(results))
    ranks = setting.cat_rank
    cat_rank = np.fromiter((0 if ranks is None else ranks.get(r["category_id"], -1) for r in results),
                           dtype=np.int64, count=len(results))
    selected = first_per_video(video, score, cat_rank, setting.max_dets)
    tracks = [r["segmentations"] for r in results]
    sizes = [[setting.videos[v].height, setting.videos[v].width] for v in video.tolist()]
    scored = None if setting.check_masks else np.concatenate([np.zeros(0, dtype=np.int64), *selected.values()])
    bad = _first_bad_masks(tracks, sizes, scored)
    if bad is not None:
        return PartOutput(len(records), mask_error=(bad, records[bad]))
    rows = {}
    for v, index in selected.items():
        iou, areas = video_iou([tracks[k] for k in index.tolist()], setting.gt_tracks[v])
        rows[v] = VideoRows(index, iou, truthy_mean(areas))
    return PartOutput(len(records), video, score, cat_rank, rows)


def _first_bad_masks(tracks: list[list[Any]], sizes: list[list[int]], scored: np.ndarray | None) -> int | None:
    """Index of the first track with a bad mask, or None; converts polygons and uncompressed RLE in place.

    The counts strings of the ``scored`` tracks (None: all) are decoded in full: pycocotools' ``iou``
    never returns on runs that do not cover the frame. The others' are checked for syntax only.
    """
    odd, frames = scan_frames(tracks, sizes)
    bad = []
    for i in odd:
        h, w = sizes[i]
        try:
            tracks[i][:] = [to_rle(s, h, w, "") for s in tracks[i]]
        except AutoQVISError:
            bad.append(i)
    failed = set(bad)
    converted = [i for i in odd if i not in failed]
    if converted:  # bytes counts pass the conversion unchecked
        _, more = scan_frames([tracks[i] for i in converted], [sizes[i] for i in converted])
        frames.counts += more.counts  # (appended out of order: only the track of a problem is read)
        frames.track = np.r_[frames.track, np.asarray(converted, dtype=np.int64)[more.track]]
        frames.n_pixels = np.r_[frames.n_pixels, more.n_pixels]
    decode = np.ones(len(tracks), dtype=bool)
    if scored is not None:
        decode[:] = False
        decode[scored] = True
    full = decode[frames.track]
    for check, subset in ((True, np.flatnonzero(full)), (False, np.flatnonzero(~full))):
        if len(subset) == len(frames.counts):
            counts, pixels = frames.counts, frames.n_pixels
        else:
            counts, pixels = [frames.counts[k] for k in subset.tolist()], frames.n_pixels[subset]
        if check:
            first = first_bad_counts(counts, pixels)
        else:
            problem = counts_syntax_problem(counts)
            first = None if problem is None else problem[0]
        if first is not None:
            bad.append(int(frames.track[subset[first]]))
    return min(bad, default=None)


def first_per_video(video: np.ndarray, score: np.ndarray, cat_rank: np.ndarray, max_dets: int,
                    ) -> dict[int, np.ndarray]:
    """The first ``max_dets`` evaluated results of each video in the official order.

    video, score, cat_rank: (N,) int64 / float64 / int64 per result in file order (cat_rank -1: not
    evaluated). The order: descending score, ties by category rank, then file order (the official
    stable sort by category then by score). Returns video -> (D,) indices, in that order.
    """
    keep = np.flatnonzero(cat_rank >= 0)
    order = keep[np.lexsort((keep, cat_rank[keep], -score[keep], video[keep]))]
    videos = video[order]
    starts = np.flatnonzero(np.r_[True, videos[1:] != videos[:-1]]) if len(order) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(order)]
    return {int(videos[s]): order[s:min(e, s + max_dets)] for s, e in zip(starts, ends)}


# ------------------------------------------------------------------------------------ all parts
_SETTING: Setting | None = None  # handed to forked workers without pickling


def _score_part_job(i: int) -> PartOutput:
    return score_part(_SETTING, i)  # type: ignore[arg-type]


@dataclass
class Scored:
    """All results: video (position in Setting.videos), score, cat_rank (N,) in file order; rows: video
    -> VideoRows with file indices (a superset of the video's first max_dets results)."""

    video: np.ndarray
    score: np.ndarray
    cat_rank: np.ndarray
    rows: dict[int, VideoRows]


def run_parts(setting: Setting, workers: int) -> Scored:
    """score_part over all parts (a forked pool when there are several), merged; raises the
    AutoQVISError of the first bad result of the file (fields before masks, as a serial check)."""
    global _SETTING
    n_parts = len(setting.source.ranges)
    _SETTING = setting
    try:
        if n_parts > 1 and use_pool(workers, n_parts, 2):
            with forked_pool(min(workers, n_parts)) as pool:
                outputs = pool.map(_score_part_job, range(n_parts), chunksize=1)
        else:
            outputs = [score_part(setting, i) for i in range(n_parts)]
    finally:
        _SETTING = None
    if any(out.n is None for out in outputs):  # not a json list, or one our cuts did not fit
        records = read_json(Path(setting.source.name), "results json")  # raises if the file is not json
        if not isinstance(records, list):
            raise AutoQVISError(f"{setting.source.name}: a results file must be a json list of predictions, "
                                f"got {type(records).__name__}")
        return run_parts(replace(setting, source=ResultsSource.from_list(records, setting.source.name, workers)), workers)
    offsets = np.cumsum([0] + [out.n for out in outputs])  # type: ignore[misc]
    _raise_first_error(setting, outputs, offsets)
    rows: dict[int, list[VideoRows]] = {}
    for out, offset in zip(outputs, offsets):
        for v, r in out.rows.items():
            rows.setdefault(v, []).append(VideoRows(r.index + offset, r.iou, r.area))
    merged = {v: VideoRows(np.concatenate([r.index for r in rs]), np.concatenate([r.iou for r in rs]),
                           np.concatenate([r.area for r in rs])) for v, rs in rows.items()}
    return Scored(np.concatenate([out.video for out in outputs]), np.concatenate([out.score for out in outputs]),
                  np.concatenate([out.cat_rank for out in outputs]), merged)


def _raise_first_error(setting: Setting, outputs: list[PartOutput], offsets: np.ndarray) -> None:
    """Re-check the first bad result alone, with its index in the file, to raise its own message."""
    name = setting.source.name
    tops = [(int(off) + out.top_error[0], out.top_error[1]) for out, off in zip(outputs, offsets) if out.top_error]
    if tops:
        k, rec = min(tops, key=lambda e: e[0])
        parse_result(rec, name, k, setting.by_id)  # raises: the same check as in the part
        raise AutoQVISError(f"{name}: result {k}: rejected")  # only if the two checks ever disagreed
    masks = [(int(off) + out.mask_error[0], out.mask_error[1]) for out, off in zip(outputs, offsets) if out.mask_error]
    if masks:
        k, rec = min(masks, key=lambda e: e[0])
        res = parse_result(rec, name, k, setting.by_id)
        video = setting.by_id[res["video_id"]]
        check_track_masks(res["segmentations"], [video.height, video.width],  # raises, as in the part
                          result_location(name, k, video.id), full=True)  # full: scored results' runs are checked
        raise AutoQVISError(f"{result_location(name, k, video.id)}: segmentations: malformed")  # as above
