"""ImageCut2Video (VideoCutLER): one still image + its instance masks -> a synthetic training clip.

VideoCutLER repeats an ImageNet image ``num_frames`` times and augments every copy on its own, so the
objects appear to move between frames:

* per frame, independently: a random crop (detectron2 ``RandomCrop``), brightness and contrast
  factors in [0.9, 1.1], a rotation in [-15, 15] degrees about a centre drawn in the middle fifth of
  the frame (no expansion: the corners turn black);
* per clip: the shortest-edge size (one of ``min_size``, longest edge capped at ``max_size``) and a
  horizontal flip;
* copy-paste: all instances of a second, independently augmented image are pasted into every frame,
  rescaled to a new random fraction in [0.8, 1.0] of the frame and shifted anew in every frame. The
  paste is skipped for the whole clip when, in the first frame, a pasted mask covers >= 50% of an
  existing mask; pasted pixels are cut out of the masks underneath.

Frames whose crops differ in aspect ratio get different sizes, as in VideoCutLER; they are placed at
the top-left of a common canvas and the rest is zero padding (what the model's batching would do).
Each frame is rendered with a single affine warp from the source image (crop, resize, flip and
rotation composed into one matrix): bilinear for pixels (torch ``grid_sample``), nearest for masks, so
every mask pixel is exactly the source pixel its image sample is centred on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.config import SynthConfig
from ..core.errors import AutoQVISError

_CROP_TYPES = ("absolute_range", "relative_range")


# ------------------------------------------------------------------------------------ random draws
@dataclass(frozen=True)
class ViewParams:
    """One augmented view of a source image: crop box (source pixels), output size, flip, rotation,
    photometric factors. The view maps the crop onto a (height, width) frame."""

    crop: tuple[int, int, int, int]  # y0, x0, crop height, crop width
    size: tuple[int, int]  # output (height, width)
    flip: bool
    angle: float  # degrees, counter-clockwise
    center: tuple[float, float]  # rotation centre, relative (x, y) in the output frame
    brightness: float
    contrast: float


@dataclass(frozen=True)
class ClipParams:
    """Every random choice of one clip, so rendering is a pure function of (inputs, params)."""

    frames: list[ViewParams]
    paste: ViewParams | None  # the paste source's own augmentation (output size = its crop size)
    paste_boxes: list[tuple[int, int, int, int]]  # per frame: dy, dx, height, width of the pasted view


def sample_crop(height: int, width: int, cfg: SynthConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """detectron2 ``RandomCrop`` -> (y0, x0, crop_h, crop_w). ``absolute_range`` [a, b]: each side in
    [min(side, a), min(side, b)] pixels; ``relative_range`` [fh, fw]: height x U(fh, 1), width x U(fw, 1)."""
    if not cfg.crop_enabled:
        return 0, 0, height, width
    a, b = cfg.crop_size
    if cfg.crop_type == "absolute_range":
        ch = int(rng.integers(min(height, int(a)), min(height, int(b)) + 1))
        cw = int(rng.integers(min(width, int(a)), min(width, int(b)) + 1))
    else:
        fh, fw = np.array([a, b]) + rng.random(2) * (1.0 - np.array([a, b]))
        ch, cw = max(1, int(height * fh + 0.5)), max(1, int(width * fw + 0.5))
    y0 = int(rng.integers(height - ch + 1))
    x0 = int(rng.integers(width - cw + 1))
    return y0, x0, ch, cw


def resized_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge``: shortest edge -> ``short_edge``, longest capped at ``max_size``."""
    scale = short_edge / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _sample_view(hw: tuple[int, int], size_of_crop, flip: bool, cfg: SynthConfig,
                 rng: np.random.Generator) -> ViewParams:
    crop = sample_crop(hw[0], hw[1], cfg, rng)
    angle = float(rng.uniform(-cfg.rotation, cfg.rotation))
    c_lo, c_hi = cfg.rotation_center
    center = (float(rng.uniform(c_lo, c_hi)), float(rng.uniform(c_lo, c_hi)))
    brightness = float(rng.uniform(*cfg.brightness))
    contrast = float(rng.uniform(*cfg.contrast))
    return ViewParams(crop, size_of_crop(crop[2], crop[3]), flip, angle, center, brightness, contrast)


def sample_frame_views(cfg: SynthConfig, frame_hws: list[tuple[int, int]], rng: np.random.Generator) -> list[ViewParams]:
    """One view per frame of a clip whose source frames have sizes ``frame_hws``: the shortest-edge size and the
    flip drawn once for the clip, crop, rotation and photometric factors per frame (VideoCutLER's mapper)."""
    short_edge = int(rng.choice(cfg.min_size))
    flip = bool(rng.random() < cfg.hflip_prob)
    return [_sample_view(hw, lambda h, w: resized_size(h, w, short_edge, cfg.max_size), flip, cfg, rng)
            for hw in frame_hws]


def sample_clip_params(cfg: SynthConfig, image_hw: tuple[int, int], paste_hw: tuple[int, int] | None,
                       rng: np.random.Generator) -> ClipParams:
    """Draw every random choice of a clip, always in the same order (a seed fixes the clip)."""
    frames = sample_frame_views(cfg, [image_hw] * cfg.num_frames, rng)
    if paste_hw is None or not cfg.copy_paste or not rng.random() < cfg.copy_paste_prob:
        return ClipParams(frames, None, [])
    paste_flip = bool(rng.random() < cfg.hflip_prob)
    paste = _sample_view(paste_hw, lambda h, w: (h, w), paste_flip, cfg, rng)
    boxes = []
    for view in frames:
        h, w = view.size
        ratio = float(rng.uniform(*cfg.paste_scale))
        ph, pw = max(1, int(ratio * h)), max(1, int(ratio * w))
        boxes.append((int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1)), ph, pw))
    return ClipParams(frames, paste, boxes)


# ------------------------------------------------------------------------------------ geometry
def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def _rotate(angle_deg: float, cx: float, cy: float) -> np.ndarray:
    """Counter-clockwise rotation (as displayed, y pointing down) about (cx, cy)."""
    a = math.radians(angle_deg)
    cos, sin = math.cos(a), math.sin(a)
    rot = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    return _translate(cx, cy) @ rot @ _translate(-cx, -cy)


def view_matrix(view: ViewParams) -> np.ndarray:
    """(3, 3) affine taking continuous source coordinates (x, y) to the view's output frame:
    crop -> resize -> horizontal flip -> rotation (detectron2's order)."""
    y0, x0, ch, cw = view.crop
    h, w = view.size
    m = _scale(w / cw, h / ch) @ _translate(-x0, -y0)
    if view.flip:
        m = np.array([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    if view.angle % 360 != 0:
        m = _rotate(view.angle, view.center[0] * w, view.center[1] * h) @ m
    return m


def _sample_points(to_source: np.ndarray, rect: tuple[int, int, int, int],
                   crop: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source coordinates of the output pixel centres of one rectangle, and where they are valid.

    Args:
        to_source: (3, 3) affine, output -> source coordinates.
        rect: (y0, x0, h, w) output region the view covers; nothing is drawn outside it.
        crop: (y0, x0, h, w) source region the view may read; outside it is black / no mask.
    Returns:
        xs, ys: float32 (h, w) source coordinates; valid: bool (h, w).
    """
    ry, rx, rh, rw = rect
    col = np.arange(rx, rx + rw, dtype=np.float32)[None, :] + 0.5  # pixel centres
    row = np.arange(ry, ry + rh, dtype=np.float32)[:, None] + 0.5
    m = to_source.astype(np.float32)
    xs = m[0, 0] * col + (m[0, 1] * row + m[0, 2])
    ys = m[1, 0] * col + (m[1, 1] * row + m[1, 2])
    cy, cx, ch, cw = crop
    valid = (xs >= cx) & (xs < cx + cw)
    valid &= (ys >= cy) & (ys < cy + ch)
    return xs, ys, valid


def _bilinear(image: torch.Tensor, xs: np.ndarray, ys: np.ndarray, factor: int) -> np.ndarray:
    """Sample float (3, h, w) ``image`` (the source reduced ``factor`` times) at source coords of any
    shape S -> float32 S + (3,)."""
    h, w = image.shape[1:]
    grid = np.empty((1, 1, xs.size, 2), dtype=np.float32)
    np.multiply(xs.ravel(), 2.0 / (factor * w), out=grid[0, 0, :, 0])
    np.multiply(ys.ravel(), 2.0 / (factor * h), out=grid[0, 0, :, 1])
    grid -= 1.0
    out = F.grid_sample(image[None], torch.from_numpy(grid), mode="bilinear", padding_mode="border",
                        align_corners=False)  # (1, 3, 1, K)
    return out[0, :, 0].T.numpy().reshape(xs.shape + (3,))


class _PackedMasks:
    """bool (N, h, w) masks packed 8 to a byte along N, so a nearest-neighbour warp gathers N/8 bytes
    per pixel instead of N bools (the warp's main cost with many instances). Packing and unpacking
    loop over masks: numpy's packbits/unpackbits along the first axis are ~10-50x slower here."""

    def __init__(self, masks: np.ndarray) -> None:
        self.n, self.h, self.w = masks.shape
        flat = masks.reshape(self.n, self.h * self.w).view(np.uint8)
        self.packed = np.zeros(((self.n + 7) // 8, self.h * self.w + 1), dtype=np.uint8)  # last column: "outside"
        for k in range(self.n):
            self.packed[k // 8, :-1] |= flat[k] << (7 - k % 8)

    def sample(self, xs: np.ndarray, ys: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Masks at the pixels nearest to source coords (shape S) -> bool (N,) + S, False where not valid."""
        # truncation is floor where valid (coords >= 0 there); invalid pixels read the "outside" column
        flat = np.where(valid, ys.astype(np.int32) * self.w + xs.astype(np.int32), self.h * self.w)
        bits = np.take(self.packed, flat.ravel(), axis=1)  # (N / 8, K)
        out = np.empty((self.n, bits.shape[1]), dtype=np.uint8)
        for k in range(self.n):
            np.right_shift(bits[k // 8], 7 - k % 8, out=out[k])
        out &= 1
        return out.view(bool).reshape((self.n,) + xs.shape)


def _photometric(pixels: np.ndarray, view: ViewParams, mean: float) -> np.ndarray:
    """detectron2 RandomBrightness then RandomContrast: c * (b * x) + (1 - c) * b * mean, clipped to 0..255."""
    b, c = view.brightness, view.contrast
    if b == 1.0 and c == 1.0:
        return pixels
    return np.clip(c * b * pixels + (1.0 - c) * b * mean, 0.0, 255.0)


class _Source:
    """A source image prepared for warping: float tensor, reduced by an integer factor when the
    clip shrinks it more than 2x (box filter, so the bilinear warp does not alias)."""

    def __init__(self, image: np.ndarray, zoom: float) -> None:
        # zoom: the largest output/source scale among the views; after the reduction no view upsamples
        self.factor = int(1.0 / zoom) if zoom < 0.5 else 1
        small = np.asarray(Image.fromarray(image).reduce(self.factor)) if self.factor > 1 else image
        self.small = small
        # numpy's cast: torch's uint8 -> float conversion is ~20x slower on CPU here
        self.tensor = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32))

    def crop_mean(self, crop: tuple[int, int, int, int]) -> float:
        """Mean over all channels of the crop region (detectron2's contrast reference)."""
        y0, x0, ch, cw = (v // self.factor for v in crop)
        region = self.small[y0:y0 + max(1, ch), x0:x0 + max(1, cw)]
        return float(region.mean())


def _zoom(view: ViewParams, box_hw: tuple[int, int] | None = None) -> float:
    """Smallest output/source scale of a view (``box_hw``: the view is further resized to this)."""
    h, w = box_hw or view.size
    return min(h / view.crop[2], w / view.crop[3])


# ------------------------------------------------------------------------------------ the generator
class ImageCut2Video:
    """Turn a still image and its instance masks into a synthetic clip (see the module docstring).

    Args:
        cfg: SynthConfig (num_frames, sizes, crop, flip, photometric, rotation, copy-paste settings).
    Call:
        image: uint8 (H, W, 3) RGB; masks: bool (N, H, W); rng: numpy Generator (fixes the clip);
        paste: optional (image uint8 (Hp, Wp, 3), masks bool (Np, Hp, Wp)) whose instances are pasted in.
    Returns:
        frames: uint8 (T, H', W', 3); masks: bool (N', T, H', W') — the kept instances of ``image`` in
        input order, then the pasted ones. An instance absent from a frame has an empty mask there;
        instances whose largest per-frame area is below ``cfg.min_mask_area`` are dropped.
    """

    def __init__(self, cfg: SynthConfig) -> None:
        check_config(cfg)
        self.cfg = cfg

    def __call__(self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
                 paste: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        _check_inputs(image, masks, "image")
        if paste is not None:
            _check_inputs(paste[0], paste[1], "paste")
            if len(paste[1]) == 0:
                paste = None
        params = sample_clip_params(self.cfg, image.shape[:2], None if paste is None else paste[0].shape[:2], rng)
        return self.render(image, masks, params, paste)

    def render(self, image: np.ndarray, masks: np.ndarray, params: ClipParams,
               paste: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic part: draw the clip described by ``params`` (shapes as in ``__call__``)."""
        canvas = _canvas(params.frames)
        source = _Source(image, max(_zoom(v) for v in params.frames))
        packed = _PackedMasks(masks)
        n, n_paste = len(masks), (len(paste[1]) if paste is not None and params.paste is not None else 0)
        frames = np.zeros((len(params.frames),) + canvas + (3,), dtype=np.float32)  # (T, H', W', 3)
        tubes = np.zeros((n + n_paste, len(params.frames)) + canvas, dtype=bool)  # room for pasted ones
        for t, view in enumerate(params.frames):
            _draw_view(source, packed, view, frames[t], tubes[:n, t])
        if n_paste and not self._paste(frames, tubes, n, params, paste):
            tubes = tubes[:n]
        if self.cfg.min_mask_area <= 1:
            keep = tubes.any(axis=(1, 2, 3))
        else:
            keep = np.count_nonzero(tubes, axis=(2, 3)).max(axis=1, initial=0) >= self.cfg.min_mask_area
        frames += 0.5  # values lie in [0, 255]: rounding is truncation of x + 0.5
        return frames.astype(np.uint8), (tubes if keep.all() else tubes[keep])

    def _paste(self, frames: np.ndarray, tubes: np.ndarray, n: int, params: ClipParams,
               paste: tuple[np.ndarray, np.ndarray]) -> bool:
        """Copy-paste all instances of ``paste`` into every frame (VideoCutLER's rules), in place.

        frames: float (T, H', W', 3); tubes: bool (n + Np, T, H', W') whose first ``n`` hold the image's
        instances. On success the pasted tubes fill ``tubes[n:]``, pasted pixels are cut out of
        ``tubes[:n]`` and drawn into ``frames``; returns False (nothing changed) when the paste is skipped.
        """
        p_image, p_masks = paste
        view = params.paste
        assert view is not None
        packed = _PackedMasks(p_masks)
        to_view = view_matrix(view)
        points = []
        for t, (dy, dx, ph, pw) in enumerate(params.paste_boxes):
            to_frame = _translate(dx, dy) @ _scale(pw / view.size[1], ph / view.size[0]) @ to_view
            points.append(_sample_points(np.linalg.inv(to_frame), (dy, dx, ph, pw), view.crop))
            tubes[n:, t, dy:dy + ph, dx:dx + pw] = packed.sample(*points[t])
            if t == 0 and _covers_existing(tubes[n:, 0, dy:dy + ph, dx:dx + pw], tubes[:n, 0, dy:dy + ph, dx:dx + pw],
                                           np.count_nonzero(tubes[:n, 0], axis=(1, 2)),
                                           self.cfg.paste_max_overlap):
                return False
        source = _Source(p_image, max(_zoom(view, box[2:]) for box in params.paste_boxes))
        mean = source.crop_mean(view.crop)
        for t, ((dy, dx, ph, pw), (xs, ys, _)) in enumerate(zip(params.paste_boxes, points)):
            alpha = tubes[n:, t, dy:dy + ph, dx:dx + pw].any(axis=0)  # (ph, pw)
            pixels = _photometric(_bilinear(source.tensor, xs[alpha], ys[alpha], source.factor), view, mean)
            frames[t, dy:dy + ph, dx:dx + pw][alpha] = pixels  # only the pasted pixels are sampled
            tubes[:n, t, dy:dy + ph, dx:dx + pw] &= ~alpha
        return True


def _canvas(views: list[ViewParams]) -> tuple[int, int]:
    return max(v.size[0] for v in views), max(v.size[1] for v in views)


def _draw_view(source: _Source, packed: _PackedMasks, view: ViewParams, frame: np.ndarray, masks: np.ndarray) -> None:
    """Render one view into ``frame`` float (H', W', 3) and ``masks`` bool (N, H', W') of a zeroed canvas: the
    view sits at the top-left, the rest stays zero padding."""
    h, w = view.size
    xs, ys, valid = _sample_points(np.linalg.inv(view_matrix(view)), (0, 0, h, w), view.crop)
    pixels = _photometric(_bilinear(source.tensor, xs, ys, source.factor), view, source.crop_mean(view.crop))
    np.multiply(pixels, valid[..., None], out=frame[:h, :w])
    masks[:, :h, :w] = packed.sample(xs, ys, valid)


def augment_frames(frames: np.ndarray, masks: np.ndarray, cfg: SynthConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The per-frame chain of ImageCut2Video applied to the distinct frames of a real clip (no copy-paste): the
    official loader sends real clips through the same augmentation list as the synthetic ones.

    Args:
        frames: uint8 (T, H, W, 3) RGB; masks: bool (N, T, H, W); cfg: sizes, crop, flip, photometric, rotation
            (``num_frames`` and the copy-paste settings are not used).
    Returns:
        frames uint8 (T, H', W', 3) and masks bool (N, T, H', W'): frame t at the top-left of the common canvas.
    """
    check_config(cfg)
    views = sample_frame_views(cfg, [f.shape[:2] for f in frames], rng)
    canvas = _canvas(views)
    out = np.zeros((len(frames),) + canvas + (3,), dtype=np.float32)
    tubes = np.zeros((masks.shape[0], len(frames)) + canvas, dtype=bool)
    for t, view in enumerate(views):
        _draw_view(_Source(frames[t], _zoom(view)), _PackedMasks(masks[:, t]), view, out[t], tubes[:, t])
    out += 0.5  # values lie in [0, 255]: rounding is truncation of x + 0.5
    return out.astype(np.uint8), tubes


def _covers_existing(pasted: np.ndarray, existing: np.ndarray, areas: np.ndarray, max_overlap: float) -> bool:
    """True when some pasted mask covers >= ``max_overlap`` of some non-empty existing mask.

    pasted: bool (Np, h, w) and existing: bool (N, h, w), the first frame inside the paste box;
    areas: (N,) the existing masks' whole-frame areas (VideoCutLER's "IoY": intersection / existing area).
    """
    if len(existing) == 0 or not areas.any():
        return False
    rows, cols = np.nonzero(pasted.any(axis=0) & existing.any(axis=0))  # the only pixels that can intersect
    inter = pasted[:, rows, cols].astype(np.float32) @ existing[:, rows, cols].astype(np.float32).T  # (Np, N)
    covered = inter[:, areas > 0] / areas[areas > 0]
    return bool((covered >= max_overlap).any())


# ------------------------------------------------------------------------------------ checks
def check_config(cfg: SynthConfig) -> None:
    def bad(key: str, why: str) -> AutoQVISError:
        return AutoQVISError(f"config key synth.{key}: {why}")

    if cfg.num_frames < 1:
        raise bad("num_frames", f"must be >= 1, got {cfg.num_frames}")
    if not cfg.min_size or any(s < 1 for s in cfg.min_size):
        raise bad("min_size", f"must be a non-empty list of positive sizes, got {cfg.min_size}")
    if cfg.max_size < max(cfg.min_size):
        raise bad("max_size", f"{cfg.max_size} is below the largest min_size {max(cfg.min_size)}")
    if cfg.crop_type not in _CROP_TYPES:
        raise bad("crop_type", f"{cfg.crop_type!r} is not one of {', '.join(_CROP_TYPES)}")
    if len(cfg.crop_size) != 2:
        raise bad("crop_size", f"must hold two numbers, got {cfg.crop_size}")
    lo, hi = cfg.crop_size
    if cfg.crop_type == "absolute_range" and not 1 <= lo <= hi:
        raise bad("crop_size", f"absolute_range needs [min, max] pixels with 1 <= min <= max, got {cfg.crop_size}")
    if cfg.crop_type == "relative_range" and not (0 < lo <= 1 and 0 < hi <= 1):
        raise bad("crop_size", f"relative_range needs two fractions in (0, 1], got {cfg.crop_size}")
    for key in ("brightness", "contrast", "paste_scale", "rotation_center"):
        pair = getattr(cfg, key)
        if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
            raise bad(key, f"must be [low, high] with 0 <= low <= high, got {pair}")
    if not 0 < cfg.paste_scale[0] or cfg.paste_scale[1] > 1:
        raise bad("paste_scale", f"must lie in (0, 1], got {cfg.paste_scale}")
    for key in ("hflip_prob", "copy_paste_prob", "paste_max_overlap"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise bad(key, f"must be in [0, 1], got {getattr(cfg, key)}")
    if cfg.rotation < 0:
        raise bad("rotation", f"must be >= 0 degrees, got {cfg.rotation}")


def _check_inputs(image: np.ndarray, masks: np.ndarray, what: str) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise AutoQVISError(f"ImageCut2Video: {what} must be uint8 (H, W, 3), got "
                            f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    if not (isinstance(masks, np.ndarray) and masks.dtype == bool and masks.ndim == 3
            and masks.shape[1:] == image.shape[:2]):
        raise AutoQVISError(f"ImageCut2Video: {what} masks must be bool (N, {image.shape[0]}, {image.shape[1]}), "
                            f"got {getattr(masks, 'dtype', type(masks))} {getattr(masks, 'shape', '')}")


__all__ = [
    "ClipParams",
    "augment_frames",
    "check_config",
    "ImageCut2Video",
    "ViewParams",
    "resized_size",
    "sample_clip_params",
    "sample_crop",
    "sample_frame_views",
    "view_matrix",
]
