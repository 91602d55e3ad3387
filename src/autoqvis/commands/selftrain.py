"""``autoqvis selftrain``: multi-round quality-guided self-training on unlabeled videos (AutoQ-VIS)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.config import load_config
from ..core.errors import AutoQVISError
from ..core.fileio import read_json
from ..data.ytvis import load_ytvis

DESCRIPTION = """\
AutoQ-VIS self-training (paper Sec. 3.2-3.4, supplement 6.1-6.2). Round 0 pseudo-labels the unlabeled
videos with the initial-stage model (--init, or the initial stage trained first into OUT/init/ on
--synthetic). Each round k = 1..K then resets the VIS model to the initial weights, freezes the quality
predictor, trains with DropLoss on batches drawn whole from the synthetic clips or the pseudo-labelled
clips (50/50), pseudo-labels again and fuses the new labels with the old ones.

Pseudo-labelling per video: top-10 tracks, spatiotemporal NMS in the model's order (a track is dropped
if its mask IoU with an earlier kept track is >= 0.5 in any frame, eq. 17-18), then score >= 0.25 (eq. 16),
quality
Q^t = s * predicted IoU^t (eq. 20), S^t = Q^t >= tau (eq. 21; a frame where the track is absent counts as
selected). A track is kept with at least selftrain.min_selected_frames = 2 selected non-empty frames
(the authors' code; eq. 22 of the paper asks for 1). Fusion (eq. 4-13): a new detection overlapping an
existing one (IoU >= 0.5 in a frame) is fused frame by frame, taking the old mask only where the old one
is selected and the new one is not; overlapping several, it fuses with the first one in the set's order
(selftrain.fusion_match=best_iou: the highest-IoU one); otherwise it is added. Training clips sample 3
frames among a video's eligible frames (every track selected, eq. 14; a video needs 2 of them). The
selection is `autoqvis select`'s code: it re-selects from OUT/round_k/detections.jsonl (e.g. another tau).

Writes OUT/round_k/{detections.jsonl, pseudo_labels.json, stats.json, model.pt, metrics.json (--val),
analysis.json (--unlabeled-gt)}; round_0 holds the initial model's labels. The result is OUT/round_K/model.pt,
or with --val and selftrain.keep_best (on in the paper presets, as the official model_best) the round of
highest val AP50; OUT/summary.json names the last and the best round with their metrics.
--resume continues an interrupted run at its last finished step (mid-training and mid-labelling too).

ablations (paper Table 3): --no-quality-predictor (Q = s, tau 0.85), --no-droploss, --no-reset,
--no-fusion (new labels replace the old ones), --no-freeze (train the predictor jointly).

examples:
  autoqvis toyworld --out toy
  autoqvis selftrain --config toy --synthetic toy/source.json --unlabeled toy/train.json \\
      --val toy/val.json --unlabeled-gt toy/train_gt.json --out st
  autoqvis selftrain --config ytvis19_r50 --synthetic synth.json --unlabeled ytvis/train.json \\
      --init autoqvis_init.pt --val ytvis/valid_gt.json --out st       # the paper's setting
  autoqvis selftrain --config ytvis19_r50_plus ...   # NOT the paper: its selection and rounds improved (README)
  autoqvis selftrain ... --rounds 3 --tau 0.5 --max-iters 200 --max-videos 10   # quick trials

Several GPUs or nodes: start it with torchrun (README "Scale out"); training is data-parallel (the batch
sizes are per process), labelling and validation split the videos, rank 0 writes every file (the same files
as one process writes for the same weights). --out must be on a file system all nodes see.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config YAML (a path or a packaged name: toy, ytvis19_r50, uvo_dense_r50; "
                        "ytvis19_r50_plus / toy_plus: beyond the paper)")
    parser.add_argument("--synthetic", required=True, help="COCO json of stills + masks, or YouTubeVIS json of synthetic videos")
    parser.add_argument("--unlabeled", required=True, metavar="U.json|VIDEO_DIR",
                        help="YouTubeVIS json of the unlabeled videos, or a folder of video files / frame folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--init", help="initial-stage weights (our .pt, a detectron2 .pth, or hf://OWNER/REPO/FILE from the "
                             "Hugging Face hub); default: train them first")
    parser.add_argument("--val", help="YouTubeVIS json with ground truth: evaluate every round's model")
    parser.add_argument("--unlabeled-gt", help="ground truth of the unlabeled videos, for the analysis only (Fig. 5-7)")
    parser.add_argument("--rounds", type=int, help="self-training rounds K (default selftrain.rounds = 2)")
    parser.add_argument("--tau", type=float, help="quality threshold of eq. 21 (default: the config's selftrain.tau, 0.75 in ytvis19_r50, 0.8 in toy; 0.85 with --no-quality-predictor)")
    parser.add_argument("--max-iters", type=int, help="iterations of the initial stage and of each round (quick trials)")
    parser.add_argument("--max-videos", type=int, help="pseudo-label only the first N unlabeled videos (quick trials)")
    parser.add_argument("--fps", type=float, help="with VIDEO_DIR: sample video files at this rate (default: every frame)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-quality-predictor", action="store_true", help="ablation: Q = class score, tau 0.85")
    parser.add_argument("--no-fusion", action="store_true", help="ablation: replace old labels instead of fusing")
    parser.add_argument("--no-reset", action="store_true", help="ablation: keep training the last round's model")
    parser.add_argument("--no-freeze", action="store_true", help="ablation: train the quality predictor in the rounds")
    parser.add_argument("--no-droploss", action="store_true", help="ablation: the vanilla mask loss in the rounds")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu; under torchrun: "
                                          "the process's own GPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. selftrain.lr=1e-4")


def build_config(args: argparse.Namespace):
    """The config with the command-line switches applied (they are part of the saved config)."""
    cfg = load_config(args.config, args.overrides)
    st = cfg.selftrain
    if args.rounds is not None:
        if args.rounds < 0:
            raise AutoQVISError(f"--rounds must be >= 0, got {args.rounds}")
        st.rounds = args.rounds
    if args.max_iters is not None:
        if args.max_iters < 1:
            raise AutoQVISError(f"--max-iters must be >= 1, got {args.max_iters}")
        cfg.train.max_iter = st.max_iter = args.max_iters
    st.use_quality_predictor = st.use_quality_predictor and not args.no_quality_predictor
    st.fusion = st.fusion and not args.no_fusion
    st.reset = st.reset and not args.no_reset
    st.freeze_predictor = st.freeze_predictor and not args.no_freeze
    st.drop_loss = st.drop_loss and not args.no_droploss
    if args.tau is not None:
        from ..selftrain.curate import set_tau  # why: --help must not wait for torch
        set_tau(st, args.tau)
    if args.max_videos is not None and args.max_videos < 1:
        raise AutoQVISError(f"--max-videos must be >= 1, got {args.max_videos}")
    return cfg


def _check_same_videos(unlabeled, gt, video_ids) -> None:
    for vid in video_ids:
        v = unlabeled.video(vid)
        try:
            g = gt.video(vid)
        except AutoQVISError:
            raise AutoQVISError(f"{gt.name}: has no video {vid} of {unlabeled.name}; --unlabeled-gt must be the "
                                "ground truth of the unlabeled videos") from None
        if (g.length, g.height, g.width) != (v.length, v.height, v.width):
            raise AutoQVISError(f"{gt.name}: video {vid} is {g.length} frames of {g.width}x{g.height}, "
                                f"the unlabeled one {v.length} of {v.width}x{v.height}")


def run(args: argparse.Namespace) -> int:
    from ..core import dist  # why: --help must not wait for torch
    with dist.launched(args.device):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..core import dist  # why: --help must not wait for torch
    from ..data.dataset import SyntheticClips  # why: --help must not wait for torch
    from ..data.inputs import unlabeled_from_folder  # why: --help must not wait for torch
    from ..model.checkpoint import read_checkpoint, resolve_checkpoint  # why: --help must not wait for torch
    from ..selftrain.loop import SelfTrainInputs, run_selftrain, summary_rows  # why: --help must not wait for torch
    cfg = build_config(args)
    out = Path(args.out)
    src = Path(args.unlabeled)
    if not src.exists():
        raise AutoQVISError(f"{src}: --unlabeled not found (a YouTubeVIS json or a folder of videos)")
    if args.init:
        args.init = str(resolve_checkpoint(args.init))
    for name in ("synthetic", "init"):
        p = getattr(args, name)
        if p is not None and not Path(p).exists():
            raise AutoQVISError(f"{p}: --{name} not found")
    # read every input before anything is written or trained, so a bad file fails in seconds and leaves --out
    # as it was (the synthetic set and the weights are read again where they are used)
    SyntheticClips(Path(args.synthetic), cfg)
    if args.init:
        read_checkpoint(args.init)
    val = load_ytvis(args.val) if args.val else None
    gt = load_ytvis(args.unlabeled_gt) if args.unlabeled_gt else None
    if src.is_dir():
        # rank 0 decodes the videos into frames; the others then read its index
        unlabeled = unlabeled_from_folder(src, out / "unlabeled", args.fps) if dist.is_main_process() else None
        dist.barrier()
        unlabeled = unlabeled or unlabeled_from_folder(src, out / "unlabeled", args.fps)
    else:
        unlabeled = load_ytvis(src)
    if gt is not None:
        ids = [v.id for v in unlabeled.videos][: args.max_videos or None]
        _check_same_videos(unlabeled, gt, ids)
    inputs = SelfTrainInputs(synthetic=Path(args.synthetic), unlabeled=unlabeled,
                             init=Path(args.init) if args.init else None, val=val, unlabeled_gt=gt,
                             max_videos=args.max_videos)
    final = run_selftrain(cfg, inputs, out, resume=args.resume, progress=not args.no_progress)
    if not dist.is_main_process():
        return 0
    print(f"final model: {final}")
    summary = out / "summary.json"
    if summary.exists():
        for row in summary_rows(read_json(summary, "summary")):
            line = f"round {row['round']}: {row['training_set_tracks']} pseudo-label tracks, {row['eligible_videos']} eligible videos"
            if "val" in row:
                line += f"; val AP50 {100 * row['val']['AP50']:.1f} AP {100 * row['val']['AP']:.1f}"
            print(line)
    return 0
