"""``autoqvis synth``: export ImageCut2Video clips of COCO stills as a YouTubeVIS synthetic video set."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..core.config import load_config
from ..core.errors import AutoQVISError
from ..core.fileio import staged_output
from ..core.tracks import encode_masks, rle_areas, rle_bboxes
from ..data.coco import load_coco
from ..data.video_io import write_image
from ..data.ytvis import Annotation, Video, YTVISDataset, save_ytvis

DESCRIPTION = """\
Turn still images and their instance masks (COCO json, e.g. CutLER's ImageNet pseudo-labels) into
synthetic training videos with VideoCutLER's ImageCut2Video: per-frame crop, brightness, contrast and
rotation, a clip-wide resize and flip, and copy-paste of another image's instances.

Writes OUT/JPEGImages/<video>/<t>.jpg and OUT/synthetic.json (YouTubeVIS, one class-agnostic
category; an instance absent from a frame has a null segmentation there). A seed fixes every clip.
Training can also make these clips on the fly: pass the COCO json itself as --synthetic.
"""

FRAME_TEMPLATE = "{t:05d}.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="DIR", help="folder the COCO file_names are relative to")
    parser.add_argument("--annotations", required=True, metavar="COCO.json", help="COCO json of the stills' masks")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--clips-per-image", type=int, default=1, metavar="N",
                        help="clips made of each image (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--config", default=None, metavar="CFG",
                        help="config whose synth section to use (a path or a packaged name; default: the paper's)")
    parser.add_argument("--frames", type=int, default=None, metavar="T",
                        help="frames per clip (default synth.num_frames)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="only the first N images (quick looks)")
    parser.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG quality 1..100 (default 95)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. synth.min_size=[96]")


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (("--clips-per-image", args.clips_per_image, 1), ("--seed", args.seed, 0),
                             ("--frames", args.frames, 1), ("--max-images", args.max_images, 1),
                             ("--jpeg-quality", args.jpeg_quality, 1)):
        if value is not None and value < low:
            raise AutoQVISError(f"{flag} must be >= {low}, got {value}")
    if args.jpeg_quality > 100:
        raise AutoQVISError(f"--jpeg-quality must be <= 100, got {args.jpeg_quality}")
    cfg = load_config(args.config, args.overrides)
    if args.frames is not None:
        cfg.synth.num_frames = args.frames
    coco = load_coco(args.annotations, image_root=args.images)
    image_ids = [im.id for im in coco.images][: args.max_images]
    missing = [coco.image_path(i) for i in image_ids if not coco.image_path(i).is_file()]
    if missing:
        raise AutoQVISError(f"{missing[0]}: image file not found ({len(missing)} of {len(image_ids)} missing)")
    out = Path(args.out)
    with staged_output(out) as stage:  # a failure half-way (an unreadable image) leaves nothing in --out
        dataset = export_synthetic(coco, image_ids, cfg.synth, stage, args.clips_per_image, args.seed,
                                   args.jpeg_quality, progress=not args.no_progress)
    print(f"autoqvis synth: {len(dataset.videos)} videos, {len(dataset.annotations)} instance tracks "
          f"-> {out / 'synthetic.json'} (frames under {out / 'JPEGImages'})")
    return 0


def export_synthetic(coco: Any, image_ids: list[int], synth_cfg: Any, out: Path, clips_per_image: int, seed: int,
                     jpeg_quality: int = 95, progress: bool = True) -> Any:
    """Render ``clips_per_image`` clips of each image, write their frames, then ``out/synthetic.json``.

    Clip k of image number i draws from ``numpy.random.default_rng([seed, i, k])``; its copy-paste
    partner is another image of the set (one with masks), chosen by the same generator.
    Returns the written YTVISDataset.
    """
    from ..data.synth import ImageCut2Video  # why: --help must not wait for torch
    generator = ImageCut2Video(synth_cfg)
    with_masks = [i for i in image_ids if coco.annotations_of(i, include_crowd=False)]
    position = {image_id: p for p, image_id in enumerate(with_masks)}
    videos: list[Video] = []
    annotations: list[Annotation] = []
    jobs = [(n, image_id, k) for n, image_id in enumerate(image_ids) for k in range(clips_per_image)]
    for n, image_id, k in tqdm(jobs, desc="synth", unit="clip", disable=not progress, mininterval=1.0):
        rng = np.random.default_rng([seed, n, k])
        partner = _pick_partner(with_masks, position.get(image_id), rng) if synth_cfg.copy_paste else None
        paste = (coco.read_image(partner), coco.masks(partner)) if partner is not None else None
        frames, masks = generator(coco.read_image(image_id), coco.masks(image_id), rng, paste=paste)
        video_id = len(videos) + 1
        folder = f"{_stem(coco.image(image_id).file_name)}_{image_id}_{k}"
        names = [f"{folder}/{FRAME_TEMPLATE.format(t=t)}" for t in range(len(frames))]
        for frame, name in zip(frames, names):
            write_image(out / "JPEGImages" / name, frame, quality=jpeg_quality)
        extra = {"source_image_id": image_id, "paste_image_id": partner}
        videos.append(Video(video_id, names, frames.shape[1], frames.shape[2], extra))
        for tube in masks:
            rles = [rle if tube[t].any() else None for t, rle in enumerate(encode_masks(tube))]
            annotations.append(Annotation(len(annotations) + 1, video_id, 1, rles, rle_areas(rles),
                                          rle_bboxes(rles), 0))
    dataset = YTVISDataset(videos, annotations, [{"id": 1, "name": "object", "supercategory": "object"}],
                           out / "JPEGImages", out / "synthetic.json",
                           {"info": {"description": "autoqvis synth: ImageCut2Video clips", "seed": seed,
                                     "clips_per_image": clips_per_image}})
    save_ytvis(dataset, out / "synthetic.json")
    return dataset


def _pick_partner(with_masks: list[int], own_position: int | None, rng: Any) -> int | None:
    """A random image id from ``with_masks`` other than the one at ``own_position``; None if there is none."""
    choices = len(with_masks) - (own_position is not None)
    if choices <= 0:
        return None
    j = int(rng.integers(choices))
    return with_masks[j + (own_position is not None and j >= own_position)]


def _stem(file_name: str) -> str:
    """The file's name without folders and suffix, reduced to characters safe in a folder name."""
    stem = file_name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "image"
