"""The val-split noise of a gain: paired bootstrap over videos (eval/bootstrap.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autoqvis.eval.bootstrap import paired_bootstrap, per_video_stat
from autoqvis.eval.ytvis_eval import evaluate, evaluate_detailed
from autoqvis.core.tracks import encode_masks


def world(n_videos: int = 6):
    """n videos of 2 frames, one 4x4 square object each; a perfect, a shifted (IoU 1/3) or no detection."""
    videos, anns, perfect, shifted = [], [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "width": 8, "height": 8, "length": 2, "file_names": [f"{v}/0.jpg", f"{v}/1.jpg"]})
        m = np.zeros((2, 8, 8), bool)
        m[:, 2:6, 2:6] = True
        s = np.zeros((2, 8, 8), bool)
        s[:, 2:6, 4:8] = True  # half the square: IoU 8 / 24
        segs = encode_masks(m)
        anns.append({"id": v, "video_id": v, "category_id": 1, "iscrowd": 0, "segmentations": segs,
                     "areas": [16, 16], "bboxes": [[2, 2, 4, 4]] * 2})
        perfect.append({"video_id": v, "category_id": 1, "score": 0.9, "segmentations": segs})
        shifted.append({"video_id": v, "category_id": 1, "score": 0.9, "segmentations": encode_masks(s)})
    gt = {"videos": videos, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    return gt, perfect, shifted


def test_perfect_against_nothing_is_a_gain_of_one_without_spread(tmp_path):
    gt, perfect, shifted = world()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    before = evaluate_detailed(tmp_path / "gt.json", shifted, workers=1)
    after = evaluate_detailed(tmp_path / "gt.json", perfect, workers=1)
    out = paired_bootstrap(before.videos, after.videos, draws=200)
    assert out["delta"] == pytest.approx(1.0) and out["std"] == 0.0
    assert out["low"] == pytest.approx(1.0) and out["high"] == pytest.approx(1.0) and out["videos"] == 6
    assert paired_bootstrap(after.videos, after.videos, draws=50)["std"] == 0.0


def test_half_right_has_the_binomial_spread_and_is_seeded(tmp_path):
    gt, perfect, shifted = world(40)
    mixed = [p if i % 2 == 0 else s for i, (p, s) in enumerate(zip(perfect, shifted))]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    before = evaluate_detailed(tmp_path / "gt.json", shifted, workers=1)
    after = evaluate_detailed(tmp_path / "gt.json", mixed, workers=1)
    assert after.stats["AP50"] == pytest.approx(evaluate(tmp_path / "gt.json", mixed, workers=1)["AP50"])
    out = paired_bootstrap(before.videos, after.videos, draws=2000, seed=1)
    # half the videos found: AP50 = precision 1 up to recall ~p, so the resampled AP50 follows the share found
    assert out["delta"] == pytest.approx(after.stats["AP50"])
    assert out["std"] == pytest.approx(np.sqrt(0.25 / 40), rel=0.15)
    assert out["low"] < out["delta"] < out["high"]
    assert paired_bootstrap(before.videos, after.videos, draws=2000, seed=1) == out  # seeded
    per_video = per_video_stat(after.videos)
    assert [per_video[v] for v in (1, 2, 3)] == pytest.approx([1.0, 0.0, 1.0])
