"""Hungarian matcher on hand-made clips with a known assignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autoqvis.core.errors import AutoQVISError
from autoqvis.model.criterion import dice_loss
from autoqvis.model.matcher import VideoHungarianMatcher, pairwise_bce, pairwise_dice


def _logits(region: torch.Tensor) -> torch.Tensor:
    """Binary (…, 8, 8) picture -> +-8 logits."""
    return region.float() * 16 - 8


def _hand_clip():
    """T=2, 8x8 predictions, targets at 4x (32x32) as the stride-4 relation in training."""
    left, top_right, bottom_right = (torch.zeros(8, 8) for _ in range(3))
    left[:, :4] = 1
    top_right[:4, 4:] = 1
    bottom_right[4:, 4:] = 1
    empty, full = torch.zeros(8, 8), torch.ones(8, 8)
    # targets: 0 = left half; 1 = top-right in frame 0, absent in frame 1; 2 = bottom-right
    tgt = torch.stack([torch.stack([left, left]), torch.stack([top_right, empty]), torch.stack([bottom_right, bottom_right])])
    tgt = F.interpolate(tgt, scale_factor=4, mode="nearest").bool()  # (3, 2, 32, 32)
    # queries: 0 -> target 2, 1 empty, 2 -> target 1 (empty in frame 1 too), 3 -> target 0, 4 full frame
    pred = torch.stack([
        torch.stack([bottom_right, bottom_right]),
        torch.stack([empty, empty]),
        torch.stack([top_right, empty]),
        torch.stack([left, left]),
        torch.stack([full, full]),
    ])
    return _logits(pred), tgt


def test_hand_made_assignment():
    torch.manual_seed(0)
    pred, tgt = _hand_clip()
    outputs = {
        "pred_logits": torch.zeros(2, 5, 2),  # equal class scores: the masks decide
        "pred_masks": torch.stack([pred, pred]),  # (B=2, Q=5, T=2, 8, 8)
    }
    targets = [
        {"labels": torch.zeros(3, dtype=torch.int64), "masks": tgt},
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": tgt[:0]},  # a video without objects
    ]
    (rows, cols), (rows1, cols1) = VideoHungarianMatcher(2.0, 5.0, 5.0, num_points=1024)(outputs, targets)
    assert rows.tolist() == [0, 2, 3] and cols.tolist() == [2, 1, 0]
    assert rows.dtype == cols.dtype == torch.int64
    assert rows1.numel() == 0 and cols1.numel() == 0


def test_hungarian_beats_greedy():
    # class costs only: greedy takes the cheapest pair (q0, t0) and leaves q1 -> t1 (total -0.51);
    # the optimum is q0 -> t1, q1 -> t0 (total -0.85)
    probs = torch.tensor([[0.50, 0.45, 0.05], [0.40, 0.01, 0.59]])
    outputs = {"pred_logits": probs.log()[None], "pred_masks": torch.zeros(1, 2, 1, 4, 4)}
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 1, 4, 4)}]
    matcher = VideoHungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=16)
    (rows, cols), = matcher(outputs, targets)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    cost = matcher.cost_matrix(outputs["pred_logits"][0], outputs["pred_masks"][0], targets[0]["labels"], targets[0]["masks"])
    torch.testing.assert_close(cost, -probs[:, :2], atol=1e-6, rtol=0)


def test_pairwise_costs_equal_the_per_pair_losses():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 50) * 3, (torch.rand(4, 50) > 0.5).float()
    bce, dice = pairwise_bce(logits, labels), pairwise_dice(logits, labels)
    for i in range(3):
        for j in range(4):
            ref = F.binary_cross_entropy_with_logits(logits[i], labels[j])
            assert math.isclose(float(bce[i, j]), float(ref), rel_tol=1e-5)
            assert math.isclose(float(dice[i, j]), float(dice_loss(logits[i : i + 1], labels[j : j + 1])[0]), rel_tol=1e-5)


def test_points_are_shared_and_seeded():
    pred, tgt = _hand_clip()
    matcher = VideoHungarianMatcher(num_points=64)
    labels = torch.zeros(3, dtype=torch.int64)
    costs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        costs.append(matcher.cost_matrix(torch.zeros(5, 2), pred, labels, tgt.float()))
    assert torch.equal(costs[0], costs[1])  # same seed, same points, same costs
    assert not torch.equal(costs[0], costs[2])
    # a perfect prediction at the sampled points: dice part ~0 (+1 smoothing), BCE of a +-8 logit
    assert float(costs[0][3, 0]) < float(costs[0][3, 1]) - 5


def test_non_finite_cost_raises():
    outputs = {"pred_logits": torch.zeros(1, 2, 2), "pred_masks": torch.full((1, 2, 1, 4, 4), float("nan"))}
    targets = [{"labels": torch.zeros(1, dtype=torch.int64), "masks": torch.ones(1, 1, 4, 4)}]
    with pytest.raises(AutoQVISError, match="video 0"):
        VideoHungarianMatcher(num_points=16)(outputs, targets)
