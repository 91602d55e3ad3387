"""The toy world: a procedural, seeded stand-in for "ImageNet + CutLER masks" and "YouTubeVIS videos".

One object/texture generator feeds two domains (docs/toyworld.md explains every knob):

* the *source*: still images with imperfect pseudo-masks (missed objects, jittered boundaries, merged
  neighbours, spurious background blobs), as an unsupervised image segmenter would give; ImageCut2Video
  turns them into synthetic clips exactly as it turns ImageNet + CutLER masks into clips in the paper;
* the *target*: "real" videos with the natural motion synthetic clips lack (smooth trajectories, rotation,
  scale change, mutual occlusion, entering/leaving the frame, lighting drift, camera pan, sensor blur/noise).

Everything is a pure function of ``(config, seed)``: each still and video draws from its own
``np.random.default_rng([seed, split, index])``, so the output is byte-identical for a seed.
``write_toyworld`` writes it in the YouTubeVIS on-disk layout (see ``OUTPUT_FILES``).
"""

from __future__ import annotations

import colorsys
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from scipy import ndimage

from ..core.errors import AutoQVISError
from ..core.tracks import encode_masks, rle_areas, rle_bboxes
from .coco import CocoDataset, CocoImage, mask_to_annotation, save_coco
from .ytvis import Annotation, Video, YTVISDataset, save_ytvis

SHAPES = ("ellipse", "polygon", "blob", "ring", "star", "box")
TEXTURES = ("stripes", "checks", "noise", "gradient", "dots")
SPLIT_STILLS, SPLIT_TRAIN, SPLIT_VAL = 0, 1, 2  # seed-sequence keys: the splits never share random streams
PROFILE_BINS = 1024  # angular resolution of a shape's radius table


# ------------------------------------------------------------------------------------------- config
@dataclass
class ToyWorldConfig:
    """Every knob of the toy world. Ranges are ``[low, high]`` (inclusive for counts); sizes are ``[H, W]``."""

    # sizes
    num_stills: int = 300
    num_train_videos: int = 96
    num_val_videos: int = 96  # 24 left a +-3 AP50 val noise (issue 16)
    still_size: list[int] = field(default_factory=lambda: [128, 128])
    video_size: list[int] = field(default_factory=lambda: [112, 160])
    num_frames: list[int] = field(default_factory=lambda: [8, 16])
    # the shared object generator
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    textures: list[str] = field(default_factory=lambda: list(TEXTURES))
    object_radius: list[float] = field(default_factory=lambda: [0.12, 0.26])  # x shorter image side
    background_scale: list[float] = field(default_factory=lambda: [0.2, 0.4])  # texture unit, x shorter side
    shading: float = 0.25  # brightness slope across an object (a light from one side)
    min_area: int = 16  # pixels; a smaller visible part is not an instance (still) / a null frame (video)
    # source stills
    still_objects: list[int] = field(default_factory=lambda: [1, 3])
    still_cluster_prob: float = 0.5  # place an object touching an earlier one (neighbours to merge)
    still_max_overlap: float = 0.25  # max fraction of a new object hidden under earlier ones
    still_gain: list[float] = field(default_factory=lambda: [1.0, 1.2])  # even studio-like light
    # pseudo-mask imperfections of the stills
    miss_rate: float = 0.15  # each true object is missed with this probability
    merge_rate: float = 0.5  # a pair of detected neighbours (gap <= merge_gap) comes out as one mask
    merge_gap: int = 4  # pixels
    jitter_rate: float = 0.6  # a pseudo-mask gets a wobbly, shifted boundary
    jitter_px: float = 2.0  # amplitude of the boundary displacement
    spurious_rate: float = 0.1  # an image gets one extra mask on a background blob
    # target videos: motion
    video_objects: list[int] = field(default_factory=lambda: [1, 3])  # as the stills; 2-5 capped even GT training
    speed: list[float] = field(default_factory=lambda: [0.5, 3.0])  # pixels / frame
    turn: float = 0.12  # max heading change, radians / frame (curved paths)
    spin: float = 8.0  # max rotation, degrees / frame
    scale_rate: float = 0.03  # max |d log scale / frame| (approaching / receding)
    enter_leave_prob: float = 0.1  # an object enters or leaves the frame during the video
    cross_prob: float = 0.1  # an object's path crosses another's (occlusion by depth order)
    pan: list[float] = field(default_factory=lambda: [0.0, 1.5])  # camera pan, pixels / frame
    # target videos: appearance
    lighting_drift: float = 0.5  # max relative change of the global gain over a video
    tint_drift: float = 0.2  # max per-channel gain change over a video (colour temperature)
    light_gradient: float = 0.5  # amplitude of a slowly turning illumination ramp
    blur_sigma: float = 0.0  # camera softness, pixels (1.2 sank the toy model below what target labels teach)
    noise_std: float = 6.0  # sensor noise, grey levels: the appearance gap the rounds can learn
    jpeg_quality: int = 95

    def validate(self) -> "ToyWorldConfig":
        """Raise AutoQVISError naming the first bad knob; return self."""
        for name in ("miss_rate", "merge_rate", "jitter_rate", "spurious_rate", "still_cluster_prob",
                     "still_max_overlap", "enter_leave_prob", "cross_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AutoQVISError(f"toyworld config: {name} = {getattr(self, name)} must be in [0, 1]")
        for name in ("num_stills", "num_train_videos", "num_val_videos", "min_area", "merge_gap", "shading",
                     "jitter_px", "turn", "spin", "scale_rate", "lighting_drift", "tint_drift", "light_gradient",
                     "blur_sigma", "noise_std"):
            if getattr(self, name) < 0:
                raise AutoQVISError(f"toyworld config: {name} = {getattr(self, name)} must be >= 0")
        for name in ("still_size", "video_size", "num_frames", "object_radius", "background_scale",
                     "still_objects", "video_objects", "speed", "pan", "still_gain"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1] or lo_hi[0] < 0:
                raise AutoQVISError(f"toyworld config: {name} = {lo_hi} must be [low, high] with 0 <= low <= high")
        if self.object_radius[1] > 0.5 or self.object_radius[0] <= 0:
            raise AutoQVISError(f"toyworld config: object_radius = {self.object_radius} must lie in (0, 0.5]")
        if min(self.still_size + self.video_size) < 16:
            raise AutoQVISError("toyworld config: image sides must be >= 16 pixels")
        if self.num_frames[0] < 1 or self.video_objects[0] < 1 or self.still_objects[0] < 1:
            raise AutoQVISError("toyworld config: num_frames, video_objects and still_objects must start at >= 1")
        for name, known in (("shapes", SHAPES), ("textures", TEXTURES)):
            bad = [k for k in getattr(self, name) if k not in known] or ([] if getattr(self, name) else ["(empty)"])
            if bad:
                raise AutoQVISError(f"toyworld config: {name} has {bad[0]!r}; choose from {', '.join(known)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise AutoQVISError(f"toyworld config: jpeg_quality = {self.jpeg_quality} must be in [1, 100]")
        return self


SIZES: dict[str, dict] = {
    "default": {},
    # tests: a handful of tiny images, each split non-empty, still every motion feature
    "small": dict(num_stills=12, num_train_videos=3, num_val_videos=3, still_size=[64, 64],
                  video_size=[64, 96], num_frames=[5, 7], video_objects=[2, 4],
                  # the world before the issue-16 calibration: the tests' worlds stay byte-identical
                  enter_leave_prob=0.3, cross_prob=0.4, blur_sigma=1.2, noise_std=10.0),
}


def toyworld_config(size: str = "default", **overrides) -> ToyWorldConfig:
    """The config of a named size (``small`` | ``default``) with keyword overrides."""
    if size not in SIZES:
        raise AutoQVISError(f"toyworld: unknown size {size!r}; choose from {', '.join(SIZES)}")
    try:
        cfg = ToyWorldConfig(**{**SIZES[size], **overrides})
    except TypeError as e:
        raise AutoQVISError(f"toyworld config: {e}") from None
    return cfg.validate()


def _uniform(rng: np.random.Generator, lo_hi: list[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


# -------------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """A star-shaped silhouette in unit coordinates: inside iff ``hole * r(phi) <= rho <= r(phi)``, r <= 1.

    profile: (PROFILE_BINS,) radius per polar angle; hole: 0 for solid shapes, the inner ratio for rings.
    """

    kind: str
    profile: np.ndarray
    hole: float = 0.0

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """u, v: (...) object-frame coordinates (unit = object radius) -> bool (...)."""
        rho = np.hypot(u, v)
        phi = np.arctan2(v, u)
        idx = np.floor(phi * (PROFILE_BINS / (2 * np.pi))).astype(np.int64) % PROFILE_BINS
        r = self.profile[idx]
        return (rho <= r) & (rho >= self.hole * r)


def _ellipse_profile(phi: np.ndarray, aspect: float) -> np.ndarray:
    return 1.0 / np.sqrt(np.cos(phi) ** 2 + (np.sin(phi) / aspect) ** 2)


def _polygon_profile(phi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # vertices on the unit circle with gaps < pi: the polygon is convex and contains the centre
    n = int(rng.integers(3, 8))
    step = 2 * np.pi / n
    verts = np.sort((np.arange(n) * step + rng.uniform(-0.2, 0.2, n) * step + rng.uniform(0, 2 * np.pi)) % (2 * np.pi))
    nxt = np.append(verts[1:], verts[0] + 2 * np.pi)
    k = (np.searchsorted(verts, phi, side="right") - 1) % n
    start = np.where(phi >= verts[0], verts[k], verts[k] - 2 * np.pi)
    half = (nxt[k] - verts[k]) / 2
    return np.cos(half) / np.cos(phi - start - half)


def random_shape(rng: np.random.Generator, kinds: list[str]) -> Shape:
    """One shape of a kind drawn uniformly from ``kinds``."""
    kind = kinds[int(rng.integers(len(kinds)))]
    phi = (np.arange(PROFILE_BINS) + 0.5) * (2 * np.pi / PROFILE_BINS)  # bin centres in [0, 2 pi)
    hole = 0.0
    if kind == "ellipse":
        r = _ellipse_profile(phi, rng.uniform(0.5, 1.0))
    elif kind == "ring":
        r = _ellipse_profile(phi, rng.uniform(0.75, 1.0))
        hole = float(rng.uniform(0.4, 0.6))
    elif kind == "polygon":
        r = _polygon_profile(phi, rng)
    elif kind == "blob":
        k = np.arange(2, 5)[:, None]
        r = 1 + (rng.uniform(0, 0.18, (3, 1)) * np.cos(k * phi + rng.uniform(0, 2 * np.pi, (3, 1)))).sum(0)
    elif kind == "star":
        points, inner = int(rng.integers(4, 8)), rng.uniform(0.4, 0.65)
        w = (points * phi / (2 * np.pi) + rng.uniform()) % 1.0
        r = inner + (1 - inner) * (1 - np.abs(2 * w - 1))
    else:  # box: a rectangle whose corners touch the unit circle
        alpha = rng.uniform(0.45, 1.12)
        a, b = np.cos(alpha), np.sin(alpha)
        r = np.minimum(a / np.maximum(np.abs(np.cos(phi)), 1e-9), b / np.maximum(np.abs(np.sin(phi)), 1e-9))
    return Shape(kind, (r / r.max()).astype(np.float32), hole)


# ------------------------------------------------------------------------------------------ textures
@dataclass(frozen=True)
class Texture:
    """Two colours mixed by a procedural pattern in some 2-D coordinate frame.

    colors: (2, 3) float RGB 0..255; freq: pattern cycles per unit; angle: pattern orientation (rad);
    grid: (g, g) value-noise lattice (kind "noise" only).
    """

    kind: str
    colors: np.ndarray
    freq: float
    angle: float
    phase: float
    grid: np.ndarray | None = None

    def pattern(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """u, v: (...) coordinates -> float32 (...) mixing weight in [0, 1]."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        a, b = (c * u + s * v) * self.freq + self.phase, (-s * u + c * v) * self.freq + self.phase
        if self.kind == "stripes":
            t = np.clip(0.5 + 1.5 * np.sin(2 * np.pi * a), 0, 1)  # soft-edged bands
        elif self.kind == "checks":
            t = (np.floor(a) + np.floor(b)) % 2
        elif self.kind == "dots":
            t = ((a % 1 - 0.5) ** 2 + (b % 1 - 0.5) ** 2 < 0.09).astype(np.float32)
        elif self.kind == "gradient":
            t = np.clip(0.5 + 0.5 * (a - self.phase), 0, 1)
        else:  # noise: bilinear value noise, wrapping lattice
            t = ndimage.map_coordinates(self.grid, [b, a], order=1, mode="grid-wrap")
        return t.astype(np.float32)

    def colour(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """u, v: (...) -> float32 (..., 3) RGB 0..255."""
        t = self.pattern(u, v)[..., None]
        return (self.colors[0] * (1 - t) + self.colors[1] * t).astype(np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) float RGB 0..255 from a broad HSV range (objects and backgrounds share it)."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.15, 0.9), rng.uniform(0.2, 0.95))
    return np.array(rgb, np.float32) * 255


def random_texture(rng: np.random.Generator, kinds: list[str]) -> Texture:
    """One texture of a kind drawn uniformly from ``kinds``; its two colours differ in brightness."""
    kind = kinds[int(rng.integers(len(kinds)))]
    c0 = random_colour(rng)
    c1 = random_colour(rng)
    while abs(float(c0.mean() - c1.mean())) < 40:  # keep the pattern visible
        c1 = random_colour(rng)
    freq = {"stripes": (0.8, 2.0), "checks": (1.0, 2.2), "dots": (1.2, 2.5), "gradient": (0.7, 1.3),
            "noise": (1.0, 2.0)}[kind]
    grid = rng.uniform(0, 1, (6, 6)).astype(np.float32) if kind == "noise" else None
    return Texture(kind, np.stack([c0, c1]), float(rng.uniform(*freq)), float(rng.uniform(0, np.pi)),
                   float(rng.uniform()), grid)


# ----------------------------------------------------------------------------------- objects, scene
@dataclass(frozen=True)
class ToyObject:
    """A textured shape of ``radius`` pixels (at scale 1); its texture moves, turns and scales with it."""

    shape: Shape
    texture: Texture
    radius: float


def random_object(rng: np.random.Generator, cfg: ToyWorldConfig, short_side: int) -> ToyObject:
    """The one object generator shared by stills and videos."""
    radius = _uniform(rng, cfg.object_radius) * short_side
    return ToyObject(random_shape(rng, cfg.shapes), random_texture(rng, cfg.textures), radius)


@dataclass(frozen=True)
class Pose:
    """Where an object is in one frame: centre (x, y) in pixels, angle (rad), scale factor."""

    x: float
    y: float
    angle: float
    scale: float


def render_object(obj: ToyObject, pose: Pose, size: tuple[int, int], light: tuple[float, float],
                  shading: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Rasterise one object inside its bounding box.

    size: (H, W) of the image; light: unit (lx, ly) direction the light comes from.
    Returns (box slices (ys, xs), mask bool (h, w), colour float32 (h, w, 3)), or None if off-image.
    """
    h, w = size
    r = obj.radius * pose.scale
    x0, x1 = max(int(np.floor(pose.x - r)), 0), min(int(np.ceil(pose.x + r)) + 1, w)
    y0, y1 = max(int(np.floor(pose.y - r)), 0), min(int(np.ceil(pose.y + r)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = dx + 0.5 - pose.x, dy + 0.5 - pose.y
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r
    mask = obj.shape.inside(u, v)
    if not mask.any():
        return None
    shade = 1 + shading * (dx * light[0] + dy * light[1]) / r
    return (slice(y0, y1), slice(x0, x1)), mask, obj.texture.colour(u, v) * shade[..., None]


@dataclass(frozen=True)
class Background:
    """Two textures in world coordinates, split into soft regions by a noise texture (edges that are not objects)."""

    a: Texture
    b: Texture
    regions: Texture
    scale: float  # pixels per texture unit

    def render(self, size: tuple[int, int], camera: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """size (H, W), camera (x, y) offset in pixels -> float32 (H, W, 3)."""
        h, w = size
        v, u = np.mgrid[0:h, 0:w].astype(np.float32)
        u, v = (u + 0.5 + camera[0]) / self.scale, (v + 0.5 + camera[1]) / self.scale
        t = np.clip((self.regions.pattern(u * 0.4, v * 0.4) - 0.5) * 4 + 0.5, 0, 1)[..., None]
        return self.a.colour(u, v) * (1 - t) + self.b.colour(u, v) * t


def panned_background(background: Background, size: tuple[int, int], camera: np.ndarray) -> np.ndarray:
    """What a panning camera sees: camera (T, 2) offsets (x, y) -> float32 (T, H, W, 3).

    The swept area is rendered once and cut per frame; the sub-pixel part of an offset is bilinear.
    """
    h, w = size
    lo = np.floor(camera.min(0)).astype(int)
    hi = np.ceil(camera.max(0)).astype(int) + 1
    canvas = background.render((h + hi[1] - lo[1], w + hi[0] - lo[0]), (float(lo[0]), float(lo[1])))
    out = np.empty((len(camera), h, w, 3), np.float32)
    for i, (ox, oy) in enumerate(camera - lo):
        ix, iy = int(np.floor(ox)), int(np.floor(oy))
        fx, fy = np.float32(ox - ix), np.float32(oy - iy)
        c = canvas[iy : iy + h + 1, ix : ix + w + 1]
        out[i] = (1 - fy) * ((1 - fx) * c[:h, :w] + fx * c[:h, 1:]) + fy * ((1 - fx) * c[1:, :w] + fx * c[1:, 1:])
    return out


def random_background(rng: np.random.Generator, cfg: ToyWorldConfig, short_side: int) -> Background:
    regions = random_texture(rng, ["noise"])
    return Background(random_texture(rng, cfg.textures), random_texture(rng, cfg.textures), regions,
                      _uniform(rng, cfg.background_scale) * short_side)


def random_light(rng: np.random.Generator) -> tuple[float, float]:
    a = rng.uniform(0, 2 * np.pi)
    return float(np.cos(a)), float(np.sin(a))


def compose(background: np.ndarray, objects: list[ToyObject], poses: list[Pose | None],
            light: tuple[float, float], shading: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint objects back to front (list order) over a background.

    background: float32 (H, W, 3). Returns (image float32 (H, W, 3), amodal bool (N, H, W)): each object's
    whole in-image silhouette, ignoring what covers it.
    """
    image = background.copy()
    amodal = np.zeros((len(objects),) + background.shape[:2], bool)
    for i, (obj, pose) in enumerate(zip(objects, poses)):
        drawn = None if pose is None else render_object(obj, pose, background.shape[:2], light, shading)
        if drawn is None:
            continue
        box, mask, colour = drawn
        image[box][mask] = colour[mask]
        amodal[i][box] = mask
    return image, amodal


def visible_masks(amodal: np.ndarray) -> np.ndarray:
    """amodal bool (N, ...) in back-to-front order -> visible bool (N, ...): minus everything painted later.

    Trailing axes are per-pixel (e.g. (N, H, W) or (N, T, H, W)).
    """
    visible = amodal.copy()
    covered = np.zeros(amodal.shape[1:], bool)
    for i in range(len(amodal) - 1, -1, -1):
        visible[i] &= ~covered
        covered |= amodal[i]
    return visible


def finish_image(image: np.ndarray, rng: np.random.Generator, blur_sigma: float, noise_std: float) -> np.ndarray:
    """Camera softness + sensor noise + quantisation: float (H, W, 3) -> uint8 (H, W, 3)."""
    if blur_sigma > 0:
        image = ndimage.gaussian_filter(image, sigma=(blur_sigma, blur_sigma, 0), mode="nearest")
    if noise_std > 0:
        image = image + rng.normal(0, noise_std, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------------- stills
@dataclass
class ToyStill:
    """One source image. image uint8 (H, W, 3); masks bool (N, H, W) true visible masks;
    pseudo bool (M, H, W) the imperfect pseudo-masks; stats: counts of each imperfection."""

    image: np.ndarray
    masks: np.ndarray
    pseudo: np.ndarray
    stats: dict[str, float]


def _place_still_objects(rng: np.random.Generator, cfg: ToyWorldConfig, objects: list[ToyObject]) -> list[Pose]:
    """Poses fully inside the image, some touching an earlier object, none mostly hidden."""
    h, w = cfg.still_size
    poses: list[Pose] = []
    occupied = np.zeros((h, w), bool)
    for obj in objects:
        r = obj.radius
        for _ in range(30):
            if poses and rng.uniform() < cfg.still_cluster_prob:
                j = int(rng.integers(len(poses)))
                ref = poses[j]
                a, d = rng.uniform(0, 2 * np.pi), (r + objects[j].radius) * rng.uniform(0.7, 1.0)
                x, y = ref.x + d * np.cos(a), ref.y + d * np.sin(a)
            else:
                x, y = rng.uniform(r, w - r), rng.uniform(r, h - r)
            pose = Pose(float(np.clip(x, r, w - r)), float(np.clip(y, r, h - r)), float(rng.uniform(0, 2 * np.pi)), 1.0)
            drawn = render_object(obj, pose, (h, w), (1.0, 0.0), 0.0)
            if drawn is None:
                continue
            box, mask, _ = drawn
            if (occupied[box] & mask).sum() <= cfg.still_max_overlap * mask.sum():
                occupied[box] |= mask
                poses.append(pose)
                break
        else:
            break  # no room: fewer objects in this image
    return poses


def render_still(rng: np.random.Generator, cfg: ToyWorldConfig) -> ToyStill:
    """One source still: textured objects on a textured background, even lighting, no blur or noise."""
    h, w = cfg.still_size
    short = min(h, w)
    background = random_background(rng, cfg, short)
    n = int(rng.integers(cfg.still_objects[0], cfg.still_objects[1] + 1))
    objects = [random_object(rng, cfg, short) for _ in range(n)]
    poses = _place_still_objects(rng, cfg, objects)
    objects = objects[: len(poses)]
    light = random_light(rng)
    image, amodal = compose(background.render((h, w)), objects, poses, light, cfg.shading)
    image = image * _uniform(rng, cfg.still_gain)
    masks = visible_masks(amodal)
    masks = masks[masks.reshape(len(masks), -1).sum(1) >= cfg.min_area]
    pseudo, stats = imperfect_masks(rng, masks, cfg)
    return ToyStill(finish_image(image, rng, 0.0, 0.0), masks, pseudo, stats)


# ---------------------------------------------------------------------------- imperfect pseudo-masks
def covers(pseudo: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """pseudo bool (M, H, W), masks bool (N, H, W) -> bool (M, N): pseudo-mask m holds >= half of object n."""
    inter = pseudo.reshape(len(pseudo), -1).astype(np.float32) @ masks.reshape(len(masks), -1).T.astype(np.float32)
    return inter >= 0.5 * masks.reshape(len(masks), -1).sum(1)[None]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-std noise (H, W) varying over ~``cell`` pixels."""
    g = rng.normal(0, 1, (int(shape[0] / cell) + 2, int(shape[1] / cell) + 2)).astype(np.float32)
    zoom = ((g.shape[0] - 1) / shape[0], (g.shape[1] - 1) / shape[1])
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return ndimage.map_coordinates(g, [yy * zoom[0], xx * zoom[1]], order=3, mode="nearest")


def jitter_mask(rng: np.random.Generator, mask: np.ndarray, amplitude: float) -> np.ndarray:
    """Displace a mask's boundary by smooth noise plus a uniform grow/shrink, both ~``amplitude`` px.

    mask bool (H, W) -> bool (H, W). Works on the signed distance to the boundary.
    """
    sdf = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    offset = amplitude * (_smooth_noise(rng, mask.shape, cell=6.0) + rng.uniform(-0.75, 0.75))
    return (sdf + offset) > 0


def _merge(a: np.ndarray, b: np.ndarray, gap: int) -> np.ndarray:
    """Two neighbouring masks as one blob: their union with the gap between them closed."""
    union = a | b
    closed = ndimage.binary_closing(union, ndimage.generate_binary_structure(2, 1), iterations=gap + 1,
                                    border_value=0)
    return closed | union


def _spurious(rng: np.random.Generator, masks: np.ndarray, cfg: ToyWorldConfig) -> np.ndarray | None:
    """A background blob (what a segmenter hallucinates on texture): a random shape minus all objects."""
    h, w = masks.shape[1:]
    blob = random_object(rng, cfg, min(h, w))
    pose = Pose(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, 2 * np.pi), 1.0)
    drawn = render_object(blob, pose, (h, w), (1.0, 0.0), 0.0)
    if drawn is None:
        return None
    out = np.zeros((h, w), bool)
    out[drawn[0]] = drawn[1]
    out &= ~masks.any(0)
    return out if out.sum() >= cfg.min_area else None


def _consistent(mask: np.ndarray, parts: set[int], masks: np.ndarray) -> bool:
    """True if ``mask`` covers exactly the objects ``parts`` (so every imperfection stays measurable)."""
    return set(np.flatnonzero(covers(mask[None], masks)[0]).tolist()) == parts and mask.sum() > 0


def imperfect_masks(rng: np.random.Generator, masks: np.ndarray, cfg: ToyWorldConfig
                    ) -> tuple[np.ndarray, dict[str, float]]:
    """Degrade true masks like an unsupervised image segmenter: miss, merge neighbours, jitter, hallucinate.

    masks bool (N, H, W) -> (pseudo bool (M, H, W), stats) with stats counting: ``objects``, ``missed``,
    ``neighbour_pairs`` (detected pairs within merge_gap, each considered once), ``merged``, ``masks``
    (pseudo-masks that cover >= 1 object), ``jittered``, ``spurious``; and ``jitter_iou_sum`` (IoU of each
    jittered mask with its clean version, summed). "Cover" is ``covers``; every output mask covers exactly
    the objects it was made from, so the counts can be re-measured from the masks alone.
    """
    n = len(masks)
    kept = [i for i in range(n) if rng.uniform() >= cfg.miss_rate]
    groups: list[set[int]] = [{i} for i in kept]
    pairs, merged = 0, 0
    grown = [ndimage.binary_dilation(masks[i], iterations=cfg.merge_gap) for i in range(n)]
    order = rng.permutation(len(kept)).tolist()
    for ai in order:
        for bi in order:
            i, j = kept[ai], kept[bi]
            if i >= j or not (grown[i] & masks[j]).any():
                continue
            gi = next(g for g in groups if i in g)
            gj = next(g for g in groups if j in g)
            if gi is gj or len(gi) > 1 or len(gj) > 1:  # a mask merges at most once
                continue
            pairs += 1
            if rng.uniform() < cfg.merge_rate:
                blob = _merge(masks[i], masks[j], cfg.merge_gap)
                if _consistent(blob, {i, j}, masks):
                    groups.remove(gj)
                    gi.add(j)
                    merged += 1
    out, jittered, jitter_iou = [], 0, 0.0
    for g in groups:
        m = masks[min(g)] if len(g) == 1 else _merge(*masks[sorted(g)], cfg.merge_gap)
        if rng.uniform() < cfg.jitter_rate:
            moved = jitter_mask(rng, m, cfg.jitter_px)
            if _consistent(moved, g, masks):
                jitter_iou += (moved & m).sum() / (moved | m).sum()
                m, jittered = moved, jittered + 1
        out.append(m)
    spurious = 0
    if rng.uniform() < cfg.spurious_rate:
        blob = _spurious(rng, masks, cfg)
        if blob is not None and _consistent(blob, set(), masks):
            out.append(blob)
            spurious = 1
    stats = dict(objects=n, missed=n - len(kept), neighbour_pairs=pairs, merged=merged, masks=len(groups),
                 jittered=jittered, spurious=spurious, jitter_iou_sum=float(jitter_iou))
    pseudo = np.stack(out) if out else np.zeros((0,) + masks.shape[1:], bool)
    return pseudo, stats


# -------------------------------------------------------------------------------------------- videos
@dataclass
class ToyVideo:
    """One target video. frames uint8 (T, H, W, 3); masks bool (N, T, H, W) visible ground truth (all-zero in
    a null frame); amodal bool (N, T, H, W) each object's whole in-frame silhouette (occluders ignored)."""

    frames: np.ndarray
    masks: np.ndarray
    amodal: np.ndarray


def _heading_path(rng: np.random.Generator, cfg: ToyWorldConfig, t: int, speed: float) -> np.ndarray:
    """Displacements (T, 2) from frame 0 along a smoothly curving path at constant speed."""
    heading = rng.uniform(0, 2 * np.pi) + rng.uniform(-cfg.turn, cfg.turn) * np.arange(t)
    steps = speed * np.stack([np.cos(heading), np.sin(heading)], 1)
    return np.concatenate([[[0.0, 0.0]], np.cumsum(steps[:-1], 0)])


def _enter_path(rng: np.random.Generator, t: int, size: tuple[int, int], reach: float) -> np.ndarray:
    """Screen positions (T, 2) of an object that starts fully outside one image edge and walks in."""
    h, w = size
    side = int(rng.integers(4))
    inside = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h])
    start = inside.copy()
    axis, outer = [(0, -reach), (0, w + reach), (1, -reach), (1, h + reach)][side]  # left, right, top, bottom
    start[axis] = outer
    start[1 - axis] += rng.uniform(-0.2, 0.2) * (w, h)[1 - axis]
    arrive = (t - 1) * rng.uniform(0.6, 1.0)  # reach the inner point at 60-100 % of the video
    return start + (inside - start) * (np.arange(t)[:, None] / max(arrive, 1e-6))


def random_tracks(rng: np.random.Generator, cfg: ToyWorldConfig, objects: list[ToyObject], t: int,
                  camera: np.ndarray) -> list[list[Pose]]:
    """Per object, T poses in screen pixels (the camera offset (T, 2) already applied).

    Kinds of motion: a curved path at constant speed (most objects), entering or leaving the frame, or a path
    crossing an earlier object's at some frame (so that the depth order makes one hide the other).
    """
    h, w = cfg.video_size
    tracks, world = [], []
    for k, obj in enumerate(objects):
        scale = np.exp(rng.uniform(-cfg.scale_rate, cfg.scale_rate) * np.arange(t))
        angle = rng.uniform(0, 2 * np.pi) + np.deg2rad(rng.uniform(-cfg.spin, cfg.spin)) * np.arange(t)
        path = _heading_path(rng, cfg, t, _uniform(rng, cfg.speed))
        motion = rng.uniform()
        if motion < cfg.enter_leave_prob:
            reach = obj.radius * scale.max() + 1
            pos = _enter_path(rng, t, (h, w), reach) + camera  # designed on screen
            if rng.uniform() < 0.5:  # leaving = entering played backwards
                pos = (pos - camera)[::-1] + camera
        elif k > 0 and motion < cfg.enter_leave_prob + cfg.cross_prob:
            j, tm = int(rng.integers(k)), int(rng.integers(t // 4, max(t // 4 + 1, 3 * t // 4 + 1)))
            meet = world[j][tm] + rng.uniform(-0.4, 0.4, 2) * obj.radius
            pos = path - path[tm] + meet
        else:
            margin = obj.radius
            pos = path + [rng.uniform(margin, max(margin, w - margin)), rng.uniform(margin, max(margin, h - margin))]
        world.append(pos)
        screen = pos - camera
        tracks.append([Pose(float(x), float(y), float(a), float(s)) for (x, y), a, s in zip(screen, angle, scale)])
    return tracks


def _camera_path(rng: np.random.Generator, cfg: ToyWorldConfig, t: int) -> np.ndarray:
    """Camera offsets (T, 2): a pan at constant speed in a random direction."""
    a, speed = rng.uniform(0, 2 * np.pi), _uniform(rng, cfg.pan)
    return np.arange(t)[:, None] * speed * np.array([[np.cos(a), np.sin(a)]])


def _lighting(rng: np.random.Generator, cfg: ToyWorldConfig, t: int) -> Callable[[int], np.ndarray]:
    """Frame index -> float32 (H, W, 3) illumination: a drifting, tinted gain times a turning ramp."""
    h, w = cfg.video_size
    base = rng.uniform(0.85, 1.1)
    drift = rng.uniform(-cfg.lighting_drift, cfg.lighting_drift) + rng.uniform(-cfg.tint_drift, cfg.tint_drift, 3)
    a0, spin = rng.uniform(0, 2 * np.pi), rng.uniform(-0.15, 0.15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx, yy = (xx - w / 2) / max(h, w), (yy - h / 2) / max(h, w)

    def light(i: int) -> np.ndarray:
        frac = i / max(t - 1, 1)
        gain = (base * (1 + drift * frac)).astype(np.float32)
        ramp = 1 + cfg.light_gradient * 2 * (xx * np.cos(a0 + spin * i) + yy * np.sin(a0 + spin * i))
        return ramp[..., None] * gain

    return light


def render_video(rng: np.random.Generator, cfg: ToyWorldConfig) -> ToyVideo:
    """One target video; objects that are never visible (>= min_area pixels) are left out of ``masks``."""
    h, w = cfg.video_size
    short = min(h, w)
    t = int(rng.integers(cfg.num_frames[0], cfg.num_frames[1] + 1))
    background = random_background(rng, cfg, short)
    n = int(rng.integers(cfg.video_objects[0], cfg.video_objects[1] + 1))
    objects = [random_object(rng, cfg, short) for _ in range(n)]
    camera = _camera_path(rng, cfg, t)
    tracks = random_tracks(rng, cfg, objects, t, camera)
    depth = rng.permutation(n)  # painting order, back to front
    light_dir, lighting = random_light(rng), _lighting(rng, cfg, t)
    frames = np.zeros((t, h, w, 3), np.uint8)
    amodal = np.zeros((n, t, h, w), bool)
    backgrounds = panned_background(background, (h, w), camera)
    for i in range(t):
        image, am = compose(backgrounds[i], [objects[d] for d in depth],
                            [tracks[d][i] for d in depth], light_dir, cfg.shading)
        frames[i] = finish_image(image * lighting(i), rng, cfg.blur_sigma, cfg.noise_std)
        amodal[depth, i] = am
    masks = visible_masks(amodal[depth])[np.argsort(depth)]
    masks &= (masks.sum((2, 3)) >= cfg.min_area)[..., None, None]  # slivers are null frames
    seen = masks.any((1, 2, 3))
    return ToyVideo(frames, masks[seen], amodal[seen])


# ------------------------------------------------------------------------------------------ the world
def iter_stills(cfg: ToyWorldConfig, seed: int) -> Iterator[ToyStill]:
    for i in range(cfg.num_stills):
        yield render_still(np.random.default_rng([seed, SPLIT_STILLS, i]), cfg)


def iter_videos(cfg: ToyWorldConfig, seed: int, split: str) -> Iterator[ToyVideo]:
    """split: "train" | "val"; each video from its own seeded stream."""
    key, count = (SPLIT_TRAIN, cfg.num_train_videos) if split == "train" else (SPLIT_VAL, cfg.num_val_videos)
    for i in range(count):
        yield render_video(np.random.default_rng([seed, key, i]), cfg)


# ------------------------------------------------------------------------------------------- writing
OUTPUT_FILES = ("images", "JPEGImages", "source.json", "source_gt.json", "train.json", "train_gt.json", "val.json")
CATEGORIES = [{"id": 1, "name": "object", "supercategory": "object"}]


def _save_jpeg(image: np.ndarray, path: Path, quality: int) -> None:
    """uint8 (H, W, 3) -> JPEG without chroma subsampling, so colour edges stay on the mask boundaries."""
    Image.fromarray(image).save(path, "JPEG", quality=quality, subsampling=0)


def pseudo_mask_summary(cfg: ToyWorldConfig, stats: list[dict[str, float]]) -> dict:
    """Configured imperfection rates and what the generated stills realised (json-ready)."""
    total = {k: sum(s[k] for s in stats) for k in ("objects", "missed", "neighbour_pairs", "merged", "masks",
                                                    "jittered", "spurious")}

    def ratio(a: float, b: int) -> float | None:
        return round(float(a) / b, 4) if b else None

    return {
        "configured": {"miss_rate": cfg.miss_rate, "merge_rate": cfg.merge_rate, "merge_gap_px": cfg.merge_gap,
                       "jitter_rate": cfg.jitter_rate, "jitter_px": cfg.jitter_px,
                       "spurious_rate": cfg.spurious_rate},
        "counts": total,
        "realised": {"miss_rate": ratio(total["missed"], total["objects"]),
                     "merge_rate": ratio(total["merged"], total["neighbour_pairs"]),
                     "jitter_rate": ratio(total["jittered"], total["masks"]),
                     "spurious_rate": ratio(total["spurious"], len(stats)),
                     "jittered_mean_iou": ratio(sum(s["jitter_iou_sum"] for s in stats), total["jittered"])},
        "definitions": "a pseudo-mask covers an object when it holds >= 50% of the object's true mask; "
                       "missed: covered by none; merged: one mask covers two neighbours (gap <= merge_gap_px); "
                       "jittered: boundary displaced (rate over masks covering objects); spurious: covers none",
    }


def _write_stills(cfg: ToyWorldConfig, seed: int, root: Path, info: dict) -> None:
    """images/*.jpg + source.json (pseudo-masks) + source_gt.json (true masks) under ``root``."""
    (root / "images").mkdir()
    h, w = cfg.still_size
    images, pseudo_anns, true_anns, stats = [], [], [], []
    for i, still in enumerate(iter_stills(cfg, seed), start=1):
        name = f"still_{i:05d}.jpg"
        _save_jpeg(still.image, root / "images" / name, cfg.jpeg_quality)
        images.append(CocoImage(i, name, h, w))
        pseudo_anns += [mask_to_annotation(m, len(pseudo_anns) + k + 1, i) for k, m in enumerate(still.pseudo)]
        true_anns += [mask_to_annotation(m, len(true_anns) + k + 1, i) for k, m in enumerate(still.masks)]
        stats.append(still.stats)
    source_info = {**info, "description": "autoqvis toy world: source stills with imperfect pseudo-masks",
                   "pseudo_masks": pseudo_mask_summary(cfg, stats)}
    gt_info = {**info, "description": "autoqvis toy world: true masks of the source stills (analysis only)"}
    save_coco(CocoDataset(images, pseudo_anns, CATEGORIES, root / "images", extra={"info": source_info}),
              root / "source.json")
    save_coco(CocoDataset(images, true_anns, CATEGORIES, root / "images", extra={"info": gt_info}),
              root / "source_gt.json")


def _write_videos(cfg: ToyWorldConfig, seed: int, split: str, root: Path):
    """JPEGImages/<split>_NNNN/NNNNN.jpg; returns (videos, annotations) as ``autoqvis.data.ytvis`` records."""
    h, w = cfg.video_size
    videos, annotations = [], []
    for vid, video in enumerate(iter_videos(cfg, seed, split), start=1):
        folder = f"{split}_{vid:04d}"
        (root / "JPEGImages" / folder).mkdir(parents=True)
        names = [f"{folder}/{t:05d}.jpg" for t in range(len(video.frames))]
        for frame, name in zip(video.frames, names):
            _save_jpeg(frame, root / "JPEGImages" / name, cfg.jpeg_quality)
        videos.append(Video(vid, names, h, w))
        for track in video.masks:
            present = track.any((1, 2))
            rles = iter(encode_masks(track[present]))
            segs = [next(rles) if p else None for p in present]
            annotations.append(Annotation(len(annotations) + 1, vid, 1, segs, rle_areas(segs), rle_bboxes(segs)))
    return videos, annotations


def _write_all(cfg: ToyWorldConfig, seed: int, root: Path, size: str) -> None:
    """Every output of OUTPUT_FILES into the (empty) folder ``root``."""
    info = {"seed": seed, "size": size, "config": dataclasses.asdict(cfg)}
    _write_stills(cfg, seed, root, info)
    for split in ("train", "val"):
        videos, anns = _write_videos(cfg, seed, split, root)
        about = {**info, "description": f"autoqvis toy world: {split} videos"}
        gt = YTVISDataset(videos, anns, CATEGORIES, root / "JPEGImages", extra={"info": about})
        if split == "val":
            save_ytvis(gt, root / "val.json")
            continue
        save_ytvis(gt, root / "train_gt.json")
        unlabeled = YTVISDataset(videos, [], CATEGORIES, root / "JPEGImages",
                                 extra={"info": {**about, "description": "autoqvis toy world: unlabeled train videos"}})
        save_ytvis(unlabeled, root / "train.json")


def write_toyworld(out_dir: str | os.PathLike, cfg: ToyWorldConfig | None = None, seed: int = 0, *,
                   size: str = "default", overwrite: bool = False) -> dict[str, Path]:
    """Generate the world into ``out_dir`` (see OUTPUT_FILES); returns {name: path}.

    Everything is built in a hidden staging folder inside ``out_dir`` and moved into place at the end,
    json files last, so an interrupted run leaves no partial world behind (and an old one intact).
    cfg: default ``toyworld_config(size)``; seed: >= 0. Raises AutoQVISError if outputs exist and not
    ``overwrite``, or on a bad config.
    """
    cfg = (cfg or toyworld_config(size)).validate()
    if not isinstance(seed, int) or seed < 0:
        raise AutoQVISError(f"toyworld: seed must be an integer >= 0, got {seed!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AutoQVISError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise AutoQVISError(f"{out}: already holds {', '.join(existing)}; use --overwrite to replace the toy world")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".toyworld-", dir=out))
    except OSError as e:
        raise AutoQVISError(f"{out}: output folder is not writable ({e.strerror or e})") from None
    try:
        new = staging / "new"
        new.mkdir()
        _write_all(cfg, seed, new, size)
        old = staging / "old"
        old.mkdir()
        for name in OUTPUT_FILES:  # folders first, then the json files that point into them
            if (out / name).exists():
                os.replace(out / name, old / name)
            os.replace(new / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out / name for name in OUTPUT_FILES}
