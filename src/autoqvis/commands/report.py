"""``autoqvis report DIR``: write DIR/report.html, a self-contained page to browse in a browser."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import AutoQVISError

DESCRIPTION = """\
Write DIR/report.html: one static page (no server, nothing loaded from the network; open it from disk)
for a folder written by autoqvis:

  selftrain run (DIR/round_k/...)   val metrics and pseudo-label counts per round, the plots; per unlabeled
                                    video the frames with each candidate pseudo-label track of the chosen
                                    round drawn, every frame marked selected/rejected with its Q = s*IoU, the
                                    track's Q over time; a tau slider that re-selects from the stored Q what
                                    a different tau would have kept (= `autoqvis select --tau T` on the
                                    round's detections.jsonl WITHOUT --previous: fusion with round k-1 is not
                                    redone; the fused training set at the run's tau is shown beside it)
  demo (DIR/run/, DIR/world/)       the same for the demo's run (written by `autoqvis demo` too)
  predict (DIR/results.json)        each video scrubbable frame by frame with its tracks and each track's
                                    predicted mask IoU (IoU^) over time (written by `autoqvis predict` too)

Frames are downscaled JPEGs (longest side --max-side); a run's frames are found through --unlabeled, or the
run's own index of a folder input, or its pseudo-label files.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="selftrain run, demo or predict output folder")
    parser.add_argument("--unlabeled", metavar="VIDEOS.json", help="the run's unlabeled videos (to draw their frames)")
    parser.add_argument("--out", metavar="HTML", help="write here instead of DIR/report.html")
    parser.add_argument("--max-videos", type=int, default=60, help="videos drawn (default %(default)s; counts cover all)")
    parser.add_argument("--max-frames", type=int, default=120,
                        help="predict: frames shown per video, evenly spaced (default %(default)s)")
    parser.add_argument("--max-side", type=int, default=320, help="longest side of the shown frames in pixels")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="predict: show tracks scoring at least this (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..viz.report_html import ReportOptions, write_report  # why: --help must not wait for torch
    for name in ("max_videos", "max_frames", "max_side"):
        if getattr(args, name) < 1:
            raise AutoQVISError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    opts = ReportOptions(max_side=args.max_side, max_videos=args.max_videos, max_frames=args.max_frames,
                         score_threshold=args.score_threshold)
    path = write_report(Path(args.dir), opts, unlabeled=args.unlabeled, out=args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0
