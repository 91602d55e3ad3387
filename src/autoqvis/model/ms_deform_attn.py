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

from . import onednn


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
    """``ms_deform_attn_sample`` (same arguments and result) as one weighted gather; forward only."""
    _, _, _, n_levels, n_points, _ = sampling_locations.shape
    width, height = (_per_level([size[axis] for size in spatial_shapes], n_points, value.dtype, value.device)
                     for axis in (1, 0))
    # pixel centres at integers, as grid_sample with align_corners=False
    pixel_x = sampling_locations[..., 0] * width - 0.5
    pixel_y = sampling_locations[..., 1] * height - 0.5
    return ms_deform_attn_gather_pixels(value, spatial_shapes, pixel_x, pixel_y, attention_weights)


def _per_level(values: list, n_points: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(L,) -> (L, P), contiguous: broadcasting a contiguous block over (N, Lq, M) is vectorised, a stride-0
    innermost dimension is not (~10x slower here)."""
    return torch.tensor(values, dtype=dtype, device=device)[:, None].expand(len(values), n_points).contiguous()


def ms_deform_attn_gather_pixels(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    pixel_x: torch.Tensor,
    pixel_y: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The weighted gather of ``ms_deform_attn_sample_gather`` from pixel coordinates.

    Args:
        value: (N, S, M, D), as ``ms_deform_attn_sample``.
        pixel_x, pixel_y: (N, Lq, M, L, P) sampling points in pixels of their level (pixel centres at integers:
            ``location * size - 0.5``).
        attention_weights: (N, Lq, M, L, P).
    Returns:
        (N, Lq, M * D).

    Zero padding is a one-token zero border around every level: a corner outside the map is clamped onto the
    border and reads zero, so no validity masks are needed.
    """
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points = pixel_x.shape
    padded = [(h + 2, w + 2) for h, w in spatial_shapes]
    levels = value.split([h * w for h, w in spatial_shapes], 1)
    # (N, S_pad, M*D): every level with its zero border, flattened row-major
    rows = torch.cat([F.pad(level.reshape(n, h, w, m * d), (0, 0, 1, 1, 1, 1)).flatten(1, 2)
                      for level, (h, w) in zip(levels, spatial_shapes)], 1)
    s_pad = rows.shape[1]
    dev, dtype = value.device, value.dtype
    index_dtype = torch.float32 if n * s_pad * m < FLOAT32_EXACT_ROWS else torch.float64  # exact integers

    width, height = (_per_level([size[axis] for size in spatial_shapes], n_points, dtype, dev) for axis in (1, 0))
    # row of padded token (y, x) of level l, head h, frame b: ((b * S_pad + start_l + y * (w_l + 2) + x) * M + h
    row_stride = _per_level([(w + 2) * m for _, w in spatial_shapes], n_points, index_dtype, dev)
    start = torch.tensor([0] + [h * w for h, w in padded][:-1], dtype=torch.float64).cumsum(0) * m
    base = (start[None, :, None] + torch.arange(m, dtype=torch.float64)[:, None, None]).expand(m, n_levels, n_points)
    base = base + (torch.arange(n, dtype=torch.float64) * (s_pad * m)).view(n, 1, 1, 1, 1)
    base = base.to(dev, index_dtype).contiguous()  # (N, 1, M, L, P)
    attn = attention_weights.to(dtype)
    corners_w, corners_i = [], []
    axes = []
    for pixel, size in ((pixel_x, width), (pixel_y, height)):
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
    # corners stacked before (L, P): a bag's 4 * L * P entries stay contiguous, copied in blocks of L * P
    weights = torch.stack(corners_w, 3)
    index = torch.stack(corners_i, 3).to(torch.int64 if index_dtype == torch.float64 else torch.int32)
    k = n_levels * n_points * 4
    out = F.embedding_bag(index.view(-1, k), rows.view(-1, d), mode="sum", per_sample_weights=weights.view(-1, k))
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
        self.sampling_offsets = onednn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = onednn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = onednn.Linear(d_model, d_model)
        self.output_proj = onednn.Linear(d_model, d_model)
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
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position encoding added).
            reference_points: (N, Lq, L, 2) normalised (x, y) reference point of each query on each level.
            value_input: (N, S, C) the tokens of all levels, S = sum(h_l * w_l).
            spatial_shapes: [(h_l, w_l)] for the L levels.
            residual: (N, Lq, C) added to the output (fused into the output projection where it can be).
        Returns:
            (N, Lq, C).
        """
        n, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input).view(n, value_input.shape[1], m, self.d_model // m)
        # embedding_bag with per-sample weights exists on CPU and CUDA; elsewhere the official form
        if self.gather_at_inference and not torch.is_grad_enabled() and query.device.type in ("cpu", "cuda"):
            sampled = self._gather(query, reference_points, value, spatial_shapes)
        else:
            offsets = self.sampling_offsets(query).view(n, lq, m, n_levels, n_points, 2)
            weights = self.attention_weights(query).view(n, lq, m, n_levels * n_points)
            weights = F.softmax(weights, -1).view(n, lq, m, n_levels, n_points)
            # offsets are in pixels of each level: divide by (w_l, h_l)
            normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
            sampled = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        return onednn.linear(sampled, self.output_proj.weight, self.output_proj.bias, add=residual)

    def _gather(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """The inference form of the sampling: the same numbers (to float rounding) with less memory traffic.

        The offsets stay in pixels: location * size - 0.5 = (reference * size - 0.5) + offset, so no division;
        the offset layer's rows are reordered so that all x offsets come before all y offsets (each a contiguous
        block); the softmax over the L * P weights of a head is spelled out (the fused kernel is ~5x slower on
        that short last dimension).
        """
        n, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        c = self.d_model
        # rows (M, L, P, xy) -> (xy, M, L, P)
        w_off = self.sampling_offsets.weight.view(m, n_levels, n_points, 2, c).permute(3, 0, 1, 2, 4).reshape(-1, c)
        b_off = self.sampling_offsets.bias.view(m, n_levels, n_points, 2).permute(3, 0, 1, 2).reshape(-1)
        offsets = onednn.linear(query, w_off, b_off).view(n, lq, 2, m, n_levels, n_points)
        logits = self.attention_weights(query).view(n, lq, m, n_levels * n_points)
        weights = logits - logits.amax(-1, keepdim=True)
        weights = weights.exp_().div_(weights.sum(-1, keepdim=True)).view(n, lq, m, n_levels, n_points)
        sizes = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        centres = reference_points * sizes - 0.5  # (N or 1, Lq, L, 2), in pixels of each level
        pixels = [offsets[:, :, axis] + centres[:, :, None, :, None, axis].expand(-1, -1, 1, -1, n_points).contiguous()
                  for axis in (0, 1)]
        return ms_deform_attn_gather_pixels(value, spatial_shapes, pixels[0], pixels[1], weights)
