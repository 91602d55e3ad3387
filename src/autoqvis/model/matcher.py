"""Hungarian matching between predicted mask tubes and target instances of a clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..core.errors import AutoQVISError
from .point_sample import point_sample


class VideoHungarianMatcher(nn.Module):
    """One-to-one assignment of queries to target instances, per video, over all frames at once.

    Cost of query q for target n = ``cost_class * -p_q(label_n)`` + ``cost_mask * BCE`` + ``cost_dice * dice``,
    the two mask terms over the same ``num_points`` uniform random points, shared by every query, target
    and frame of the video (the T frames' points are concatenated into one vector of T * num_points).
    Queries left unassigned are "no object".
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("VideoHungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: ``"pred_logits"`` (B, Q, K+1) class logits (last = no-object);
                ``"pred_masks"`` (B, Q, T, h, w) mask logits.
            targets: B dicts with ``"labels"`` (N,) int64 in [0, K) and ``"masks"`` (N, T, H, W) binary
                (any size: points are in normalised coordinates). N may be 0.

        Returns:
            B pairs ``(query_idx, target_idx)``, int64 tensors of length min(Q, N) on the CPU, query indices
            ascending: query ``query_idx[i]`` is matched to target ``target_idx[i]``.
        """
        return [self._match_one(logits, masks, t, b) for b, (logits, masks, t) in
                enumerate(zip(outputs["pred_logits"], outputs["pred_masks"], targets))]

    def _match_one(self, logits: torch.Tensor, masks: torch.Tensor, target: dict,
                   b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (Q, K+1), masks (Q, T, h, w) -> (query_idx, target_idx) for one video."""
        labels, tgt_masks = target["labels"], target["masks"]
        if len(labels) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return empty, empty.clone()
        with torch.autocast(masks.device.type, enabled=False):  # costs in float32 even under AMP
            cost = self.cost_matrix(logits.float(), masks.float(), labels, tgt_masks.to(masks.device, torch.float32))
        if not torch.isfinite(cost).all():
            raise AutoQVISError(f"matcher: video {b} of the batch has a non-finite cost (the model's outputs diverged)")
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    tgt_masks: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: (Q, K+1). masks: (Q, T, h, w) logits. labels: (N,). tgt_masks: (N, T, H, W) float.

        Returns:
            (Q, N) matching cost.
        """
        # the 1 in "1 - p" is a constant for the assignment, so -p is enough
        cost_class = -logits.softmax(-1)[:, labels]
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        pred = point_sample(masks, coords.expand(len(masks), -1, -1)).flatten(1)  # (Q, T*P)
        gt = point_sample(tgt_masks, coords.expand(len(tgt_masks), -1, -1)).flatten(1)  # (N, T*P)
        return (self.cost_class * cost_class + self.cost_mask * pairwise_bce(pred, gt)
                + self.cost_dice * pairwise_dice(pred, gt))


def pairwise_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction row against every label row.

    Args:
        logits: (Q, P). labels: (N, P) in [0, 1].

    Returns:
        (Q, N).
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ labels.T + neg @ (1 - labels).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2|p.g| + 1) / (|p| + |g| + 1)`` of every prediction row against every label row.

    Args:
        logits: (Q, P). labels: (N, P) in [0, 1].

    Returns:
        (Q, N).
    """
    probs = logits.sigmoid()
    numerator = 2 * probs @ labels.T
    denominator = probs.sum(-1)[:, None] + labels.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


__all__ = ["VideoHungarianMatcher", "pairwise_bce", "pairwise_dice"]
