"""``autoqvis select``: one round's pseudo-label selection from saved detections, without running the model."""

from __future__ import annotations

import argparse

from ..core.config import load_config
from ..core.errors import AutoQVISError
from ..data.ytvis import load_ytvis

DESCRIPTION = """\
The selection step of a self-training round on its own: the same code as `autoqvis selftrain` runs after
pseudo-labelling (autoqvis.selftrain.curate), so a tau sweep (paper Table 5) needs no model.

Per video, in the official code's order: spatiotemporal NMS on the raw tracks in file order (a track is
dropped if its mask IoU with an earlier kept track is >= nms_iou in any frame), then score >= S; per frame
Q = score * predicted IoU (float64) and selected = Q >= T or the mask is empty; a track is retained with
>= 2 selected non-empty frames. With --previous, the retained tracks are fused into the previous state: a new
track overlapping an old one (IoU >= 0.5 in a frame where both are non-empty) fuses with the FIRST such
track in the state's order (frame by frame: the new frame unless the old one is selected and the new one is
not); else it is appended. A video with no new track keeps its old ones. A frame is eligible when every
track of the video is selected there; a video trains only with >= 2 eligible frames.

DET.jsonl, one line per video (a round's OUT/round_k/detections.jsonl has this form):
  {"video_id": int, "detections": [{"score": float, "segmentations": [RLE or null per frame],
   "pred_iou": [float per frame]}, ...]}   the model's raw top-k, before NMS and the score filter
VIDEOS.json: YouTubeVIS json of the unlabeled videos (annotations ignored); masks must match its sizes.

PL.json: YouTubeVIS json holding the whole state: every video with a retained track (its record with
`eligible_frames`, the sorted frame indices it trains on, [] when fewer than 2) and every track over ALL
frames (`segmentations` null where empty, `selected` 0/1 per frame, `score`, `pred_iou`, `quality`). It is
the training set `autoqvis selftrain` trains on, and the --previous of the next round.

The numbers come from --config (selftrain.score_threshold, nms_iou, tau, fusion_iou, fusion_match,
min_selected_frames, min_eligible_frames; default config ytvis19_r50: 0.25, 0.5, 0.75, 0.5, first, 2, 2),
--tau / --score-threshold and key=value overrides.

examples:
  autoqvis select --detections run/round_0/detections.jsonl --unlabeled ytvis/train.json --out pl_r0.json
  autoqvis select --detections run/round_1/detections.jsonl --unlabeled ytvis/train.json \\
      --previous pl_r0.json --tau 0.7 --out pl_r1.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detections", required=True, metavar="DET.jsonl", help="raw detections, one line per video")
    parser.add_argument("--unlabeled", required=True, metavar="VIDEOS.json", help="YouTubeVIS json of the unlabeled videos")
    parser.add_argument("--out", required=True, metavar="PL.json", help="the pseudo-label training set to write (atomic)")
    parser.add_argument("--previous", metavar="PREV_PL.json", help="the previous round's PL.json to fuse with")
    parser.add_argument("--tau", type=float, help="quality threshold: a frame is selected at Q >= tau (default "
                                                  "selftrain.tau; tau_without_quality with selftrain.use_quality_predictor=false)")
    parser.add_argument("--score-threshold", type=float, help="drop tracks with score < S after NMS (default "
                                                              "selftrain.score_threshold, 0.25)")
    parser.add_argument("--config", default="ytvis19_r50", help="config YAML for the selftrain.* numbers (a path or "
                                                                "a packaged name; default ytvis19_r50)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. selftrain.fusion_match=best_iou")


def run(args: argparse.Namespace) -> int:
    from ..selftrain.curate import (  # why: --help must not wait for scipy.stats
        SelectionRule, read_training_set, round_tau, select_round, set_tau, training_set_counts, write_training_set)
    from ..selftrain.pseudo_label import iter_detection_file  # why: --help must not wait for scipy.stats
    cfg = load_config(args.config, args.overrides)
    st = cfg.selftrain
    if args.tau is not None:
        set_tau(st, args.tau)
    if args.score_threshold is not None:
        if not 0.0 <= args.score_threshold <= 1.0:
            raise AutoQVISError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
        st.score_threshold = args.score_threshold
    rule = SelectionRule.from_config(cfg)
    unlabeled = load_ytvis(args.unlabeled)
    previous = read_training_set(args.previous, unlabeled=unlabeled)[1] if args.previous else {}
    videos = {v.id: v for v in unlabeled.videos}
    rule = round_tau(iter_detection_file(args.detections, videos), rule)  # tau from Q's quantile, if asked
    labels = select_round(iter_detection_file(args.detections, videos), previous, rule)
    write_training_set(labels.state, unlabeled, args.out, rule,
                       f"autoqvis select: {args.detections}" + (f" fused with {args.previous}" if args.previous else ""))
    c, ts = labels.counts, training_set_counts(labels.state, rule.min_eligible_frames)
    print(f"{c['videos']} videos: {c['tracks_before_nms']} tracks, {c['tracks_after_nms']} after NMS, "
          f"{c['tracks_after_score_filter']} with score >= {rule.score_threshold}, {c['retained']} retained at "
          f"tau {rule.tau}")
    print(f"training set: {ts['tracks']} tracks in {ts['videos']} videos, "
          f"{ts['eligible_videos']} videos with {ts['eligible_frames']} eligible frames -> {args.out}")
    return 0
