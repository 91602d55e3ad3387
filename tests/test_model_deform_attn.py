"""Multi-scale deformable attention against a naive per-point bilinear loop."""

from __future__ import annotations

import math

import torch

from autoqvis.model.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (D, H, W), (x, y) normalised with 0/1 at the outer edges; zeros outside (align_corners=False)."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx].double()
    return out


def _naive(value, shapes, locations, weights):
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, lq, m * d, dtype=torch.float64)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                acc = torch.zeros(d, dtype=torch.float64)
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl]:starts[lvl + 1], head].T.reshape(d, h, w)
                    for p in range(n_points):
                        x, y = locations[b, q, head, lvl, p].tolist()
                        acc += weights[b, q, head, lvl, p].item() * _bilinear(img, x, y)
                out[b, q, head * d:(head + 1) * d] = acc
    return out


def test_sampling_matches_naive_bilinear_loop():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5, 7), (6, 9)]
    n, lq, m, d, p = 2, 5, 2, 3, 3
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, generator=g)
    # locations spill over the borders so the zero padding is exercised
    locations = torch.rand(n, lq, m, len(shapes), p, 2, generator=g) * 1.4 - 0.2
    weights = torch.softmax(torch.randn(n, lq, m, len(shapes) * p, generator=g), -1).view(n, lq, m, len(shapes), p)
    ours = ms_deform_attn_sample(value, shapes, locations, weights)
    assert ours.shape == (n, lq, m * d)
    assert torch.allclose(ours.double(), _naive(value, shapes, locations, weights), atol=1e-5)
    assert ((locations < 0) | (locations > 1)).any()


def test_module_offsets_are_in_pixels_of_each_level():
    """A single head and point, weights forced to one level, offset bias of one pixel to the right: the output
    is the value one column further (value_proj / output_proj identity)."""
    attn = MSDeformAttn(d_model=4, n_levels=2, n_heads=1, n_points=1)
    with torch.no_grad():
        attn.value_proj.weight.copy_(torch.eye(4))
        attn.value_proj.bias.zero_()
        attn.output_proj.weight.copy_(torch.eye(4))
        attn.output_proj.bias.zero_()
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
        attn.attention_weights.weight.zero_()
        attn.attention_weights.bias.copy_(torch.tensor([0.0, -1e4]))  # all weight on level 0
    shapes = [(2, 3), (1, 2)]
    tokens = torch.arange(8 * 4, dtype=torch.float32).view(1, 8, 4)
    ref = torch.tensor([[[(0 + 0.5) / 3, (0 + 0.5) / 2]] * 2])  # centre of pixel (row 0, col 0), both levels
    out = attn(torch.zeros(1, 1, 4), ref.view(1, 1, 2, 2), tokens, shapes)
    assert torch.allclose(out[0, 0], tokens[0, 1], atol=1e-4)  # row 0, col 1 of level 0


def test_initial_offsets_point_in_every_direction():
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=8, n_points=4)
    bias = attn.sampling_offsets.bias.view(8, 3, 4, 2)
    assert torch.allclose(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.allclose(bias[2, 1, 0], torch.tensor([0.0, 1.0]), atol=1e-6)  # head 2 looks down (90 degrees)
    assert torch.equal(attn.attention_weights.weight, torch.zeros_like(attn.attention_weights.weight))
