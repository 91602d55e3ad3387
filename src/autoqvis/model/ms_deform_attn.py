"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

Each query looks at ``n_points`` bilinearly sampled locations per head and per feature level, around
its reference point; the samples are averaged with softmax weights. Sampling is ``grid_sample`` per
level with zero padding and ``align_corners=False``, which is what the official pure-PyTorch path does.
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


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module.

    Args:
        d_model: channels C of queries and values.
        n_levels: number of feature levels L.
        n_heads: heads M (C must be divisible by M).
        n_points: sampling points P per head and level.
    """

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
        return self.output_proj(ms_deform_attn_sample(value, spatial_shapes, locations, weights))
