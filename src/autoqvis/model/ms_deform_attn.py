"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

Each query looks at ``n_points`` bilinearly sampled locations per head and per feature level, around
its reference point; the samples are averaged with softmax weights. Bilinear sampling with zero padding and
``align_corners=False``, as the official pure-PyTorch path does, in two forms with the same numbers (to float
rounding, ~1e-6):

* ``ms_deform_attn_sample``: ``grid_sample`` per level, then the weighted sum (the official algorithm; used
  whenever gradients are needed);
* ``ms_deform_attn_sample_gather``: the four corners of every sampling point become (row, weight) pairs with
  the attention weight folded in, and one ``embedding_bag`` sums the weighted value rows of all levels and heads
  at once. It never materialises the (queries x points x channels) samples that the first form stacks,
  multiplies and sums, which is where most of the pixel decoder's CPU time went (benchmarks/RESULTS.md,
  "Inference speed"); used at inference (no grad).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted bilinear samples of a multi-level value map.

    Args:
        value: (N, S, M, D) values of the S = sum(h_l * w_l) tokens, M heads of D channels, levels
            concatenated in the order of ``spatial_shapes`` (row-major inside a level).
        spatial_shapes: [(h_l, w_l)] for the L levels.
        sampling_locations: (N, Lq, M, L, P, 2) normalised (x, y) in [0, 1] (0 and 1 are the outer edges).
        attention_weights: (N, Lq, M, L, P), summing to 1 over (L, P).
    Returns:
        (N, Lq, M * D).
    """
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    samples = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N*M, Lq, P, 2)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels * n_points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (N*M, D, Lq)
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


FLOAT32_EXACT_ROWS = 2**24  # row indices are computed in float32 below this many value rows (exact), else float64


def ms_deform_attn_sample_gather(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """``ms_deform_attn_sample`` (same arguments and result) as one weighted gather; forward only.

    Zero padding is a one-token zero border around every level: a corner outside the map is clamped onto the
    border and reads zero, so no validity masks are needed.
    """
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    padded = [(h + 2, w + 2) for h, w in spatial_shapes]
    levels = value.split([h * w for h, w in spatial_shapes], 1)
    # (N, S_pad, M*D): every level with its zero border, flattened row-major
    rows = torch.cat([F.pad(level.reshape(n, h, w, m * d), (0, 0, 1, 1, 1, 1)).flatten(1, 2)
                      for level, (h, w) in zip(levels, spatial_shapes)], 1)
    s_pad = rows.shape[1]
    dev, dtype = value.device, value.dtype
    index_dtype = torch.float32 if n * s_pad * m < FLOAT32_EXACT_ROWS else torch.float64  # exact integers

    def per_level(values, dt) -> torch.Tensor:
        """(L,) -> (L, P), contiguous: broadcasting a contiguous block over (N, Lq, M) is vectorised, a
        stride-0 innermost dimension is not (~10x slower here)."""
        return torch.tensor(values, dtype=dt, device=dev)[:, None].expand(n_levels, n_points).contiguous()

    width, height = per_level([w for _, w in spatial_shapes], dtype), per_level([h for h, _ in spatial_shapes], dtype)
    # row of padded token (y, x) of level l, head h, frame b: ((b * S_pad + start_l + y * (w_l + 2) + x) * M + h
    row_stride = per_level([(w + 2) * m for _, w in spatial_shapes], index_dtype)
    start = torch.tensor([0] + [h * w for h, w in padded][:-1], dtype=torch.float64).cumsum(0) * m
    base = (start[None, :, None] + torch.arange(m, dtype=torch.float64)[:, None, None]).expand(m, n_levels, n_points)
    base = base + (torch.arange(n, dtype=torch.float64) * (s_pad * m)).view(n, 1, 1, 1, 1)
    base = base.to(dev, index_dtype).contiguous()  # (N, 1, M, L, P)
    attn = attention_weights.to(dtype)
    corners_w, corners_i = [], []
    axes = []
    for axis, size in ((0, width), (1, height)):
        pixel = sampling_locations[..., axis] * size - 0.5  # (N, Lq, M, L, P), pixel centres at integers
        low = pixel.floor()
        frac = pixel - low
        # clamped onto the zero border (-1 or size), then shifted by the border
        c0 = torch.minimum(low.clamp(min=-1), size).add_(1).to(index_dtype)
        c1 = torch.minimum((low + 1).clamp_(min=-1), size).add_(1).to(index_dtype)
        axes.append(((1 - frac, c0), (frac, c1)))
    for wy, cy in axes[1]:
        wy = wy * attn
        ry = torch.addcmul(base, cy, row_stride)
        for wx, cx in axes[0]:
            corners_w.append(wy * wx)
            corners_i.append(torch.add(ry, cx, alpha=m))
    weights = torch.stack(corners_w, -1)
    index = torch.stack(corners_i, -1).to(torch.int64 if index_dtype == torch.float64 else torch.int32)
    k = n_levels * n_points * 4
    out = F.embedding_bag(index.view(-1, k), rows.view(-1, d), mode="sum", per_sample_weights=weights.reshape(-1, k))
    return out.view(n, lq, m * d)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        d_model: channels C of queries and values.
        n_levels: number of feature levels L.
        n_heads: heads M (C must be divisible by M).
        n_points: sampling points P per head and level.

    ``gather_at_inference``: sample with ``ms_deform_attn_sample_gather`` when no gradient is recorded (a class
    switch, so a benchmark can time both forms in one process).
    """

    gather_at_inference = True

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: offsets start on a ring of directions (one per head), growing with the
        point index; uniform attention weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position encoding added).
            reference_points: (N, Lq, L, 2) normalised (x, y) reference point of each query on each level.
            value_input: (N, S, C) the tokens of all levels, S = sum(h_l * w_l).
            spatial_shapes: [(h_l, w_l)] for the L levels.
        Returns:
            (N, Lq, C).
        """
        n, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input).view(n, value_input.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, lq, m, n_levels, n_points, 2)
        weights = self.attention_weights(query).view(n, lq, m, n_levels * n_points)
        weights = F.softmax(weights, -1).view(n, lq, m, n_levels, n_points)
        # offsets are in pixels of each level: divide by (w_l, h_l)
        normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        # embedding_bag with per-sample weights exists on CPU and CUDA; elsewhere the official form
        gather = self.gather_at_inference and not torch.is_grad_enabled() and query.device.type in ("cpu", "cuda")
        sample = ms_deform_attn_sample_gather if gather else ms_deform_attn_sample
        return self.output_proj(sample(value, spatial_shapes, locations, weights))
