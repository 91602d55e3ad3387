"""Training clip sources: frame sampling, eligible frames, shared resize/flip, synthetic sets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis.config import Config, InputConfig, SelfTrainConfig
from autoqvis.data.dataset import (
    SyntheticClips,
    VideoClips,
    sample_frame_indices,
    shortest_edge_size,
)
from autoqvis.data.ytvis import encode_mask, load_ytvis
from autoqvis.errors import AutoQVISError

H, W, T = 24, 32, 8


def _cfg(**input_kw) -> Config:
    inp = replace(InputConfig(), min_size_train=[12, 16], max_size_train=40, sampling_frame_range=20, **input_kw)
    return Config(input=inp, selftrain=SelfTrainConfig(min_eligible_frames=2))


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
