"""Masks in the DAVIS layout, which VOS evaluation and annotation tools read: ``Annotations/<video>/<frame>.png``,
one palette PNG per frame whose pixel value is the object id (0 = background), and the way to and from
YouTubeVIS json.

A YTVIS annotation made from a PNG folder keeps its pixel value as ``davis_id``, so json -> PNG gives back the
same pixels; tracks without one (results, other json) are numbered 1, 2, ... best score first. Where masks
overlap, the higher-scoring track owns the pixel (ground truth: the earlier annotation).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_bytes
from ..core.tracks import decode_rle, encode_track
from .video_io import natural_key

MAX_ID = 255  # an 8-bit palette PNG holds ids 1..255


def davis_palette() -> list[int]:
    """The 256-colour palette DAVIS ships in its PNGs (PASCAL VOC's bit-interleaved colour map), flat RGB."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


_PALETTE = davis_palette()


def label_map(masks: Sequence[np.ndarray | None], ids: Sequence[int], scores: Sequence[float],
              shape: tuple[int, int]) -> np.ndarray:
    """One frame's masks (bool (H, W) or None) -> uint8 (H, W) of ids, 0 = background; where masks overlap the
    highest score wins (ties: the earlier mask)."""
    out = np.zeros(shape, np.uint8)
    order = sorted(range(len(masks)), key=lambda i: (scores[i], -i))  # painted last = kept
    for i in order:
        m = masks[i]
        if m is not None:
            out[np.asarray(m, bool)] = ids[i]
    return out


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """uint8 (H, W) ids -> a palette PNG (atomic)."""
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="P")
    image.putpalette(_PALETTE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(path, buf.getvalue())


def read_label_png(path: str | Path) -> np.ndarray:
    """A DAVIS label PNG -> uint8 (H, W) of ids (palette indices; a grayscale PNG's values)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1"):
                raise AutoQVISError(f"{path}: a label PNG must be palette or grayscale (pixel value = object id), "
                                    f"got mode {image.mode}")
            return np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8).copy()
    except (OSError, ValueError) as e:
        raise AutoQVISError(f"{path}: not a readable PNG ({e})") from None


def track_ids(tracks: Sequence[dict[str, Any]]) -> list[int]:
    """The PNG id of each track: its ``davis_id`` when every track has one, else 1, 2, ... in the given order."""
    if tracks and all(isinstance(t.get("davis_id"), int) for t in tracks):
        return [int(t["davis_id"]) for t in tracks]
    return list(range(1, len(tracks) + 1))


def video_label_maps(tracks: Sequence[dict[str, Any]], length: int, shape: tuple[int, int],
                     ids: Sequence[int] | None = None) -> np.ndarray:
    """uint8 (T, H, W): the label map of every frame of one video. ``tracks``: dicts with ``segmentations`` (RLE
    or None per frame) and optionally ``score`` (absent: earlier tracks win overlaps)."""
    ids = list(ids) if ids is not None else track_ids(tracks)
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise AutoQVISError(f"object ids must lie in 1..{MAX_ID} for a palette PNG, got {max(ids)}")
    scores = [float(t.get("score", -k)) for k, t in enumerate(tracks)]
    out = np.zeros((length, *shape), np.uint8)
    for t in range(length):
        masks = [decode_rle(tr["segmentations"][t]) if tr["segmentations"][t] is not None else None for tr in tracks]
        out[t] = label_map(masks, ids, scores, shape)
    return out


def frame_png_name(file_name: str) -> str:
    """``video/00005.jpg`` -> ``00005.png``."""
    return Path(file_name).stem + ".png"


def write_davis_video(annotations_dir: Path, video_name: str, file_names: Sequence[str], labels: np.ndarray) -> None:
    """Write one video's label maps uint8 (T, H, W) as ``annotations_dir/<video_name>/<frame>.png``."""
    for name, lab in zip(file_names, labels):
        write_label_png(annotations_dir / video_name / frame_png_name(name), lab)


def read_davis_folder(annotations_dir: str | Path, image_ext: str = ".jpg") -> dict[str, Any]:
    """A DAVIS ``Annotations`` folder (one sub-folder of PNGs per video) -> YouTubeVIS json (ground-truth form).

    Videos get ids 1, 2, ... in natural name order, ``file_names`` ``<video>/<frame><image_ext>`` (DAVIS's
    ``JPEGImages/<res>/`` layout); every pixel value > 0 found in a video is one annotation (``davis_id`` = the
    value), with an RLE in every frame (None where the object is absent).
    """
    root = Path(annotations_dir)
    if not root.is_dir():
        raise AutoQVISError(f"{root}: not a folder (expected Annotations/<video>/<frame>.png)")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: natural_key(p.name))
    if not folders:
        raise AutoQVISError(f"{root}: holds no video folders (expected Annotations/<video>/<frame>.png)")
    videos, annotations = [], []
    for vid, folder in enumerate(folders, start=1):
        pngs = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=lambda p: natural_key(p.name))
        if not pngs:
            raise AutoQVISError(f"{folder}: holds no .png label frames")
        labels = [read_label_png(p) for p in pngs]
        shape = labels[0].shape
        for p, lab in zip(pngs, labels):
            if lab.shape != shape:
                raise AutoQVISError(f"{p}: is {lab.shape[1]}x{lab.shape[0]}, the video's first frame "
                                    f"{shape[1]}x{shape[0]}")
        stack = np.stack(labels)
        videos.append({"id": vid, "name": folder.name, "width": int(shape[1]), "height": int(shape[0]),
                       "length": len(pngs), "file_names": [f"{folder.name}/{p.stem}{image_ext}" for p in pngs]})
        for obj in (int(v) for v in np.unique(stack) if v != 0):
            segs = encode_track(stack == obj)
            annotations.append({"id": len(annotations) + 1, "video_id": vid, "category_id": 1, "iscrowd": 0,
                                "davis_id": obj, "segmentations": segs})
    return {"info": {"description": f"DAVIS-style labels from {root}"}, "videos": videos,
            "annotations": annotations, "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}


def video_folder_name(video: Any) -> str:
    """The folder of a YTVIS video record (dict or ``Video``): its ``name``, else its frames' folder, else its id."""
    extra = video.get if isinstance(video, dict) else (video.extra or {}).get
    name = extra("name")
    file_names = video["file_names"] if isinstance(video, dict) else video.file_names
    if not name:
        name = Path(file_names[0]).parent.name if file_names else ""
    return str(name or f"video_{video['id'] if isinstance(video, dict) else video.id}")


__all__ = ["MAX_ID", "davis_palette", "frame_png_name", "label_map", "read_davis_folder", "read_label_png",
           "track_ids", "video_folder_name", "video_label_maps", "write_davis_video", "write_label_png"]
