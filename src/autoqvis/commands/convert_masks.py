"""``autoqvis convert-masks IN OUT``: DAVIS-style PNG label folders <-> YouTubeVIS json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, staged_output
from ..data.davis import MAX_ID, read_davis_folder, track_ids, video_folder_name, video_label_maps, write_davis_video
from ..data.ytvis import load_results, load_ytvis

DESCRIPTION = """\
Convert instance masks between the two layouts other tools read (this converts masks; `convert-checkpoint`
converts model weights).

  IN = a DAVIS-style folder Annotations/<video>/<frame>.png (palette or grayscale PNGs, pixel value =
       object id, 0 = background)  ->  OUT = a YouTubeVIS json in ground-truth form: one video per folder
       (ids 1, 2, ... in name order; file_names <video>/<frame>.jpg, as DAVIS's JPEGImages), one annotation
       per object id (kept as davis_id). `autoqvis evaluate --gt OUT` scores results against your labels.
  IN = a YouTubeVIS json with annotations  ->  OUT = such a PNG folder (OUT/<video>/<frame>.png; the
       annotations' davis_id as pixel value when they have one, else 1, 2, ... in file order).
  IN = a results json (a list, e.g. `autoqvis predict`'s results.json) with --videos VIDEOS.json  ->  OUT =
       a PNG folder; ids 1, 2, ... best score first (as in predict's overlays), overlaps go to the higher
       score, instances below --score-threshold left out.
PNG -> json -> PNG gives back the same pixels. Nothing is written unless every input is readable.

examples:
  autoqvis convert-masks DAVIS/Annotations/480p my_gt.json
  autoqvis evaluate --gt my_gt.json --results pred/results.json
  autoqvis convert-masks pred/results.json pred_png --videos pred/videos.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="Annotations folder, YouTubeVIS json, or results json")
    parser.add_argument("output", metavar="OUT", help="json (from a folder) or folder (from a json)")
    parser.add_argument("--videos", metavar="VIDEOS.json", help="the videos of a results json (YouTubeVIS json)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="results only: leave out instances scoring below this (default %(default)s)")
    parser.add_argument("--image-ext", default=".jpg", help="frame extension in file_names of the json (default .jpg)")


def run(args: argparse.Namespace) -> int:
    src, out = Path(args.input), Path(args.output)
    if not src.exists():
        raise AutoQVISError(f"{src}: not found")
    if src.is_dir():
        data = read_davis_folder(src, args.image_ext)
        load_ytvis(data)  # the json we write must be one `evaluate --gt` reads
        atomic_write_json(out, data)
        print(f"{len(data['videos'])} video(s), {len(data['annotations'])} object(s) -> {out}")
        return 0
    if args.videos:
        videos = load_ytvis(args.videos)
        results = [r for r in load_results(src, videos) if r["score"] >= args.score_threshold]
        tracks = {v.id: [] for v in videos.videos}
        for r in sorted(results, key=lambda r: -r["score"]):
            tracks[r["video_id"]].append(r)
        ids_from_order = True
    else:
        if _first_char(src) == "[":
            raise AutoQVISError(f"{src}: a results list; pass --videos VIDEOS.json (e.g. predict's videos.json)")
        videos = load_ytvis(src)
        if not videos.annotations:
            raise AutoQVISError(f"{src}: holds no annotations (a results list needs --videos VIDEOS.json)")
        tracks = {v.id: [{"segmentations": a.segmentations, **a.extra} for a in videos.annotations_of(v.id)]
                  for v in videos.videos}
        ids_from_order = False
    n = write_png_folder(videos, tracks, out, ids_from_order)
    print(f"{len(videos.videos)} video(s), {n} object(s) -> {out}/<video>/<frame>.png")
    return 0


def _first_char(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")[:1]


def write_png_folder(videos, tracks: dict[int, list[dict]], out: Path, ids_from_order: bool) -> int:
    """Every video's label maps under ``out`` (staged: all or nothing); returns the number of tracks drawn."""
    if out.exists() and not out.is_dir():
        raise AutoQVISError(f"{out}: a file of that name exists; OUT must be a folder for PNGs")
    names = [video_folder_name(v) for v in videos.videos]
    if len(set(names)) != len(names):
        raise AutoQVISError(f"{videos.name}: two videos share a folder name; give the video records distinct 'name's")
    count = 0
    with staged_output(out) as stage:
        for v, name in zip(videos.videos, names):
            found = tracks.get(v.id, [])
            if len(found) > MAX_ID:
                raise AutoQVISError(f"{videos.name}: video {v.id} has {len(found)} objects, a palette PNG holds {MAX_ID}")
            ids = list(range(1, len(found) + 1)) if ids_from_order else track_ids(found)
            labels = video_label_maps(found, v.length, (v.height, v.width), ids=ids)
            write_davis_video(stage, name, v.file_names, labels)
            count += len(found)
    return count
