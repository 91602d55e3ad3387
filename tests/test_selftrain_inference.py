"""Inference over videos and datasets (engine/inference.py) with a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _selftrain_cases import TINY_OVERRIDES
from autoqvis import build_model, load_config
from autoqvis.core.tracks import decode_rle
from autoqvis.data.ytvis import YTVISDataset, Video, load_results
from autoqvis.engine.inference import (
    predict_dataset,
    predict_video,
    predict_video_rle,
    resize_for_test,
    results_from_prediction,
)


@pytest.fixture(scope="module")
def cfg():
    return load_config("toy", TINY_OVERRIDES)


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _frames(t=4, h=48, w=72, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (t, h, w, 3), dtype=np.uint8)
    frames[:, 10:30, 20:45] = 200  # a bright block, so some masks are non-empty
    return frames


def test_resize_for_test_shortest_edge_and_cap(cfg):
    x = resize_for_test(_frames(2, 48, 72), cfg)  # short side 48 -> 64, long 96 (= max_size_test)
    assert x.shape == (2, 3, 64, 96) and x.dtype == torch.float32 and float(x.max()) <= 255
    x = resize_for_test(_frames(1, 40, 200), cfg)  # long side capped at 96
    assert x.shape == (1, 3, 19, 96)


def test_predict_video_dense_at_original_size(model, cfg):
    pred = predict_video(model, iter(list(_frames())), cfg)  # an iterator of frames works too
    k = cfg.model.test_topk
    assert pred["masks"].shape == (k, 4, 48, 72) and pred["masks"].dtype == bool
    assert pred["pred_iou"].shape == (k, 4) and (0 <= pred["pred_iou"]).all() and (pred["pred_iou"] <= 1).all()
    assert (np.diff(pred["scores"]) <= 0).all()


def test_rle_form_matches_dense_and_windowing_covers_the_video(model, cfg):
    frames = _frames(6)
    dense = predict_video(model, frames, cfg)
    rle = predict_video_rle(model, frames, cfg)
    np.testing.assert_allclose(rle["scores"], dense["scores"])
    for track_segs, track_masks in zip(rle["segmentations"], dense["masks"]):
        for seg, m in zip(track_segs, track_masks):
            assert (seg is None) == (not m.any())
            if seg is not None:
                np.testing.assert_array_equal(decode_rle(seg), m)
    cfg_w = load_config("toy", TINY_OVERRIDES + ["input.test_window=7", "input.test_window_overlap=2"])
    whole = predict_video_rle(model, frames, cfg_w)  # one window longer than the video = one pass
    assert whole["segmentations"] == rle["segmentations"]
    np.testing.assert_allclose(whole["pred_iou"], rle["pred_iou"])
    cfg_w = load_config("toy", TINY_OVERRIDES + ["input.test_window=3", "input.test_window_overlap=1"])
    win = predict_video_rle(model, frames, cfg_w)
    assert len(win["segmentations"]) <= cfg.model.test_topk
    assert all(len(s) == 6 for s in win["segmentations"]) and win["pred_iou"].shape[1] == 6


def test_results_and_dataset_stream(model, cfg, tmp_path):
    from PIL import Image

    frames = _frames(3)
    for t, f in enumerate(frames):
        (tmp_path / "v").mkdir(exist_ok=True)
        Image.fromarray(f).save(tmp_path / "v" / f"{t}.png")
    video = Video(5, [f"v/{t}.png" for t in range(3)], 48, 72)
    ds = YTVISDataset([video], [], [{"id": 1, "name": "object"}], tmp_path)
    stream = predict_dataset(model, ds, cfg, progress=False)
    assert not isinstance(stream, (list, tuple))  # a generator: videos are predicted one at a time
    (video_id, pred), = list(stream)
    assert video_id == 5
    results = results_from_prediction(video_id, pred, keep_empty_tracks=False)
    kept = [i for i, s in enumerate(pred["segmentations"]) if any(x is not None for x in s)]
    assert len(results) == len(kept)
    assert all(r["category_id"] == 1 and len(r["pred_iou"]) == 3 for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert len(load_results(results, ds)) == len(results)  # valid YTVIS results for that dataset
    dense = results_from_prediction(video_id, predict_video(model, frames, cfg), keep_empty_tracks=False)
    assert [r["segmentations"] for r in dense] == [r["segmentations"] for r in results]
