"""The mask quality predictor (AutoQ-VIS's "Q-predictor", a Mask Scoring R-CNN style MaskIoU head).

For every query and frame it regresses the IoU of the query's binarised mask with its best-fitting
object from two inputs: the pixel decoder's stride-32 feature map of that frame and the query's RAW mask
logits there (not sigmoid, not thresholded: the paper finds a binarised mask gives no usable signal).
The output is unbounded; inference clamps it to [0, 1].

State-dict names follow the authors' ``maskiou_feature_extractor`` (``maskiou_fcn1..4``, ``maskiou_fc1..3``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AutoQVISError

MASK_SIZE = 28  # mask logits are resized to 28x28, then 2x2 max-pooled to the 14x14 feature grid
FEATURE_SIZE = 14


class QualityPredictor(nn.Module):
    """Four 3x3 convs (the last with stride 2: 14x14 -> 7x7) and three FC layers -> one value per (query, frame).

    Input channels of the first conv are ``in_channels + 1``: the feature channels first, the pooled mask
    logit last (the authors' order).
    """

    def __init__(self, in_channels: int, conv_dim: int = 256, fc_dim: int = 1024):
        """
        Args:
            in_channels: C, channels of the stride-32 feature map (the pixel decoder's conv_dim; 256 in the paper).
            conv_dim: width of the four convs (256 in the paper).
            fc_dim: width of the two hidden FC layers (1024 in the paper).
        """
        super().__init__()
        self.in_channels = in_channels
        self.maskiou_fcn1 = nn.Conv2d(in_channels + 1, conv_dim, 3, 1, 1)
        self.maskiou_fcn2 = nn.Conv2d(conv_dim, conv_dim, 3, 1, 1)
        self.maskiou_fcn3 = nn.Conv2d(conv_dim, conv_dim, 3, 1, 1)
        self.maskiou_fcn4 = nn.Conv2d(conv_dim, conv_dim, 3, 2, 1)
        self.maskiou_fc1 = nn.Linear(conv_dim * 7 * 7, fc_dim)
        self.maskiou_fc2 = nn.Linear(fc_dim, fc_dim)
        self.maskiou_fc3 = nn.Linear(fc_dim, 1)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The authors' init: Kaiming for the convs and hidden FCs, a small normal for the output so
        # that the first predictions sit near 0.
        for conv in (self.maskiou_fcn1, self.maskiou_fcn2, self.maskiou_fcn3, self.maskiou_fcn4):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in (self.maskiou_fc1, self.maskiou_fc2):
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.maskiou_fc3.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.maskiou_fc3.bias)

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """Predict the IoU of every query's mask in every frame.

        Args:
            features: (B*T, C, h32, w32) stride-32 pixel-decoder features, frames of a clip consecutive
                (for one clip: (T, C, h32, w32)). Padded area included.
            mask_logits: (B, Q, T, h4, w4) raw mask logits, or (Q, T, h4, w4) for one clip.

        Returns:
            (B, Q, T) raw quality values, or (Q, T) for one clip; unclamped.
        """
        if mask_logits.dim() == 4:
            return self.forward(features, mask_logits[None])[0]
        if mask_logits.dim() != 5:
            shape = tuple(mask_logits.shape)
            raise AutoQVISError(f"QualityPredictor: mask_logits must be (B, Q, T, h, w), got {shape}")
        b, q, t = mask_logits.shape[:3]
        if features.shape[0] != b * t or features.shape[1] != self.in_channels:
            raise AutoQVISError(
                f"QualityPredictor: features {tuple(features.shape)} do not fit {b} clip(s) of {t} frames "
                f"with {self.in_channels} channels"
            )
        x = self._first_conv(resize_features(features).unflatten(0, (b, t)), pool_mask_logits(mask_logits))
        x = F.relu(self.maskiou_fcn2(x))
        x = F.relu(self.maskiou_fcn3(x))
        x = F.relu(self.maskiou_fcn4(x))  # (BQT, conv_dim, 7, 7)
        x = F.relu(self.maskiou_fc1(x.flatten(1)))
        x = F.relu(self.maskiou_fc2(x))
        return self.maskiou_fc3(x).view(b, q, t)

    def _first_conv(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``relu(fcn1(cat[features, mask]))`` without repeating the feature map for every query.

        The conv is linear, so its feature part is computed once per frame and broadcast over the Q
        queries (the authors repeat the map Q times; same numbers up to summation order).

        Args:
            features: (B, T, C, 14, 14).
            masks: (B, Q, T, 1, 14, 14).

        Returns:
            (B*Q*T, conv_dim, 14, 14), rows ordered (b, q, t).
        """
        w, c = self.maskiou_fcn1.weight, self.in_channels
        feat = F.conv2d(features.flatten(0, 1), w[:, :c], self.maskiou_fcn1.bias, padding=1)
        mask = F.conv2d(masks.flatten(0, 2), w[:, c:], padding=1)
        b, q, t = masks.shape[:3]
        out = mask.unflatten(0, (b, q, t)) + feat.unflatten(0, (b, 1, t))
        return F.relu(out).flatten(0, 2)


def resize_features(features: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, 14, 14), bilinear, ``align_corners=False``."""
    return F.interpolate(features, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", align_corners=False)


def resize_mask_logits(mask_logits: torch.Tensor) -> torch.Tensor:
    """(..., h, w) raw logits -> (..., 28, 28), bilinear, ``align_corners=False`` (any aspect ratio)."""
    lead = mask_logits.shape[:-2]
    flat = mask_logits.reshape(-1, 1, *mask_logits.shape[-2:])
    out = F.interpolate(flat, size=(MASK_SIZE, MASK_SIZE), mode="bilinear", align_corners=False)
    return out.view(*lead, MASK_SIZE, MASK_SIZE)


def pool_mask_logits(mask_logits: torch.Tensor) -> torch.Tensor:
    """(B, Q, T, h, w) raw logits -> (B, Q, T, 1, 14, 14): 28x28 resize, then 2x2 max-pool."""
    lead = mask_logits.shape[:-2]
    grid = resize_mask_logits(mask_logits).reshape(-1, 1, MASK_SIZE, MASK_SIZE)
    return F.max_pool2d(grid, kernel_size=2, stride=2).view(*lead, 1, FEATURE_SIZE, FEATURE_SIZE)


def freeze_quality_predictor(model: nn.Module) -> int:
    """Freeze every ``QualityPredictor`` inside ``model`` (self-training rounds keep it fixed).

    Sets ``requires_grad=False`` on its parameters and drops any gradient they hold, so an optimizer
    (even one built over all parameters, with momentum from earlier steps) skips them. Build the criterion
    without the ``"maskiou"`` loss too: a frozen predictor would still pass the quality loss's gradient
    into the mask branch through its mask input.

    Returns:
        Number of parameter tensors frozen (14 for one predictor).
    """
    frozen = 0
    for module in model.modules():
        if isinstance(module, QualityPredictor):
            for p in module.parameters():
                p.requires_grad_(False)
                p.grad = None
                frozen += 1
    if frozen == 0:
        raise AutoQVISError("freeze_quality_predictor: the model has no quality predictor "
                            "(model.quality.enabled is false?)")
    return frozen


__all__ = ["QualityPredictor", "freeze_quality_predictor", "resize_features", "resize_mask_logits", "pool_mask_logits"]
