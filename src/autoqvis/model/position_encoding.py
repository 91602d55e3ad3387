"""Sine position encodings of DETR / Mask2Former (2-D for the pixel decoder, 3-D for the video decoder).

No padding mask is used anywhere in the official video model, so the cumulative sums of the
originals reduce to ``1..n``; the arithmetic is kept in the same order so the numbers match bit for bit.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-6


def _normalised_coords(n: int, scale: float, device: torch.device | None) -> torch.Tensor:
    """(n,) coordinates 1..n, divided by (n + eps) and times ``scale``."""
    c = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    return c / (c[-1:] + EPS) * scale


def _inverse_frequencies(num_feats: int, temperature: float, device: torch.device | None) -> torch.Tensor:
    """(num_feats,) the divisor of each channel: temperature ** (2 * (i // 2) / num_feats)."""
    i = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)


def _sin_cos(coords: torch.Tensor, dim_t: torch.Tensor) -> torch.Tensor:
    """(n,) coordinates -> (n, len(dim_t)) encoding, channels interleaved sin, cos, sin, cos ..."""
    x = coords[:, None] / dim_t
    return torch.stack((x[:, 0::2].sin(), x[:, 1::2].cos()), dim=2).flatten(1)


def sine_position_2d(
    h: int, w: int, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi, device=None
) -> torch.Tensor:
    """2-D encoding (2 * num_pos_feats, h, w): the y part in the first half of the channels, x in the second."""
    dim_t = _inverse_frequencies(num_pos_feats, temperature, device)
    pos_y = _sin_cos(_normalised_coords(h, scale, device), dim_t)  # (h, F)
    pos_x = _sin_cos(_normalised_coords(w, scale, device), dim_t)  # (w, F)
    pos = torch.cat((pos_y[:, None, :].expand(h, w, -1), pos_x[None, :, :].expand(h, w, -1)), dim=2)
    return pos.permute(2, 0, 1).contiguous()


def sine_position_3d(
    t: int, h: int, w: int, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi, device=None
) -> torch.Tensor:
    """3-D encoding (t, 2 * num_pos_feats, h, w): the 2-D (y, x) encoding PLUS a full-width encoding of the
    frame index (normalised over the t frames like y and x), as VideoMask2Former does."""
    dim_t_z = _inverse_frequencies(2 * num_pos_feats, temperature, device)
    pos_z = _sin_cos(_normalised_coords(t, scale, device), dim_t_z)  # (t, 2F)
    pos_yx = sine_position_2d(h, w, num_pos_feats, temperature, scale, device)  # (2F, h, w)
    return pos_yx[None] + pos_z[:, :, None, None]
