"""Training clip sources: frame sampling, eligible frames, shared resize/flip, synthetic sets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis.core.config import Config, InputConfig, SelfTrainConfig
from autoqvis.data.dataset import SyntheticClips, VideoClips, sample_frame_indices
from autoqvis.data.geometry import shortest_edge_size
from autoqvis.core.tracks import encode_mask
from autoqvis.data.ytvis import load_ytvis
from autoqvis.core.errors import AutoQVISError

H, W, T = 24, 32, 8


def _cfg(real_clip_augmentation="resize_flip", frame_sampling="frame_numbers", **input_kw) -> Config:
    """The resize-and-flip chain on frame numbers (the tests of the "official" chain set it themselves)."""
    inp = replace(InputConfig(), min_size_train=[12, 16], max_size_train=40, sampling_frame_range=20,
                  real_clip_augmentation=real_clip_augmentation, **input_kw)
    return Config(input=inp, selftrain=SelfTrainConfig(min_eligible_frames=2, frame_sampling=frame_sampling))


def _square(t: int, k: int) -> np.ndarray:
    """Object k's mask in frame t: an 6x6 square moving right one pixel per frame."""
    m = np.zeros((H, W), dtype=bool)
    m[2 + 10 * k : 8 + 10 * k, 2 + t : 8 + t] = True
    return m


def _write_set(root: Path, selected: dict[int, list[int]] | None = None, present=None) -> Path:
    """Two videos of T frames; frame t of video v has gray level 20*t+1 and white squares (value 255)."""
    (root / "JPEGImages").mkdir(parents=True)
    videos, anns = [], []
    for vid in (1, 2):
        names = []
        for t in range(T):
            img = np.full((H, W, 3), 20 * t + 1, dtype=np.uint8)
            for k in range(2):
                img[_square(t, k)] = 255
            name = f"v{vid}/{t:03d}.png"
            (root / "JPEGImages" / f"v{vid}").mkdir(exist_ok=True)
            Image.fromarray(img).save(root / "JPEGImages" / name)
            names.append(name)
        videos.append({"id": vid, "width": W, "height": H, "length": T, "file_names": names})
        for k in range(2):
            frames_present = present(vid, k) if present else range(T)
            segs = [encode_mask(_square(t, k)) if t in frames_present else None for t in range(T)]
            ann = {"id": 10 * vid + k, "video_id": vid, "category_id": 1, "iscrowd": 0, "segmentations": segs}
            if selected is not None:
                ann["selected"] = selected[vid] if k == 0 else [1] * T
                ann["quality"] = [0.9] * T
                ann["score"] = 0.9
            anns.append(ann)
    path = root / "set.json"
    path.write_text(json.dumps({"videos": videos, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    return path


def _frame_index(frames: torch.Tensor) -> list[int]:
    """Recover t from the gray level of the top-right pixel (outside every square, either flip)."""
    corner = torch.stack([frames[:, 0, 0, 0], frames[:, 0, 0, -1]]).min(dim=0).values
    return [int(round((float(v) - 1) / 20)) for v in corner]


def test_shortest_edge_size_follows_detectron2():
    assert shortest_edge_size(480, 640, 360, 768) == (360, 480)
    assert shortest_edge_size(100, 1000, 96, 192) == (19, 192)  # the long side caps the scale
    assert shortest_edge_size(96, 96, 96, 192) == (96, 96)


def test_sample_frame_indices():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = sample_frame_indices(list(range(100)), 3, 5, rng)
        assert idx == sorted(idx) and len(set(idx)) == 3 and idx[-1] - idx[0] <= 10
    assert sample_frame_indices([4, 7], 3, 20, np.random.default_rng(1)) in ([4, 4, 7], [4, 7, 7])
    assert sample_frame_indices([5], 3, 20, rng) == [5, 5, 5]
    assert sample_frame_indices([1, 50], 2, 5, rng) in ([1, 1], [50, 50])  # the other is out of range
    picked = {t for _ in range(300) for t in sample_frame_indices([0, 3, 9], 2, 0, rng)}
    assert picked == {0, 3, 9}  # range 0: no limit


def test_gt_clips_have_the_contract_shapes_and_aligned_masks(tmp_path):
    clips = VideoClips(load_ytvis(_write_set(tmp_path)), _cfg())
    assert len(clips) == 2 and clips.source == "gt"
    flips = set()
    for seed in range(12):
        s = clips.sample(np.random.default_rng(seed))
        assert set(s) == {"frames", "masks", "labels", "source"}
        t, c, h, w = s["frames"].shape
        assert (t, c) == (3, 3) and min(h, w) in (12, 16) and s["frames"].dtype == torch.float32
        assert s["masks"].dtype == torch.bool and s["masks"].shape == (2, 3, h, w)
        assert s["labels"].tolist() == [0, 0] and s["source"] == "gt"
        # masks and pixels went through the same resize and flip: mask pixels are the bright squares
        gray = s["frames"].mean(dim=1)  # (T, h, w)
        union = s["masks"].any(dim=0)
        assert gray[union].mean() > gray[~union].mean() + 100
        idx = _frame_index(s["frames"])
        assert idx == sorted(idx)
        # the object moves right over time: its centre's side tells whether the clip was flipped
        cols = torch.nonzero(s["masks"][0, 0])[:, 1].float().mean()
        flips.add(bool(cols > w / 2))
    assert flips == {True, False}


def test_same_generator_state_gives_the_same_clip(tmp_path):
    clips = VideoClips(load_ytvis(_write_set(tmp_path)), _cfg())
    a, b = clips.sample(np.random.default_rng(4)), clips.sample(np.random.default_rng(4))
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])


def test_pseudo_labels_sample_only_eligible_frames(tmp_path):
    eligible_v1 = [0, 1, 0, 1, 1, 0, 0, 1]  # frames 1, 3, 4, 7
    only_one_v2 = [0, 0, 0, 0, 0, 1, 0, 0]  # 1 eligible frame < min_eligible_frames: video skipped
    clips = VideoClips(load_ytvis(_write_set(tmp_path, selected={1: eligible_v1, 2: only_one_v2})), _cfg())
    assert len(clips) == 1 and clips.source == "pseudo"
    seen = set()
    for seed in range(40):
        seen |= set(_frame_index(clips.sample(np.random.default_rng(seed))["frames"]))
    assert seen == {1, 3, 4, 7}
    everything = VideoClips(load_ytvis(tmp_path / "set.json"), _cfg(), eligible=False)
    assert len(everything) == 2


def test_instances_absent_from_the_sampled_frames_are_dropped(tmp_path):
    # object 1 of each video only exists in frame 0; a clip without frame 0 has one instance
    path = _write_set(tmp_path, present=lambda vid, k: range(T) if k == 0 else [0])
    clips = VideoClips(load_ytvis(path), _cfg())
    counts = {}
    for seed in range(30):
        s = clips.sample(np.random.default_rng(seed))
        counts[0 in _frame_index(s["frames"])] = s["masks"].shape[0]
        assert s["labels"].shape == (s["masks"].shape[0],)
    assert counts == {True: 2, False: 1}


def test_mask_of_the_wrong_size_is_a_clear_error(tmp_path):
    dataset = load_ytvis(_write_set(tmp_path))
    dataset.annotations[1].segmentations = [encode_mask(np.zeros((H, W + 1), dtype=bool))] * T  # in-memory edit
    clips = VideoClips(dataset, _cfg())
    with pytest.raises(AutoQVISError, match=r"set.json: annotation 11 \(video 1\): segmentations\[\d\] is 33x24, the video is 32x24"):
        for seed in range(10):
            clips.sample(np.random.default_rng(seed))


def test_synthetic_ytvis_set_is_tagged_synthetic(tmp_path):
    clips = SyntheticClips(_write_set(tmp_path, selected={1: [0] * T, 2: [0] * T}), _cfg())
    assert len(clips) == 2  # a synthetic set uses every frame, whatever flags it carries
    s = clips.sample(np.random.default_rng(0))
    assert s["source"] == "synthetic" and s["masks"].shape[:2] == (2, 3)


def test_neither_coco_nor_ytvis_is_a_clear_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"foo": []}))
    with pytest.raises(AutoQVISError, match="x.json: neither a COCO json"):
        SyntheticClips(p, _cfg())


# ------------------------------------------------------------------ issue 14: the official mapper on real clips
def _write_video(root: Path, frames: list[np.ndarray], masks: list[list[np.ndarray | None]],
                 selected: list[list[int]] | None = None, length: int | None = None) -> Path:
    """One video; ``frames[t]`` is written for t < len(frames), later frame names reuse the last file."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    names = []
    for t, f in enumerate(frames):
        names.append(f"v/{t:03d}.png")
        (root / "JPEGImages" / "v").mkdir(exist_ok=True)
        Image.fromarray(f).save(root / "JPEGImages" / names[-1])
    names += [names[-1]] * ((length or len(frames)) - len(frames))
    anns = []
    for k, track in enumerate(masks):
        ann = {"id": k + 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
               "segmentations": [None if m is None else encode_mask(m) for m in track]}
        if selected is not None:
            ann.update(selected=selected[k], quality=[0.9] * len(track), score=0.9)
        anns.append(ann)
    path = root / "set.json"
    path.write_text(json.dumps({"videos": [{"id": 1, "width": w, "height": h, "length": len(names), "file_names": names}],
                                "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    return path


def _frame_extents(frames: torch.Tensor) -> list[tuple[int, int]]:
    """(h, w) of each frame on the zero-padded canvas: the bounding box of its non-zero pixels (the source frames
    have no zero pixel, and a rotation by <= 15 deg leaves the middle of every border row and column inside)."""
    out = []
    for f in frames.sum(dim=1):
        rows, cols = torch.nonzero(f > 0, as_tuple=True)
        out.append((int(rows.max()) + 1, int(cols.max()) + 1))
    return out


def test_official_chain_on_real_clips_sizes_crop_rotation_photometric(tmp_path):
    """YTVISDatasetMapper: per frame RandomCrop absolute (600, 720), shortest edge 360/480 (max 1333) per clip,
    per frame brightness and contrast in [0.9, 1.1] and a rotation; resize_flip keeps the 16:9 frame."""
    gray = np.full((720, 1280, 3), 128, dtype=np.uint8)
    obj = np.zeros((720, 1280), dtype=bool)
    obj[300:420, 600:700] = True
    path = _write_video(tmp_path, [gray] * 3, [[obj] * 3])
    cfg = Config()  # the paper's values: official chain, synth.* as VideoCutLER
    assert cfg.input.real_clip_augmentation == "official"
    clips = VideoClips(load_ytvis(path), cfg, eligible=False)
    sizes_differ = corners_black = 0
    levels = []
    for seed in range(8):
        s = clips.sample(np.random.default_rng(seed))
        ext = _frame_extents(s["frames"])
        shorts = {min(e) for e in ext}
        assert len(shorts) == 1 and shorts <= {360, 480}  # one shortest edge for the clip
        for h, w in ext:  # a 600..720 x 600..720 crop resized: aspect ratio within [600/720, 720/600]
            assert 600 / 720 - 0.01 <= w / h <= 720 / 600 + 0.01 and max(h, w) <= 1333
        sizes_differ += len(set(ext)) > 1  # the crop is drawn per frame
        for t, (h, w) in enumerate(ext):
            f = s["frames"][t, 0]
            corners_black += int(f[0, 0] == 0 or f[0, w - 1] == 0 or f[h - 1, 0] == 0 or f[h - 1, w - 1] == 0)
            inner = f[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20]
            assert float(inner.max() - inner.min()) <= 1.0  # a uniform frame stays uniform: brightness x mean
            levels.append(float(inner.mean()))
        assert s["masks"].shape[0] == 1 and s["masks"].any()
    assert sizes_differ >= 6 and corners_black >= 20  # rotations of exactly 0 deg are improbable
    levels = np.array(levels)  # 128 x brightness (contrast around the frame's own mean leaves it as is)
    assert levels.min() >= 0.9 * 128 - 1 and levels.max() <= 1.1 * 128 + 1 and levels.std() > 3
    old = VideoClips(load_ytvis(path), replace(cfg, input=replace(cfg.input, real_clip_augmentation="resize_flip")),
                     eligible=False)
    s = old.sample(np.random.default_rng(0))
    assert set(_frame_extents(s["frames"])) <= {(360, 640), (432, 768)}  # shared resize only (max 768)


def test_official_chain_flips_the_clip_once_and_moves_masks_with_pixels(tmp_path):
    """Small frames: the crop is a no-op, the flip is shared by the frames of a clip, masks follow the pixels."""
    ramp = np.broadcast_to(np.linspace(30, 150, 160).astype(np.uint8)[None, :, None], (112, 160, 3)).copy()
    frames, track = [], []
    for t in range(4):
        f, m = ramp.copy(), np.zeros((112, 160), dtype=bool)
        m[8:28, 20 + 5 * t:50 + 5 * t] = True  # clear of the middle row the flip is read on
        f[m] = 255
        frames.append(f)
        track.append(m)
    cfg = Config()
    cfg.synth.min_size, cfg.synth.max_size = [80, 96, 112], 176
    clips = VideoClips(load_ytvis(_write_video(tmp_path, frames, [track])), cfg, eligible=False)
    flips = set()
    for seed in range(16):
        s = clips.sample(np.random.default_rng(seed))
        per_frame = set()
        for t, (h, w) in enumerate(_frame_extents(s["frames"])):
            band = s["frames"][t, 0, h // 2, w // 8:w - w // 8]  # a middle row, off the rotated corners
            per_frame.add(bool(band[: len(band) // 4].mean() > band[-len(band) // 4:].mean()))  # bright left: flipped
            mask = s["masks"][0, t, :h, :w]
            bright = s["frames"][t, 0, :h, :w] > 200  # the ramp stays below 150 x 1.1 x 1.1
            assert (mask & bright).sum() >= 0.85 * mask.sum() and mask.sum() > 0
        assert len(per_frame) == 1  # one flip for the whole clip
        flips |= per_frame
    assert flips == {True, False}


def test_frame_sampling_on_eligible_positions_pairs_far_frames(tmp_path):
    """The official json keeps only eligible frames: +-20 and the draw with replacement act on list positions."""
    rng = np.random.default_rng(0)
    pos = [tuple(sample_frame_indices([0, 50, 100], 3, 20, rng, "eligible_positions")) for _ in range(400)]
    # positions 0..2 lie within +-20 of each other: frames 50 and 100 numbers apart pair up
    assert {(0, 0, 50), (0, 50, 50), (0, 50, 100), (0, 0, 100), (50, 100, 100)} <= set(pos)
    assert all(set(p) <= {0, 50, 100} for p in pos)
    nums = {tuple(sample_frame_indices([0, 50, 100], 3, 20, rng, "frame_numbers")) for _ in range(200)}
    assert nums == {(0, 0, 0), (50, 50, 50), (100, 100, 100)}  # 50 frames apart: never together by number
    # with replacement even where 2 distinct neighbours exist (np.random.choice's default)
    dup = [p for p in (sample_frame_indices(list(range(10)), 3, 20, rng, "eligible_positions") for _ in range(300))
           if len(set(p)) < 3]
    assert 30 <= len(dup) <= 90  # P(two others equal) = 1/9 per draw
    assert all(len(set(sample_frame_indices(list(range(10)), 3, 20, rng, "frame_numbers"))) == 3 for _ in range(100))

    # through VideoClips: a pseudo-labelled video whose eligible frames are 0, 50 and 100
    small = [np.full((24, 32, 3), 20 * t + 1, dtype=np.uint8) for t in range(3)]
    sq = np.zeros((24, 32), dtype=bool)
    sq[5:10, 5:10] = True
    sel = [1 if t in (0, 50, 100) else 0 for t in range(101)]
    frames = [small[min(t // 50, 2)] for t in range(101)]
    path = _write_video(tmp_path, frames, [[sq] * 101], selected=[sel])
    ds = load_ytvis(path)
    for mode, together in (("eligible_positions", True), ("frame_numbers", False)):
        clips = VideoClips(ds, _cfg(frame_sampling=mode))
        mixed = any(len(set(_frame_index(clips.sample(np.random.default_rng(k))["frames"]))) > 1 for k in range(20))
        assert mixed is together, mode
