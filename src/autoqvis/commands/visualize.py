"""``autoqvis visualize``: overlay videos for any YouTubeVIS results file (ours or another method's)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..core.errors import AutoQVISError
from ..core.fileio import staged_output
from ..data.inputs import DEFAULT_FPS, discover_inputs, safe_name, videos_json
from ..data.video_io import VideoReader
from ..data.ytvis import load_results, load_ytvis
from ..viz.overlay import tracks_from_annotations, tracks_from_results, write_overlay

DESCRIPTION = """\
Draw a results file on its videos: each instance its own colour and id (#1, #2, ... in file order per
video), its mask tinted and outlined, and -- for autoqvis results -- "#id IoU^ 0.82" at the mask centre:
IoU^ = its predicted mask IoU in that frame (`pred_iou`; `quality` in files of older versions). With --gt, the ground truth is drawn in a second panel on the right.

--videos is the YouTubeVIS json the results refer to (e.g. the val json, or the videos.json that
`autoqvis predict` wrote), or a video file / frame folder / folder of videos, numbered 1, 2, ... in
name order as `autoqvis predict` numbers them (pass the same --fps).
Writes DIR/<video id>_<name>.mp4 (and/or .gif).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, metavar="R.json", help="YouTubeVIS results list")
    parser.add_argument("--videos", required=True, metavar="VIDEOS",
                        help="YTVIS.json | VIDEO | FRAMES_DIR | VIDEOS_DIR the results refer to")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--gt", default=None, metavar="GT.json", help="ground truth to draw beside the prediction")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="draw instances scoring at least this")
    parser.add_argument("--max-videos", type=int, default=None, metavar="N", help="only the first N videos (by id)")
    parser.add_argument("--format", choices=("mp4", "gif", "both"), default="mp4",
                        help="mp4 (default) and/or gif (gifs are held in memory: keep them short)")
    parser.add_argument("--fps", type=float, default=None,
                        help="with a video/folder --videos: the --fps given to `autoqvis predict`")
    parser.add_argument("--frames-fps", type=float, default=None, metavar="F",
                        help="rate of frame folders (with --fps; as for `autoqvis predict`)")


def ytvis_videos(path: Path) -> Any:
    """A YTVIS json whose ``image_root`` extra key (written by `autoqvis predict`) wins over the usual
    <json dir>/JPEGImages or <json dir>."""
    dataset = load_ytvis(path)
    if isinstance(dataset.extra.get("image_root"), str):
        root = Path(dataset.extra["image_root"])
        dataset.image_root = root if root.is_absolute() else path.parent / root
    return dataset


def frame_reader(dataset: Any, video: Any) -> Any:
    """A VideoReader over one video of ``dataset``: decoded again from its ``source`` file at its ``fps`` when
    `autoqvis predict` read it from a video file, else its frame files under the image root."""
    if isinstance(video.extra.get("source"), str):
        return VideoReader(video.extra["source"], fps=video.extra.get("fps"))
    return VideoReader([dataset.frame_path(video, t) for t in range(video.length)])


def folder_videos(path: Path, fps: float | None, frames_fps: float | None) -> tuple[Any, dict[int, Any]]:
    """(dataset, readers) for a video file / frame folder / folder of videos, numbered as `autoqvis predict` does."""
    inputs, root = discover_inputs(path, fps, frames_fps)
    return load_ytvis(videos_json(inputs, root)), {v.video_id: v.reader for v in inputs}


def check_gt_video(gt: Any, video: Any, where: str) -> None:
    other = gt.video(video.id)
    if (other.length, other.height, other.width) != (video.length, video.height, video.width):
        raise AutoQVISError(
            f"{where}: video {video.id} has {other.length} frames of {other.width}x{other.height}, the videos have "
            f"{video.length} of {video.width}x{video.height}"
        )


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.score_threshold <= 1.0:
        raise AutoQVISError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.max_videos is not None and args.max_videos < 1:
        raise AutoQVISError(f"--max-videos must be >= 1, got {args.max_videos}")
    videos_path = Path(args.videos)
    if videos_path.suffix.lower() == ".json":
        dataset, readers = ytvis_videos(videos_path), {}
    else:
        dataset, readers = folder_videos(videos_path, args.fps, args.frames_fps)
    results = load_results(args.results, dataset)
    gt = load_ytvis(args.gt) if args.gt else None
    chosen = sorted(dataset.videos, key=lambda v: v.id)[: args.max_videos]
    for v in chosen:  # probe every chosen video before writing anything
        if v.id not in readers:
            readers[v.id] = frame_reader(dataset, v)
        if len(readers[v.id]) != v.length:
            raise AutoQVISError(f"{args.videos}: video {v.id} lists {v.length} frames but its source yields "
                                f"{len(readers[v.id])} (another --fps?)")
        if gt is not None:
            check_gt_video(gt, v, args.gt)
    suffixes = {"mp4": [".mp4"], "gif": [".gif"], "both": [".mp4", ".gif"]}[args.format]
    out, written = Path(args.out), 0
    with staged_output(out) as stage:
        for v in tqdm(chosen, desc="visualize", unit="video", mininterval=1.0):
            mine = [r for r in results if r["video_id"] == v.id and r["score"] >= args.score_threshold]
            gt_tracks = tracks_from_annotations(gt.annotations_of(v.id)) if gt is not None else None
            name = safe_name(v.extra.get("name") or Path(v.file_names[0]).parent.name or f"video_{v.id}")
            for suffix in suffixes:
                write_overlay(stage / f"{v.id:04d}_{name}{suffix}", iter(readers[v.id]), tracks_from_results(mine),
                              readers[v.id].info.fps or DEFAULT_FPS, gt_tracks)
                written += 1
    print(f"{written} overlay file(s) of {len(chosen)} video(s) in {out}")
    return 0
