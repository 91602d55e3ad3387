"""Fast-path switches (engine/fast_path.py) and the column-major RLE path of inference, on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoqvis import build_model, load_config
from autoqvis.core.tracks import encode_masks
from autoqvis.engine import fast_path
from autoqvis.engine.inference import encode_column_major, predict_clip, predict_clip_rle


@pytest.fixture(scope="module")
def toy():
    cfg = load_config("toy")
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def test_column_major_rles_are_those_of_encode_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 37, 53)) < 0.3
    masks[2] = False  # an empty mask keeps its RLE too
    masks[3, 10:20, 5:40] = True
    got = encode_column_major(np.ascontiguousarray(masks.transpose(0, 2, 1)))
    assert got == encode_masks(masks)
    assert got[2]["counts"] == encode_masks(masks[2:3])[0]["counts"] and encode_column_major(masks[:0]) == []


def test_predict_clip_rle_matches_the_dense_prediction(toy):
    model, cfg = toy
    frames = (np.random.default_rng(1).random((3, 90, 120, 3)) * 255).astype(np.uint8)
    dense = predict_clip(model, frames, cfg)
    rle = predict_clip_rle(model, frames, cfg)
    assert np.array_equal(rle["scores"], dense["scores"]) and np.array_equal(rle["pred_iou"], dense["pred_iou"])
    assert rle["segmentations"] == [encode_masks(m) for m in dense["masks"]]
    assert len(rle["segmentations"]) == cfg.model.test_topk and all(len(s) == 3 for s in rle["segmentations"])


def test_channels_last_keeps_the_outputs_and_can_be_undone(toy):
    model, cfg = toy
    cfg = load_config("toy")
    clip = torch.rand(2, 3, 96, 128) * 255
    with torch.no_grad():
        ref = model.forward_raw(clip)
        cfg.runtime.channels_last = True
        fast_path.prepare(model, cfg.runtime)
        assert model.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        got = model.forward_raw(clip)
        cfg.runtime.channels_last = False
        fast_path.prepare(model, cfg.runtime)
        again = model.forward_raw(clip)
    assert model.backbone.stem.conv1.weight.is_contiguous()
    assert (got["pred_masks"] - ref["pred_masks"]).abs().max() < 1e-3
    assert (got["pred_logits"] - ref["pred_logits"]).abs().max() < 1e-4
    assert torch.equal(again["pred_masks"], ref["pred_masks"])


def test_bf16_autocast_is_for_cuda_only():
    with fast_path.autocast(torch.device("cpu"), True):
        assert not torch.is_autocast_enabled("cpu")
    assert fast_path.can_compile(torch.device("meta")) is False


def test_run_lengths_found_on_the_device_give_the_same_rles():
    """The GPU path of encode_masks_on_device, run here on CPU tensors: identical RLEs, edge frames included."""
    from autoqvis.engine.inference import encode_masks_on_device, run_length_rles

    rng = np.random.default_rng(2)
    masks = rng.random((3, 4, 29, 41)) < 0.4
    masks[0, 0] = False  # empty frame: one run of zeros
    masks[0, 1] = True  # full frame: zero zeros, then all ones
    masks[1, 2] = False
    masks[1, 2, 0, 0] = True  # starts inside the mask
    masks[2, 3] = False
    masks[2, 3, -1, -1] = True  # ends inside the mask
    expected = [encode_masks(track) for track in masks]
    tensor = torch.from_numpy(masks)
    assert run_length_rles(tensor) == expected
    assert encode_masks_on_device(tensor) == expected
    assert run_length_rles(tensor[:0]) == [] and run_length_rles(tensor[:, :0]) == [[], [], []]
