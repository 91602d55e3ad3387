"""The inference fast path (issue 19) against the float32 reference path: gather-based deformable sampling,
the decoder's earlier attention masks from shrunk mask features, in-place activations, linear layers and
convolutions on the oneDNN route with fused ReLU / residual additions, channels-last backbone."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from autoqvis import load_checkpoint, load_config
from autoqvis.model import ms_deform_attn as mda
from autoqvis.model import onednn
from autoqvis.model.backbone import ResNet
from autoqvis.model.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample, ms_deform_attn_sample_gather
from autoqvis.model.video_decoder import CrossAttentionLayer
from autoqvis.model.vis_model import build_model

needs_onednn = pytest.mark.skipif(not onednn._available(), reason="this torch build has no oneDNN pointwise ops")


@contextlib.contextmanager
def reference_route():
    """The float32 reference route: grid_sample sampling and PyTorch's own linear / convolution routes."""
    MSDeformAttn.gather_at_inference = onednn.ENABLED = False
    try:
        yield
    finally:
        MSDeformAttn.gather_at_inference = onednn.ENABLED = True


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
        with_residual = attn(tokens, ref, tokens, shapes, residual=tokens)
        with reference_route():
            slow = attn(tokens, ref, tokens, shapes)
    assert (fast - trained.detach()).abs().max() < 1e-5
    assert (with_residual - (trained.detach() + tokens)).abs().max() < 1e-5
    assert (slow - trained.detach()).abs().max() == 0
    assert trained.abs().max() > 0.1


@pytest.fixture(scope="module")
def tiny(reference_dir, repo_root):
    model = build_model(load_config(repo_root / "configs" / "reference_autoqvis_tiny.yaml")).eval()
    load_checkpoint(model, reference_dir / "tiny" / "state_dict.pt")  # the quality predictor stays seeded-random
    return model


def _reference_raw(model, clip):
    with reference_route(), torch.no_grad():
        return model.forward_raw(clip, with_aux=True)


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


@needs_onednn
@pytest.mark.parametrize("fused", ["none", "relu", "add"])
def test_onednn_linear_equals_torch_linear(fused):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 37, 24, generator=g)
    weight, bias = torch.randn(40, 24, generator=g) / 5, torch.randn(40, generator=g)
    add = torch.randn(2, 37, 40, generator=g) if fused == "add" else None
    expected = F.linear(x, weight, bias)
    expected = expected + add if fused == "add" else F.relu(expected) if fused == "relu" else expected
    with torch.no_grad():
        fast = onednn.linear(x, weight, bias, relu=fused == "relu", add=add)
        x_t = x.transpose(0, 1)  # a non-contiguous input
        fast_t = onednn.linear(x_t, weight, bias, relu=fused == "relu", add=None if add is None else add.transpose(0, 1))
    assert (fast - expected).abs().max() < 1e-5 and (fast_t.transpose(0, 1) - expected).abs().max() < 1e-5
    assert expected.abs().max() > 1.0 and (fused != "relu" or (fast == 0).any())
    # with a gradient the plain torch route runs (oneDNN's ops have no autograd), bit for bit
    w = weight.clone().requires_grad_(True)
    y = onednn.linear(x, w, bias, relu=fused == "relu", add=add)
    assert torch.equal(y.detach(), expected)
    y.sum().backward()
    assert w.grad.abs().sum() > 0


@needs_onednn
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 2), (7, 2)])
def test_onednn_conv_equals_torch_conv(layout, kernel, stride):
    torch.manual_seed(0)
    conv = onednn.Conv2d(6, 8, kernel, stride=stride, padding=kernel // 2, bias=True)
    x = torch.randn(2, 6, 11, 13).contiguous(memory_format=layout)
    expected = F.conv2d(x, conv.weight, conv.bias, stride, kernel // 2)
    with torch.no_grad():
        fast = conv(x)
        fused = onednn.conv2d(conv, x, relu=True)
    assert fast.is_contiguous(memory_format=layout)  # the input's memory format is kept
    assert (fast - expected).abs().max() < 1e-5
    assert (fused - F.relu(expected)).abs().max() < 1e-5 and (fused == 0).any()
    with torch.no_grad():
        onednn.ENABLED = False
        try:
            assert torch.equal(conv(x), expected)
        finally:
            onednn.ENABLED = True


def test_backbone_runs_channels_last_at_inference_only():
    torch.manual_seed(0)
    net = ResNet(depth=18, stem_out_channels=16, res2_out_channels=16).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fast = net(images)
        with reference_route():
            ref = net(images)
    trained = net(images)
    for k in ref:
        assert (fast[k] - ref[k]).abs().max() < 1e-4 * max(1.0, ref[k].abs().max().item()), k
        assert trained[k].is_contiguous() and ref[k].is_contiguous()
        assert fast[k].is_contiguous(memory_format=torch.channels_last) == onednn._available()


@pytest.mark.parametrize("batch", [1, 2])
def test_cross_attention_inference_route_equals_multihead_attention(batch):
    """One (Q, S) mask for a single clip, a (B * heads, Q, S) mask for a batch; a fully blocked row is left out
    (the decoder never passes one)."""
    torch.manual_seed(0)
    layer = CrossAttentionLayer(32, 4).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, query_pos = torch.randn(10, batch, 32), torch.randn(10, batch, 32)
    memory, pos = torch.randn(50, batch, 32), torch.randn(50, batch, 32)
    blocked = torch.rand(batch, 10, 50) < 0.6
    blocked[:, :, 0] = False
    mask = blocked[0] if batch == 1 else blocked[:, None].expand(batch, 4, 10, 50).flatten(0, 1)
    with torch.no_grad():
        fast = layer(x, memory, mask, pos, query_pos)
        with reference_route():
            ref = layer(x, memory, mask, pos, query_pos)
        unmasked = layer(x, memory, torch.zeros_like(mask), pos, query_pos)
    assert (fast - ref).abs().max() < 1e-5
    assert (unmasked - ref).abs().max() > 1e-2  # the mask matters


def test_onednn_route_steps_aside_under_cpu_autocast():
    layer = onednn.Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert onednn.applies(x) == onednn._available()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn.applies(x)
            assert layer(x).dtype == torch.bfloat16  # autocast's own cast, as for nn.Linear
