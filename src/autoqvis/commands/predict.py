"""``autoqvis predict``: segment and track instances in videos, frame folders or a YouTubeVIS json."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_open, atomic_write_json, staged_output

if TYPE_CHECKING:
    from ..data.inputs import InputVideo

DESCRIPTION = """\
Segment and track every object in your videos with a trained checkpoint.

--input is one video file (mp4, webm, ...), a folder of frames (jpg/png, natural order), a folder of
videos (and/or frame folders), or a YouTubeVIS json. Writes, into --out:
  results.json   YouTubeVIS results [{video_id, score, category_id, segmentations, pred_iou}], where pred_iou
                 is the predicted mask IoU of each frame (autoqvis's quality predictor; not the quality score
                 Q = score x pred_iou that self-training selects by). Files of older versions that call it
                 `quality` are still read by evaluate, visualize, report and convert-masks
  videos.json    a YouTubeVIS json describing the inputs (ids, sizes, frames), so that
                 `autoqvis evaluate` and `autoqvis visualize --videos DIR/videos.json` can use the results
  report.html    a page to open in a browser: each video scrubbable frame by frame with its instances
                 (as in the overlays) and each instance's predicted IoU over time (`autoqvis report`)
  overlays/      one mp4 per video: each instance its own colour and id, and "#id IoU^ 0.82" at the mask
                 centre: IoU^ = its predicted mask IoU in that frame
  Annotations/<video>/<frame>.png   with --save-masks png: DAVIS-layout palette PNGs, pixel value = the
                 instance's id in the overlays (1 = best score; 0 = background; overlaps go to the higher
                 score), read by DAVIS/VOS evaluation and annotation tools (`autoqvis convert-masks` turns
                 such a folder into YouTubeVIS json and back)
  masks/<video>.npz                 with --save-masks npz: the same label maps for numpy users: labels uint8
                 (T, H, W), ids, scores, pred_iou (n, T; NaN without quality predictor), frames (names)
Video ids are 1, 2, ... in name order (a YTVIS json keeps its own ids).

Long videos: the model sees the whole video in one pass unless it has more than 100 frames (fewer for frames
above 640x360: 25 at 1280x720); then it runs on windows of 36 frames (9 at 1280x720; --window N: of N
frames) sharing --overlap frames, and tracks are linked across
windows by mask IoU on the shared frames (Hungarian), so memory stays bounded however long the video is.
A track's score is the mean of its window scores; each frame's mask and predicted IoU come from the last window
that holds it.
Nothing is written unless every input and the checkpoint are readable.

Many videos on several GPUs: start it with torchrun (README "Scale out"); the videos are split over the
processes and rank 0 writes the same files as one process would.
"""

AUTO_WINDOW_ABOVE = 100  # frames of 640x360; longer videos are windowed even without --window
AUTO_WINDOW = 36  # frames of 640x360 per window then (the longest YouTubeVIS-2019 video)
AUTO_PIXELS = 640 * 360  # larger frames get proportionally fewer (masks are kept at the input size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="autoqvis .pt, detectron2 .pth, or hf://OWNER/REPO/FILE (Hugging Face hub, cached; "
                             "HF_HUB_OFFLINE=1 reads the cache only)")
    parser.add_argument("--input", required=True, metavar="IN", help="VIDEO | FRAMES_DIR | VIDEOS_DIR | YTVIS.json")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--fps", type=float, default=None, help="resample to this rate first (YouTubeVIS: 6)")
    parser.add_argument("--frames-fps", type=float, default=None, metavar="F",
                        help="rate of frame folders / YTVIS frames (needed to resample them with --fps)")
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="frames per window for long videos; 0 = whole video in one pass "
                             "(default: config input.test_window, else automatic above 100 frames)")
    parser.add_argument("--overlap", type=int, default=None, metavar="O",
                        help="frames shared by consecutive windows (default: config input.test_window_overlap)")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="drop instances scoring below this from results.json (default 0: keep the top-k, "
                             "as AP needs)")
    parser.add_argument("--overlay-threshold", type=float, default=0.5,
                        help="draw (and with --save-masks, save) only instances scoring at least this")
    parser.add_argument("--save-masks", action="append", choices=("png", "npz"), default=[],
                        help="also write the masks per frame: png = DAVIS layout OUT/Annotations/<video>/<frame>.png, "
                             "npz = OUT/masks/<video>.npz (repeat for both)")
    parser.add_argument("--config", default=None, metavar="CFG",
                        help="config (default: the one in the checkpoint, else inferred from its keys: R50 "
                             "VideoCutLER / AutoQ-VIS -> ytvis19_r50)")
    parser.add_argument("--no-overlays", action="store_true", help="skip the overlay videos")
    parser.add_argument("--no-report", action="store_true", help="skip report.html (the page to browse the results)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


# ------------------------------------------------------------------------------------------------- model
def window_for(info: Any, window: int | None, overlap: int | None, cfg) -> tuple[int, int]:
    """(window, overlap) for one video (``info``: its VideoInfo): ``--window`` if given (0 = whole video), else the
    config's ``input.test_window``, else automatic: the whole video up to AUTO_WINDOW_ABOVE frames, windows of
    AUTO_WINDOW frames above, both scaled down for frames larger than AUTO_PIXELS."""
    overlap = cfg.input.test_window_overlap if overlap is None else overlap
    if window is None:
        window = cfg.input.test_window
        if not window:
            scale = max(1.0, info.height * info.width / AUTO_PIXELS)
            if info.num_frames > AUTO_WINDOW_ABOVE / scale:
                window = max(2 * overlap + 1, round(AUTO_WINDOW / scale))
    if window > 0:
        from ..engine.windows import check_window  # why: --help must not wait for torch
        check_window(window, overlap)
    return window, overlap


# ------------------------------------------------------------------------------------------------ output
def check_out_dir(out: Path, inputs_path: Path) -> None:
    if out.exists() and not out.is_dir():
        raise AutoQVISError(f"{out}: --out must be a folder, a file of that name exists")
    if out.resolve() == inputs_path.resolve():
        raise AutoQVISError(f"{out}: --out must differ from --input")


def save_masks(stage: Path, video: InputVideo, shown: list[dict[str, Any]], formats: list[str]) -> None:
    """One video's instances (ids 1, 2, ... as in the overlays) as DAVIS PNGs and/or an npz of label maps."""
    from ..data.davis import MAX_ID, video_label_maps, write_davis_video  # why: --help must not wait for torch
    if len(shown) > MAX_ID:
        raise AutoQVISError(f"{video.name}: {len(shown)} instances to save, a palette PNG holds {MAX_ID}; "
                            "raise --overlay-threshold")
    info = video.reader.info
    labels = video_label_maps(shown, len(video.file_names), (info.height, info.width),
                              ids=range(1, len(shown) + 1))
    if "png" in formats:
        write_davis_video(stage / "Annotations", video.name, video.file_names, labels)
    if "npz" in formats:
        pred_iou = np.full((len(shown), len(video.file_names)), np.nan, np.float32)
        for i, r in enumerate(shown):
            if r.get("pred_iou") is not None:
                pred_iou[i] = r["pred_iou"]
        with atomic_open(stage / "masks" / f"{video.name}.npz") as f:
            np.savez_compressed(f, labels=labels, ids=np.arange(1, len(shown) + 1, dtype=np.int32),
                                scores=np.asarray([r["score"] for r in shown], np.float32), pred_iou=pred_iou,
                                frames=np.asarray(video.file_names))


# --------------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    from ..core import dist  # why: --help must not wait for torch
    with dist.launched(args.device) as device:
        return _run(args, device)


def _run(args: argparse.Namespace, device) -> int:
    from ..core import dist  # why: --help must not wait for torch
    from ..data.inputs import discover_inputs, videos_json  # why: --help must not wait for torch
    from ..engine.inference import predict_video_rle, results_from_prediction  # why: --help must not wait for torch
    from ..model.checkpoint import load_model  # why: --help must not wait for torch
    from ..viz.overlay import tracks_from_results, write_overlay  # why: --help must not wait for torch
    from ..viz.report_html import ReportOptions, write_report  # why: --help must not wait for torch
    for name in ("score_threshold", "overlay_threshold"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise AutoQVISError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    out = Path(args.out)
    check_out_dir(out, Path(args.input))
    inputs, image_root = discover_inputs(args.input, args.fps, args.frames_fps)
    model, cfg = load_model(args.checkpoint, args.config, device)
    main = dist.is_main_process()

    def predict_one(video: InputVideo) -> list[dict[str, Any]]:
        window, overlap = window_for(video.reader.info, args.window, args.overlap, cfg)
        run_cfg = replace(cfg, input=replace(cfg.input, test_window=window, test_window_overlap=overlap))
        mode = f"windows of {window}" if window else "one pass"
        with tqdm(total=len(video.reader), unit="frame", desc=f"{video.name} ({mode})", mininterval=1.0,
                  disable=not main) as bar:
            pred = predict_video_rle(model, iter(video.reader), run_cfg, on_frames=bar.update)
            bar.update(bar.total - bar.n)
        return [r for r in results_from_prediction(video.video_id, pred, cfg.inference.keep_empty_tracks)
                if r["score"] >= args.score_threshold]

    results: list[dict[str, Any]] = []
    # under torchrun the ranks share the videos; rank 0 alone stages and writes the outputs
    with staged_output(out) if main else contextlib.nullcontext() as stage:
        for video, found in dist.ordered_map(predict_one, inputs):
            results.extend(found)
            shown = [r for r in found if r["score"] >= args.overlay_threshold]
            if args.save_masks:
                save_masks(stage, video, shown, args.save_masks)
            if not args.no_overlays:
                write_overlay(stage / "overlays" / f"{video.name}.mp4", iter(video.reader),
                              tracks_from_results(shown), video.fps)
        if not main:
            return 0
        atomic_write_json(stage / "results.json", results)
        atomic_write_json(stage / "videos.json", videos_json(inputs, image_root))
        if not args.no_report:
            write_report(stage, ReportOptions(score_threshold=args.overlay_threshold), shown_as=out.resolve())
    print(f"{len(inputs)} video(s), {len(results)} instance(s) -> {out / 'results.json'}, {out / 'videos.json'}"
          + ("" if args.no_overlays else f", overlays in {out / 'overlays'}"))
    return 0
