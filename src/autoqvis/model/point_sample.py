"""Point sampling for the mask losses and the matcher (PointRend's scheme, as Mask2Former uses it).

Masks are compared at a few thousand points instead of every pixel. Coordinates are normalised to
``[0, 1] x [0, 1]`` (x first), so a stride-4 prediction and a full-resolution target are sampled at the
same places without resizing either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly read ``maps`` at normalised points (``grid_sample``, ``align_corners=False``, zero padding).

    Args:
        maps: (R, C, H, W) float maps.
        coords: (R, P, 2) points in ``[0, 1]``, (x, y) order.

    Returns:
        (R, C, P) values at the points.
    """
    grid = 2.0 * coords.unsqueeze(2) - 1.0  # (R, P, 1, 2) in [-1, 1]
    return F.grid_sample(maps, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Higher for logits closer to the decision boundary: ``-|logit|``. Same shape as ``logits``."""
    return -logits.abs()


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose points where the prediction is most uncertain, plus uniformly random ones.

    Draws ``int(num_points * oversample_ratio)`` uniform candidates per map, keeps the
    ``int(importance_sample_ratio * num_points)`` most uncertain ones (uncertainty of the bilinearly
    sampled logit, not of the coarse grid) and fills the rest with fresh uniform points (PointRend).

    Args:
        logits: (R, 1, H, W) mask logits, one map per row.
        num_points: P, points per map.
        oversample_ratio: >= 1.
        importance_sample_ratio: in [0, 1].
        generator: optional RNG (the global torch RNG otherwise).

    Returns:
        (R, P, 2) coordinates in ``[0, 1]`` (x, y); the first ``int(importance_sample_ratio * P)`` are the
        uncertain ones.
    """
    if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError("need oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1")
    rows = logits.shape[0]
    device = logits.device
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    candidates = torch.rand(rows, num_candidates, 2, device=device, generator=generator)
    scores = uncertainty(point_sample(logits, candidates))[:, 0]  # (R, num_candidates)
    top = scores.topk(num_uncertain, dim=1).indices  # (R, num_uncertain)
    chosen = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    random = torch.rand(rows, num_points - num_uncertain, 2, device=device, generator=generator)
    return torch.cat([chosen, random], dim=1)


__all__ = ["point_sample", "uncertainty", "uncertain_point_coords"]
