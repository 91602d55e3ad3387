"""The inference fast path (issue 19) against the float32 reference path: gather-based deformable sampling,
the decoder's earlier attention masks from shrunk mask features, in-place activations."""

from __future__ import annotations

import pytest
import torch

from autoqvis import load_checkpoint, load_config
from autoqvis.model import ms_deform_attn as mda
from autoqvis.model.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample, ms_deform_attn_sample_gather
from autoqvis.model.vis_model import build_model


def _inputs(shapes, n=2, lq=7, m=3, d=5, p=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, generator=g)
    # far outside, just outside, on the borders and inside every level
    locations = torch.rand(n, lq, m, len(shapes), p, 2, generator=g) * 2.0 - 0.5
    locations[0, 0, 0, :, 0] = torch.tensor([0.0, 0.0])
    locations[0, 0, 0, :, 1] = torch.tensor([1.0, 1.0])
    weights = torch.softmax(torch.randn(n, lq, m, len(shapes) * p, generator=g), -1).view(n, lq, m, len(shapes), p)
    return value, locations, weights


@pytest.mark.parametrize("shapes", [[(3, 4), (5, 7), (6, 9)], [(1, 1)], [(2, 5), (1, 3)]])
def test_gather_sampling_equals_grid_sample(shapes):
    value, locations, weights = _inputs(shapes)
    ref = ms_deform_attn_sample(value, shapes, locations, weights)
    fast = ms_deform_attn_sample_gather(value, shapes, locations, weights)
    assert fast.shape == ref.shape
    assert ((locations < 0) | (locations > 1)).any()
    assert (fast - ref).abs().max() < 1e-5
    assert ref.abs().max() > 0.1  # not a comparison of zeros


def test_gather_sampling_float64_indices_when_float32_would_round(monkeypatch):
    """Above 2**24 value rows float32 cannot hold every row index: the float64 route gives the same result."""
    shapes = [(4, 6), (2, 3)]
    value, locations, weights = _inputs(shapes, seed=1)
    f32 = ms_deform_attn_sample_gather(value, shapes, locations, weights)
    monkeypatch.setattr(mda, "FLOAT32_EXACT_ROWS", 0)
    f64 = ms_deform_attn_sample_gather(value, shapes, locations, weights)
    assert torch.equal(f32, f64)


def test_module_uses_gather_only_without_grad():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=3)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    shapes = [(3, 5), (2, 2)]
    tokens = torch.randn(2, 19, 16)
    ref = torch.rand(2, 19, 2, 2)
    trained = attn(tokens, ref, tokens, shapes)  # grad mode: the grid_sample form (differentiable)
    trained.sum().backward()
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0
    with torch.no_grad():
        fast = attn(tokens, ref, tokens, shapes)
        MSDeformAttn.gather_at_inference = False
        try:
            slow = attn(tokens, ref, tokens, shapes)
        finally:
            MSDeformAttn.gather_at_inference = True
    assert (fast - trained.detach()).abs().max() < 1e-5
    assert (slow - trained.detach()).abs().max() == 0


@pytest.fixture(scope="module")
def tiny(reference_dir, repo_root):
    model = build_model(load_config(repo_root / "configs" / "reference_autoqvis_tiny.yaml")).eval()
    load_checkpoint(model, reference_dir / "tiny" / "state_dict.pt")  # the quality predictor stays seeded-random
    return model


def _reference_raw(model, clip):
    MSDeformAttn.gather_at_inference = False
    try:
        with torch.no_grad():
            return model.forward_raw(clip, with_aux=True)
    finally:
        MSDeformAttn.gather_at_inference = True


def test_fast_raw_outputs_within_1e4_of_reference_path(tiny, reference_dir):
    clip = torch.load(reference_dir / "tiny" / "input_pad.pt", weights_only=True)["frames"]
    ref = _reference_raw(tiny, clip)
    with torch.no_grad():
        fast = tiny.forward_raw(clip, with_aux=False)
    assert "aux_outputs" not in fast and len(ref["aux_outputs"]) == 9
    for key in ("pred_logits", "pred_masks", "pred_maskiou"):
        assert fast[key].shape == ref[key].shape, key
        assert (fast[key] - ref[key]).abs().max() < 1e-4, key
    assert ref["pred_masks"].abs().max() > 1.0


def test_fast_inference_masks_equal_reference_up_to_boundary(tiny, reference_dir):
    """Post-processed masks: identical except where the reference's upsampled logit is within 1e-4 of 0."""
    import torch.nn.functional as F

    from autoqvis.model.vis_model import postprocess_video

    clip = torch.load(reference_dir / "tiny" / "input_pad.pt", weights_only=True)["frames"]
    size, out_size = tuple(clip.shape[-2:]), (125, 175)
    ref_raw = _reference_raw(tiny, clip)
    padded = (ref_raw["pred_masks"].shape[-2] * 4, ref_raw["pred_masks"].shape[-1] * 4)
    ref = postprocess_video(ref_raw["pred_logits"], ref_raw["pred_masks"], size, out_size, tiny.test_topk,
                            padded_size=padded)
    res = tiny.inference(clip, out_size=out_size)
    assert res["query_indices"].tolist() == ref["query_indices"].tolist()
    assert torch.allclose(res["scores"], ref["scores"], atol=1e-6)
    logits = F.interpolate(ref_raw["pred_masks"][ref["query_indices"]], size=padded, mode="bilinear",
                           align_corners=False)[:, :, : size[0], : size[1]]
    logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    differ = res["masks"] != ref["masks"]
    assert not (differ & (logits.abs() >= 1e-4)).any()
    assert res["masks"].any() and (~res["masks"]).any()
