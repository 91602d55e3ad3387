"""Sources of training clips: synthetic clips from stills or a synthetic video set, and real videos.

Every source returns the sample dict of docs/CONTRACTS.md ("Clips for training"):
``frames`` float32 (T, 3, H, W) RGB 0..255, ``masks`` bool (N, T, H, W), ``labels`` int64 (N,) all 0,
``source`` "synthetic" | "pseudo" | "gt". A sample depends only on the generator it is given.

Real-video clips follow the official YTVISDatasetMapper: T frames, sorted, within ``sampling_frame_range`` of
a reference frame (``selftrain.frame_sampling``: positions in the list of eligible frames or frame numbers),
then ``input.real_clip_augmentation``: the synthetic clips' per-frame chain (data/synth.py) or only one
shortest-edge size and one horizontal flip for the whole clip. Instances absent from every sampled frame
are dropped (N may be 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..core.config import Config
from ..core.errors import AutoQVISError
from ..core.fileio import read_json
from ..core.tracks import decode_rle, eligible_frames, selection_flags
from .coco import load_coco
from .geometry import shortest_edge_size
from .synth import ImageCut2Video, augment_frames
from .synth import check_config as check_synth_config
from .ytvis import Annotation, Video, YTVISDataset, load_ytvis


# ------------------------------------------------------------------------------------- helpers
def sample_frame_indices(
    candidates: Sequence[int], num: int, frame_range: int, rng: np.random.Generator,
    mode: str = "frame_numbers",
) -> list[int]:
    """``num`` sorted frame indices from ``candidates``: a reference frame and ``num - 1`` others.

    mode "eligible_positions" (the official mapper on a json that keeps only the candidate frames): the
    others are drawn with replacement among the candidates whose *position* in the sorted list lies within
    ``frame_range`` of the reference's, so frames far apart in the video can pair up.
    mode "frame_numbers": the others lie within ``frame_range`` frame numbers of the reference (all
    candidates when it is <= 0) and are distinct when enough candidates exist, repeated otherwise.
    """
    cands = np.asarray(sorted(candidates), dtype=np.int64)
    if mode == "eligible_positions":
        pos = int(rng.integers(len(cands)))
        lo, hi = (max(0, pos - frame_range), min(len(cands), pos + frame_range + 1)) if frame_range > 0 else (0, len(cands))
        near = np.concatenate([cands[lo:pos], cands[pos + 1:hi]])
        others = rng.choice(near, size=num - 1) if len(near) else np.full(num - 1, cands[pos])
        return sorted(int(t) for t in [cands[pos], *others])
    if mode != "frame_numbers":
        raise AutoQVISError(f"config key selftrain.frame_sampling: {mode!r} is not one of eligible_positions, frame_numbers")
    ref = cands[rng.integers(len(cands))]
    near = cands[cands != ref]
    if frame_range > 0:
        near = near[np.abs(near - ref) <= frame_range]
    if len(near) == 0:
        others = np.full(num - 1, ref)
    else:
        others = rng.choice(near, size=num - 1, replace=len(near) < num - 1)
    return sorted(int(t) for t in [ref, *others])


def make_sample(frames: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, source: str) -> dict[str, Any]:
    """Pack a clip: drops instances empty in every frame; ``labels`` all 0 (one object class).

    Args:
        frames: float32 (T, 3, H, W) RGB 0..255 (numpy or CPU tensor).
        masks: bool (N, T, H, W).
    """
    # numpy, not torch: tiny torch ops wake the intra-op thread pool, which costs more than the work
    frames, masks = np.asarray(frames, dtype=np.float32), np.asarray(masks, dtype=bool)
    masks = masks[masks.reshape(masks.shape[0], -1).any(axis=1)]
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(frames)),
        "masks": torch.from_numpy(np.ascontiguousarray(masks)),
        "labels": torch.zeros(masks.shape[0], dtype=torch.int64),
        "source": source,
    }


def augment_clip(
    frames: np.ndarray, masks: np.ndarray, cfg: Config, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shared shortest-edge resize (size drawn from ``cfg.input.min_size_train``) and horizontal flip.

    Frames are resized by PIL's bilinear filter as detectron2's ``ResizeTransform`` does; masks by
    nearest pixel centres. Numpy/PIL throughout: single-threaded and cheap next to the model step.

    Args:
        frames: uint8 (T, H, W, 3) RGB.
        masks: bool (N, T, H, W).
    Returns:
        frames float32 (T, 3, h, w) in 0..255 and masks bool (N, T, h, w).
    """
    _, h, w, _ = frames.shape
    short = int(rng.choice(cfg.input.min_size_train))
    size = shortest_edge_size(h, w, short, cfg.input.max_size_train)
    flip = bool(rng.random() < cfg.input.hflip_prob)
    if size != (h, w):
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size[::-1], Image.BILINEAR)) for f in frames])
        rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
        masks = masks[:, :, rows[:, None], cols[None, :]]
    if flip:
        frames, masks = frames[:, :, ::-1], masks[..., ::-1]
    return frames.transpose(0, 3, 1, 2).astype(np.float32), masks


# ------------------------------------------------------------------------------------- real videos
class VideoClips:
    """Clips of a YouTubeVIS set with annotations (ground truth or pseudo-labels).

    Args:
        dataset: the videos and their annotation tracks.
        cfg: uses ``cfg.input`` (frames per clip, range, sizes, flip, ``real_clip_augmentation``),
            ``cfg.synth`` (the "official" augmentation), ``cfg.selftrain.min_eligible_frames`` and
            ``cfg.selftrain.frame_sampling``.
        eligible: sample only eligible frames (eq. 14: every track of the video is selected there;
            tracks without ``selected`` flags, i.e. ground truth, are selected everywhere) and skip
            videos with fewer than ``min_eligible_frames`` of them or with no annotation at all.
            False: any frame of any video.
        source: the ``source`` tag of the samples; default "pseudo" when the annotations carry
            ``selected`` flags, else "gt".
        augmentation, frame_sampling: override ``cfg.input.real_clip_augmentation`` and
            ``cfg.selftrain.frame_sampling`` (a pre-rendered synthetic set is already augmented).
    """

    def __init__(self, dataset: YTVISDataset, cfg: Config, eligible: bool = True, source: str | None = None,
                 augmentation: str | None = None, frame_sampling: str | None = None) -> None:
        self.dataset, self.cfg = dataset, cfg
        self.augmentation = augmentation or cfg.input.real_clip_augmentation
        self.frame_sampling = frame_sampling or cfg.selftrain.frame_sampling
        if self.augmentation == "official":
            check_synth_config(cfg.synth)  # a bad synth.* value fails here, not at the first clip
        self.entries: list[tuple[Video, list[int], list[Annotation]]] = []
        for video in dataset.videos:
            anns = dataset.annotations_of(video.id)
            frames = eligible_frames([selection_flags(a) for a in anns]) if eligible else list(range(video.length))
            if len(frames) == 0 or (eligible and len(frames) < cfg.selftrain.min_eligible_frames):
                continue
            self.entries.append((video, frames, [a for a in anns if not a.iscrowd]))
        if source is None:
            source = "pseudo" if any("selected" in a.extra for a in dataset.annotations) else "gt"
        self.source = source

    def __len__(self) -> int:
        return len(self.entries)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One clip of a uniformly chosen video (sample dict of CONTRACTS)."""
        if not self.entries:
            raise AutoQVISError(f"{self.dataset.name}: no video to sample a training clip from")
        video, candidates, anns = self.entries[int(rng.integers(len(self.entries)))]
        idx = sample_frame_indices(candidates, self.cfg.input.sampling_frame_num, self.cfg.input.sampling_frame_range, rng,
                                   self.frame_sampling)
        frames = np.stack([self.dataset.read_frame(video, t) for t in idx])
        masks = np.zeros((len(anns), len(idx), video.height, video.width), dtype=bool)
        for i, ann in enumerate(anns):
            for j, t in enumerate(idx):
                if ann.segmentations[t] is not None:
                    masks[i, j] = self._decode(ann, t, video)
        if self.augmentation == "official":
            x, m = augment_frames(frames, masks, self.cfg.synth, rng)
            return make_sample(x.transpose(0, 3, 1, 2), m, self.source)
        x, m = augment_clip(frames, masks, self.cfg, rng)
        return make_sample(x, m, self.source)

    def _decode(self, ann: Annotation, t: int, video: Video) -> np.ndarray:
        mask = decode_rle(ann.segmentations[t])
        if mask.shape != (video.height, video.width):
            raise AutoQVISError(
                f"{self.dataset.name}: annotation {ann.id} (video {video.id}): segmentations[{t}] is "
                f"{mask.shape[1]}x{mask.shape[0]}, the video is {video.width}x{video.height}"
            )
        return mask


# ------------------------------------------------------------------------------------- synthetic
class SyntheticClips:
    """Synthetic training clips from a COCO json of stills or a YouTubeVIS synthetic video set.

    COCO stills (e.g. CutLER's ImageNet pseudo-masks): ImageCut2Video turns a random image with at
    least one mask into a clip, with a second random image as copy-paste partner when
    ``cfg.synth.copy_paste``. A YouTubeVIS set (``autoqvis synth`` output): like ``VideoClips`` over
    all frames. Either way the samples are tagged "synthetic".

    Args:
        coco_or_ytvis_path: the json; its kind is told by its ``videos`` (YTVIS) or ``images`` (COCO) key.
        cfg: the full config (``synth`` for stills, ``input`` for videos).
    """

    def __init__(self, coco_or_ytvis_path: str | Path, cfg: Config) -> None:
        path = Path(coco_or_ytvis_path)
        data = read_json(path, "synthetic training set")
        if isinstance(data, dict) and "videos" in data:
            # the clips were augmented when `autoqvis synth` rendered them: resize and flip only, every frame kept
            self.videos: VideoClips | None = VideoClips(load_ytvis(path), cfg, eligible=False, source="synthetic",
                                                        augmentation="resize_flip", frame_sampling="frame_numbers")
            return
        if not (isinstance(data, dict) and "images" in data):
            raise AutoQVISError(f"{path}: neither a COCO json ('images') nor a YouTubeVIS json ('videos')")
        del data
        self.videos = None
        self.cfg = cfg
        self.coco = load_coco(path)
        self.image_ids = [im.id for im in self.coco.images if self.coco.annotations_of(im.id, include_crowd=False)]
        if not self.image_ids:
            raise AutoQVISError(f"{path}: no image has a (non-crowd) mask; nothing to train on")
        self.synth = ImageCut2Video(cfg.synth)

    def __len__(self) -> int:
        return len(self.videos) if self.videos is not None else len(self.image_ids)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One synthetic clip (sample dict of CONTRACTS, ``source`` "synthetic")."""
        if self.videos is not None:
            return self.videos.sample(rng)
        i = int(rng.integers(len(self.image_ids)))
        paste = None
        if self.cfg.synth.copy_paste and len(self.image_ids) > 1:
            j = int(rng.integers(len(self.image_ids) - 1))
            paste = self._still(self.image_ids[j + (j >= i)])  # any image but the first
        frames, masks = self.synth(*self._still(self.image_ids[i]), rng, paste=paste)
        return make_sample(frames.transpose(0, 3, 1, 2), masks, "synthetic")

    def _still(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        return self.coco.read_image(image_id), self.coco.masks(image_id)


__all__ = [
    "SyntheticClips",
    "VideoClips",
    "augment_clip",
    "make_sample",
    "sample_frame_indices",
]
