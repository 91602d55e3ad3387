"""Training losses of the VIS model: Hungarian-matched CE + point-sampled mask BCE and dice (with
DropLoss), and the quality predictor's IoU regression, on the last and on every auxiliary decoder layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import LossConfig
from ..core.dist import get_world_size, is_distributed
from ..core.errors import AutoQVISError
from .matcher import VideoHungarianMatcher
from .point_sample import point_sample, uncertain_point_coords

LOSS_KEYS = {"labels": ("loss_ce",), "masks": ("loss_mask", "loss_dice"), "maskiou": ("loss_maskiou",)}


class VideoSetCriterion(nn.Module):
    """DETR-style set criterion for video: match queries to targets, then supervise each pair.

    Losses (names for ``losses``):
      * ``"labels"``: cross-entropy over K+1 classes for every query; unmatched queries are no-object
        (class weight ``eos_coef``).
      * ``"masks"``: sigmoid BCE and dice of matched pairs on ``num_points`` points per pair and FRAME
        (PointRend importance sampling on each frame's map, as VideoMask2Former), summed over pairs and
        frames and divided by the number of target instances. With ``drop_loss``, see ``loss_masks``.
      * ``"maskiou"``: MSE of the quality predictions against the IoU of every query's binarised mask
        with its best-fitting target (no matching), see ``loss_maskiou``.

    Every loss is repeated on each ``outputs["aux_outputs"][i]`` (own matching) with the suffix ``_i``.
    ``forward`` returns unweighted losses; ``weight_dict`` maps each key to its weight.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: VideoHungarianMatcher,
        weight_dict: dict[str, float],
        eos_coef: float,
        losses: list[str],
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        drop_loss: bool = False,
        drop_loss_iou: float = 0.01,
    ):
        """
        Args:
            num_classes: K, object classes without no-object (1 for class-agnostic).
            matcher: the Hungarian matcher.
            weight_dict: loss key -> weight (kept as an attribute; not applied here).
            eos_coef: CE weight of the no-object class (0.1).
            losses: subset of ``"labels"``, ``"masks"``, ``"maskiou"``.
            num_points, oversample_ratio, importance_sample_ratio: point sampling of the mask losses.
            drop_loss: zero the mask losses of (pair, frame)s whose soft IoU is <= ``drop_loss_iou``.
            drop_loss_iou: DropLoss threshold (0.01).
        """
        super().__init__()
        unknown = [name for name in losses if name not in LOSS_KEYS]
        if unknown:
            raise ValueError(f"VideoSetCriterion: unknown losses {unknown} (known: {sorted(LOSS_KEYS)})")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.drop_loss = drop_loss
        self.drop_loss_iou = drop_loss_iou
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    # ------------------------------------------------------------------------------------ losses
    def loss_labels(self, outputs: dict, targets: list[dict], indices: list, num_masks: float) -> dict:
        """Weighted CE of ``pred_logits`` (B, Q, K+1); matched queries get their target's label."""
        logits = outputs["pred_logits"].float()
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        batch_idx, query_idx = _matched_queries(indices)
        matched_labels = [t["labels"][j] for t, (_, j) in zip(targets, indices)]
        classes[batch_idx, query_idx] = torch.cat(matched_labels).to(logits.device)
        return {"loss_ce": F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight)}

    def loss_masks(self, outputs: dict, targets: list[dict], indices: list, num_masks: float) -> dict:
        """BCE and dice of the matched mask tubes on importance-sampled points.

        Each matched (query, target) pair contributes one row per frame: the pair's (T, h, w) logits are
        split into T maps and each frame gets its own ``num_points`` points (VideoMask2Former's layout).
        Row losses are summed and divided by ``num_masks`` (so a pair weighs T frames).

        DropLoss (paper eq. 1) composes with this layout per row: a frame's soft IoU is
        ``sum(p * l) / (sum(p) + sum(l) - sum(p * l))`` over its sampled points (p = sigmoid of the point
        logit, l = the bilinearly sampled target), and rows with IoU <= ``drop_loss_iou`` get weight 0 in
        both BCE and dice; ``num_masks`` is unchanged. The other frames of the same pair still count. A frame
        where the target is absent has IoU 0 and is always dropped (as in the authors' code).
        """
        batch_idx, query_idx = _matched_queries(indices)
        pred = outputs["pred_masks"][batch_idx, query_idx].float()  # (M, T, h, w)
        if len(pred) == 0:
            zero = outputs["pred_masks"].sum() * 0.0  # keeps the graph connected (DDP)
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        gt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).to(pred)  # (M, T, H, W)
        pred, gt = pred.flatten(0, 1)[:, None], gt.flatten(0, 1)[:, None]  # (M*T, 1, ., .)
        with torch.no_grad():
            coords = uncertain_point_coords(pred, self.num_points, self.oversample_ratio, self.importance_sample_ratio)
            point_labels = point_sample(gt, coords)[:, 0]  # (M*T, P)
        point_logits = point_sample(pred, coords)[:, 0]
        bce = sigmoid_bce(point_logits, point_labels)
        dice = dice_loss(point_logits, point_labels)
        if self.drop_loss:
            keep = drop_loss_weights(point_logits.detach(), point_labels, self.drop_loss_iou)
            bce, dice = bce * keep, dice * keep
        return {"loss_mask": bce.sum() / num_masks, "loss_dice": dice.sum() / num_masks}

    def loss_maskiou(self, outputs: dict, targets: list[dict], indices: list, num_masks: float) -> dict:
        """MSE of ``pred_maskiou`` (B, Q, T) (or (B, Q, T, 1)) against ``quality_targets``, over all B*Q*T.

        Every query is scored, matched or not. The raw (unclamped) predictions are regressed; the mask
        logits reach the loss only through the predictor's input (the targets are constants).
        """
        if outputs.get("pred_maskiou") is None:
            raise AutoQVISError("criterion: the 'maskiou' loss needs pred_maskiou (is the quality predictor enabled?)")
        pred = outputs["pred_maskiou"].float()
        if pred.dim() == 4:
            pred = pred.squeeze(3)
        target = quality_targets(outputs["pred_masks"], [t["masks"] for t in targets])
        return {"loss_maskiou": F.mse_loss(pred, target)}

    # ----------------------------------------------------------------------------------- forward
    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """
        Args:
            outputs: ``"pred_logits"`` (B, Q, K+1), ``"pred_masks"`` (B, Q, T, h, w) logits,
                ``"pred_maskiou"`` (B, Q, T) (needed for ``"maskiou"``), ``"aux_outputs"`` list of dicts
                with the same keys (optional).
            targets: B dicts ``{"labels": (N,) int64, "masks": (N, T, Hp, Wp) bool/float}`` (padded like the input).

        Returns:
            Unweighted scalar losses: ``loss_ce``, ``loss_mask``, ``loss_dice``, ``loss_maskiou`` (those
            requested) and the same with ``_0``, ``_1``, ... for the aux outputs. Computed in float32.
        """
        _check_targets(outputs, targets)
        num_masks = self._num_masks(targets, outputs["pred_masks"].device)
        with torch.autocast(outputs["pred_masks"].device.type, enabled=False):
            losses = self._losses_of(outputs, targets, num_masks, suffix="")
            for i, aux in enumerate(outputs.get("aux_outputs") or []):
                losses.update(self._losses_of(aux, targets, num_masks, suffix=f"_{i}"))
        return losses

    def _losses_of(self, outputs: dict, targets: list[dict], num_masks: float, suffix: str) -> dict:
        """Every requested loss of one prediction layer, keys suffixed."""
        needs_matching = any(name in ("labels", "masks") for name in self.losses)
        indices = self.matcher(outputs, targets) if needs_matching else []
        losses = {}
        for name in self.losses:
            loss_fn = getattr(self, f"loss_{name}")
            losses.update({k + suffix: v for k, v in loss_fn(outputs, targets, indices, num_masks).items()})
        return losses

    @staticmethod
    def _num_masks(targets: list[dict], device: torch.device) -> float:
        """Target instances per process, averaged over processes, at least 1 (the mask-loss normaliser)."""
        count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if is_distributed():
            torch.distributed.all_reduce(count)
        return max(count.item() / get_world_size(), 1.0)


# ------------------------------------------------------------------------------ point-wise losses
def sigmoid_bce(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """(R, P) logits, (R, P) labels in [0, 1] -> (R,) mean BCE per row."""
    return F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none").mean(1)


def dice_loss(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """(R, P) logits, (R, P) labels -> (R,) ``1 - (2|p.l| + 1) / (|p| + |l| + 1)``, p = sigmoid."""
    probs = point_logits.sigmoid()
    numerator = 2 * (probs * point_labels).sum(1)
    denominator = probs.sum(1) + point_labels.sum(1)
    return 1 - (numerator + 1) / (denominator + 1)


def soft_iou(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """(R, P) logits, (R, P) labels -> (R,) soft IoU of sigmoid probabilities vs labels (0 if both empty)."""
    probs = point_logits.sigmoid()
    inter = (probs * point_labels).sum(1)
    union = probs.sum(1) + point_labels.sum(1) - inter
    return inter / union.clamp_min(torch.finfo(union.dtype).tiny)


def drop_loss_weights(point_logits: torch.Tensor, point_labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """DropLoss (eq. 1): (R,) weights, 1 where the row's soft IoU > ``iou_threshold``, else 0. No gradient."""
    with torch.no_grad():
        return (soft_iou(point_logits, point_labels) > iou_threshold).to(point_logits.dtype)


# ---------------------------------------------------------------------------------- quality target
@torch.no_grad()
def quality_targets(pred_masks: torch.Tensor, target_masks: list[torch.Tensor]) -> torch.Tensor:
    """The quality predictor's regression targets, one IoU per query and frame.

    Args:
        pred_masks: (B, Q, T, h, w) mask logits.
        target_masks: B tensors (N_b, T, H, W) (bool or float, > 0.5 is foreground).

    Returns:
        (B, Q, T) float32: for each query, the per-frame IoUs with the target whose mean IoU over frames is
        highest (first target on ties); zeros for a video without targets.
    """
    return torch.stack([best_target_ious(p, t) for p, t in zip(pred_masks, target_masks)])


def best_target_ious(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, T, h, w) logits, (N, T, H, W) targets -> (Q, T) per-frame IoU with each query's best target."""
    q, t = logits.shape[:2]
    if len(targets) == 0:
        return logits.new_zeros(q, t, dtype=torch.float32)
    ious = frame_ious(logits, targets)  # (Q, N, T)
    best = ious.mean(2).argmax(1)  # argmax returns the first maximum: the first target wins ties
    return ious[torch.arange(q, device=ious.device), best]


def frame_ious(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of every binarised query mask with every target, per frame.

    The logits are resized bilinearly (``align_corners=False``) to the target size and binarised with
    ``sigmoid > 0.5``; IoU = |P & G| / (|P | G| + 1e-6), so empty vs empty is 0.

    Args:
        logits: (Q, T, h, w). targets: (N, T, H, W).

    Returns:
        (Q, N, T) float32.
    """
    size = targets.shape[-2:]
    gt = (targets > 0.5).to(logits.device)
    per_frame = []
    for t in range(logits.shape[1]):  # one frame at a time bounds memory at Q x H x W
        up = F.interpolate(logits[:, t : t + 1].float(), size=size, mode="bilinear", align_corners=False)
        pred = (up.sigmoid() > 0.5).flatten(1).float()  # (Q, H*W)
        g = gt[:, t].flatten(1).float()  # (N, H*W)
        inter = pred @ g.T  # exact: integer counts < 2**24
        union = pred.sum(1)[:, None] + g.sum(1)[None, :] - inter
        per_frame.append(inter / (union + 1e-6))
    return torch.stack(per_frame, dim=2)


# ------------------------------------------------------------------------------------------ helpers
def _matched_queries(indices: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Matcher output -> (batch_idx, query_idx), both (M,), concatenated over the batch."""
    if not indices:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    return batch_idx, torch.cat([src for src, _ in indices])


def _check_targets(outputs: dict, targets: list[dict]) -> None:
    """Targets must fit the predictions: one per video, (N,) labels, (N, T, H, W) masks."""
    b, _, t = outputs["pred_masks"].shape[:3]
    if len(targets) != b:
        raise AutoQVISError(f"criterion: {len(targets)} targets for a batch of {b} videos")
    for i, target in enumerate(targets):
        masks, labels = target["masks"], target["labels"]
        if masks.dim() != 4 or masks.shape[0] != len(labels) or masks.shape[1] != t:
            raise AutoQVISError(
                f"criterion: target {i}: masks {tuple(masks.shape)} must be (N, {t}, H, W) "
                f"with N = {len(labels)} labels"
            )


def build_criterion(cfg: LossConfig, num_classes: int, num_aux: int, quality: bool,
                    drop_loss: bool | None = None) -> VideoSetCriterion:
    """The paper's criterion from the loss config.

    Args:
        cfg: loss weights, point sampling, DropLoss switch and threshold.
        num_classes: K (1 for class-agnostic).
        num_aux: number of aux outputs (= decoder layers, 9 in the paper); adds ``_0 .. _{num_aux-1}`` keys.
        quality: add the ``"maskiou"`` loss (False when the predictor is absent or frozen).
        drop_loss: overrides ``cfg.drop_loss`` when given (self-training rounds decide per round).

    Returns:
        The criterion; its ``weight_dict`` covers exactly the keys it returns.
    """
    matcher = VideoHungarianMatcher(cfg.class_weight, cfg.mask_weight, cfg.dice_weight, cfg.num_points)
    losses = ["labels", "masks"] + (["maskiou"] if quality else [])
    weights = {"loss_ce": cfg.class_weight, "loss_mask": cfg.mask_weight, "loss_dice": cfg.dice_weight,
               "loss_maskiou": cfg.quality_weight}
    base = {k: weights[k] for name in losses for k in LOSS_KEYS[name]}
    suffixes = [""] + ([f"_{i}" for i in range(num_aux)] if cfg.deep_supervision else [])
    weight_dict = {k + s: w for s in suffixes for k, w in base.items()}
    return VideoSetCriterion(
        num_classes, matcher, weight_dict, cfg.no_object_weight, losses, cfg.num_points, cfg.oversample_ratio,
        cfg.importance_sample_ratio, drop_loss=cfg.drop_loss if drop_loss is None else drop_loss,
        drop_loss_iou=cfg.drop_loss_iou,
    )


__all__ = [
    "VideoSetCriterion",
    "build_criterion",
    "sigmoid_bce",
    "dice_loss",
    "soft_iou",
    "drop_loss_weights",
    "quality_targets",
    "best_target_ious",
    "frame_ious",
]
