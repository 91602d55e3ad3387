"""Instance overlays as in the paper's Fig. 3: each track its own colour, its mask blended and outlined, and
"#id" and the number it shows written at the mask's centre, named: ``"#3 IoU^ 0.82"`` (the quality predictor's
mask IoU of the frame, ``autoqvis predict`` / ``visualize``) or ``"#3 Q 0.61"`` (Q = s * IoU^, eq. 20, the demo);
optionally a ground-truth panel beside the prediction.

Small frames are scaled up (shortest side >= ``min_side``) before any text is drawn so labels stay legible.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..core.errors import AutoQVISError
from ..core.tracks import decode_rle
from ..data.video_io import write_gif, write_mp4

GOLDEN = 0.618033988749895  # hue step: consecutive ids get far-apart hues
PRED_IOU_LABEL = "IoU^"  # the quality predictor's per-frame mask IoU (results' ``pred_iou``)
QUALITY_LABEL = "Q"  # Q^t = s * IoU^t (eq. 20; pseudo-labels' ``quality``)


@dataclass
class OverlayTrack:
    """One instance to draw: ``segmentations`` is a list over frames of compressed COCO RLE or None (as
    ``autoqvis.data.ytvis.load_results`` returns them); ``values`` (optional) is a list over frames of floats in
    [0, 1], written beside the id after ``value_name`` (``PRED_IOU_LABEL`` or ``QUALITY_LABEL``)."""

    track_id: int
    segmentations: Sequence[dict | None]
    values: Sequence[float | None] | None = None
    value_name: str = PRED_IOU_LABEL


def instance_color(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour that depends only on ``track_id`` (stable across frames, videos and runs)."""
    hue = (0.1 + track_id * GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def display_scale(height: int, width: int, min_side: int = 256) -> int:
    """Integer up-scaling factor so that the shortest side reaches ``min_side`` (1 for frames already that big)."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


@lru_cache(maxsize=16)
def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font (no download); scalable when Pillow has FreeType, else the fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def upscale(frame: np.ndarray, masks: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Enlarge ``frame`` uint8 (H, W, 3) (bilinear) and ``masks`` bool (n, H, W) (nearest) by ``factor``."""
    if factor == 1:
        return frame, masks
    h, w = frame.shape[:2]
    big = np.asarray(Image.fromarray(frame).resize((w * factor, h * factor), Image.BILINEAR))
    big_masks = masks.repeat(factor, axis=1).repeat(factor, axis=2)
    return big, big_masks


def label_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) where to write the label of ``mask`` bool (H, W): its centroid, or the mask pixel nearest to the
    centroid when the centroid lies outside (e.g. a ring). None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    cx, cy = xs.mean(), ys.mean()
    if mask[int(round(cy)), int(round(cx))]:
        return int(round(cx)), int(round(cy))
    i = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return int(xs[i]), int(ys[i])


def top_instance(masks: np.ndarray) -> np.ndarray:
    """int (H, W): index of the last mask of ``masks`` bool (n, H, W) covering each pixel (later masks are drawn
    over earlier ones), -1 where none does."""
    if len(masks) == 0:
        return np.full(masks.shape[1:], -1, np.int32)
    last = len(masks) - 1 - np.argmax(masks[::-1], axis=0).astype(np.int32)
    return np.where(masks.any(axis=0), last, -1)


def blend_masks(
    frame: np.ndarray, top: np.ndarray, colors: Sequence[tuple[int, int, int]], alpha: float, thickness: int
) -> np.ndarray:
    """Tint each pixel of ``frame`` uint8 (H, W, 3) with the colour of its top instance ``top`` int (H, W) (see
    ``top_instance``; -1: none), and draw each visible region's outline (``thickness`` px, inside it) opaque.
    Returns uint8 (H, W, 3)."""
    covered = top >= 0
    if not covered.any():
        return frame.copy()
    lut = np.asarray(colors, np.float32).reshape(-1, 3)
    tint = lut[np.maximum(top, 0)]
    out = np.where(covered[..., None], (1.0 - alpha) * frame + alpha * tint, frame)
    size = 2 * thickness + 1  # a pixel is on an outline when its neighbourhood holds another label
    edge = covered & (ndimage.maximum_filter(top, size) != ndimage.minimum_filter(top, size))
    out[edge] = tint[edge]
    return out.round().clip(0, 255).astype(np.uint8)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, color: tuple[int, int, int],
               font: ImageFont.ImageFont, taken: list[Box]) -> None:
    """``text`` centred at ``xy`` on a dark box with a coloured border, so it reads on any background. A box that
    would cover one in ``taken`` moves down (then up) until it is free; its own box is appended to ``taken``.
    Boxes are kept inside the picture (a mask at the border still gets a whole label)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    pad = max(2, h // 4)
    bw, bh = w + 2 * pad, h + 2 * pad
    width, height = draw.im.size
    x0 = min(max(0, xy[0] - bw // 2), max(0, width - bw - 1))  # keep the whole box inside the picture
    y0 = min(max(0, xy[1] - bh // 2), max(0, height - bh - 1))
    for shift in (0, 1, -1, 2, -2, 3, -3):
        box = (x0, y0 + shift * (bh + 1), x0 + bw, y0 + shift * (bh + 1) + bh)
        if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in taken):
            break
    taken.append(box)
    draw.rectangle(box, fill=(0, 0, 0), outline=color, width=1)
    draw.text((box[0] + pad - left, box[1] + pad - top), text, fill=(255, 255, 255), font=font)


def label_text(track_id: int, value: float | None, value_name: str = PRED_IOU_LABEL) -> str:
    """``"#3 IoU^ 0.82"`` (id, what the number is, its value in this frame) or ``"#3"`` when there is no value."""
    if value is None:
        return f"#{track_id}"
    return " ".join(part for part in (f"#{track_id}", value_name, f"{value:.2f}") if part)


def render_frame(
    frame: np.ndarray,
    masks: np.ndarray,
    track_ids: Sequence[int],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    alpha: float = 0.5,
    min_side: int = 256,
) -> np.ndarray:
    """Draw one overlay.

    Args:
        frame: uint8 (H, W, 3) RGB.
        masks: bool (n, H, W), one per instance present in this frame.
        track_ids: n ints (colour; the label when ``labels`` is None).
        labels: n texts (``label_text``) or None for ``"#id"``.
        title: text for a strip above the picture (e.g. "prediction  t=3/40").
    Returns:
        uint8 (s*H [+ strip], s*W, 3) with s = display_scale(H, W, min_side).
    """
    masks = np.asarray(masks, dtype=bool).reshape(-1, *frame.shape[:2])
    factor = display_scale(*frame.shape[:2], min_side=min_side)
    big, big_masks = upscale(frame, masks, factor)
    short = min(big.shape[:2])
    colors = [instance_color(i) for i in track_ids]
    top = top_instance(big_masks)
    image = Image.fromarray(blend_masks(big, top, colors, alpha, thickness=max(1, short // 200)))
    draw = ImageDraw.Draw(image)
    font = label_font(max(14, short // 15))
    labels = labels if labels is not None else [label_text(tid, None) for tid in track_ids]
    taken: list[Box] = []
    for i, (mask, text, color) in enumerate(zip(big_masks, labels, colors)):
        visible = top == i  # label the part not hidden by later masks, so overlapping labels spread out
        anchor = label_anchor(visible) or label_anchor(mask)
        if anchor is not None:
            draw_label(draw, anchor, text, color, font, taken)
    if title is not None:
        image = add_title(image, title, font)
    return np.asarray(image)


def add_title(image: Image.Image, title: str, font: ImageFont.ImageFont) -> Image.Image:
    """``image`` with a black strip on top holding ``title`` in white."""
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), title, font=font)
    strip = (bottom - top) + 8
    canvas = Image.new("RGB", (image.width, image.height + strip), (0, 0, 0))
    canvas.paste(image, (0, strip))
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), title, fill=(255, 255, 255), font=font)
    return canvas


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Join uint8 (H_i, W_i, 3) panels left to right on black, top-aligned, ``gap`` pixels apart."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.zeros((height, width, 3), np.uint8)
    x = 0
    for p in panels:
        out[: p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def frame_instances(tracks: Sequence[OverlayTrack], t: int, shape: tuple[int, int]):
    """The instances of ``tracks`` present in frame ``t``: (masks bool (n, H, W), ids (n,), label texts (n,)).
    RLEs of another size than ``shape`` (H, W) are an error (results for another video)."""
    masks, ids, labels = [], [], []
    for tr in tracks:
        rle = tr.segmentations[t] if t < len(tr.segmentations) else None
        if rle is None:
            continue
        mask = decode_rle(rle)
        if mask.shape != tuple(shape):
            raise AutoQVISError(
                f"instance #{tr.track_id}: its mask in frame {t} is {mask.shape[1]}x{mask.shape[0]} but the frame is "
                f"{shape[1]}x{shape[0]} (results for another video, or another --fps?)"
            )
        masks.append(mask)
        ids.append(tr.track_id)
        value = None if tr.values is None or t >= len(tr.values) else tr.values[t]
        labels.append(label_text(tr.track_id, value, tr.value_name))
    stacked = np.stack(masks) if masks else np.zeros((0, *shape), bool)
    return stacked, ids, labels


def overlay_frames(
    frames: Iterable[np.ndarray],
    tracks: Sequence[OverlayTrack],
    gt_tracks: Sequence[OverlayTrack] | None = None,
    *,
    alpha: float = 0.5,
    min_side: int = 256,
) -> Iterator[np.ndarray]:
    """Stream overlay pictures: one uint8 (H', W', 3) per input frame uint8 (H, W, 3); with ``gt_tracks`` the
    ground truth is drawn in a second panel on the right. Only one frame is in memory at a time."""
    total = max([len(t.segmentations) for t in [*tracks, *(gt_tracks or [])]], default=0)
    for t, frame in enumerate(frames):
        counter = f"t={t}" + (f"/{total - 1}" if total else "")
        masks, ids, labels = frame_instances(tracks, t, frame.shape[:2])
        pred = render_frame(frame, masks, ids, labels, title=f"prediction  {counter}", alpha=alpha,
                            min_side=min_side)
        if gt_tracks is None:
            yield pred
            continue
        gmasks, gids, glabels = frame_instances(gt_tracks, t, frame.shape[:2])
        gt = render_frame(frame, gmasks, gids, glabels, title=f"ground truth  {counter}", alpha=alpha,
                          min_side=min_side)
        yield side_by_side([pred, gt])


def tracks_from_results(results: Sequence[dict]) -> list[OverlayTrack]:
    """One video's YTVIS results (in the order given) -> tracks numbered #1, #2, ... in that order; the optional
    per-frame ``pred_iou`` of autoqvis results is drawn beside the id as ``IoU^``."""
    return [
        OverlayTrack(k + 1, r["segmentations"], r.get("pred_iou"), PRED_IOU_LABEL)
        for k, r in enumerate(results)
    ]


def tracks_from_annotations(annotations: Sequence) -> list[OverlayTrack]:
    """Ground-truth ``autoqvis.data.ytvis.Annotation`` tracks -> tracks labelled by annotation id."""
    return [OverlayTrack(int(a.id), a.segmentations) for a in annotations]


def write_overlay(
    path: str | Path,
    frames: Iterable[np.ndarray],
    tracks: Sequence[OverlayTrack],
    fps: float,
    gt_tracks: Sequence[OverlayTrack] | None = None,
    *,
    min_side: int = 256,
) -> int:
    """Render and write an overlay video: ``.mp4`` (h264, streamed frame by frame) or ``.gif`` (held in memory:
    keep gifs short). ``frames``: uint8 (H, W, 3) RGB. Returns the number of frames written."""
    pictures = overlay_frames(frames, tracks, gt_tracks, min_side=min_side)
    suffix = Path(path).suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, pictures, fps)
    if suffix == ".gif":
        return write_gif(path, pictures, fps)
    raise AutoQVISError(f"{path}: overlay format must be .mp4 or .gif")
