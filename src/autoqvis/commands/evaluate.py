"""``autoqvis evaluate``: class-agnostic YouTubeVIS AP/AR of a results json against ground truth."""

from __future__ import annotations

import argparse

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json
from ..eval.ytvis_eval import evaluate, format_summary

DESCRIPTION = """\
Class-agnostic YouTubeVIS evaluation, the official ytvoseval definitions with useCats=0
(the protocol of VideoCutLER and AutoQ-VIS): video IoU summed over frames, IoU 0.50:0.95,
maxDets 1/10/100, area ranges small <= 128^2 <= medium <= 256^2 <= large (closed).

Prints the 12-line table and, with --out, writes {AP, AP50, AP75, APs, APm, APl, AR1, AR10,
AR100, ARs, ARm, ARl} as a flat json of fractions (-1: no ground truth in that area range).
Inputs the official code accepts by accident are rejected: a segmentation list shorter than
the video, masks of another size than the video, GT annotation id 0. See docs/evaluation.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, metavar="GT.json", help="YouTubeVIS json with ground truth")
    parser.add_argument("--results", required=True, metavar="R.json",
                        help="results list [{video_id, score, category_id, segmentations}]")
    parser.add_argument("--out", metavar="M.json", help="write the 12 metrics here (atomic)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes for the per-video IoU and matching (default: min(2, CPUs))")
    parser.add_argument("--check-masks", action="store_true",
                        help="also decode the masks of the results that are not scored (beyond a video's "
                             "first 100, or of other categories) to check that their runs cover the frame "
                             "(always done for the ground truth and the scored results)")


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise AutoQVISError(f"--workers must be >= 1, got {args.workers}")
    stats = evaluate(args.gt, args.results, workers=args.workers, check_masks=args.check_masks)  # GT checked once
    print("\n".join(format_summary(stats)))
    if args.out:
        atomic_write_json(args.out, stats, indent=2)
        print(f"metrics written to {args.out}")
    return 0
