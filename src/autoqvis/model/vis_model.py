"""VideoMaskFormer: backbone -> pixel decoder -> video transformer decoder (-> quality predictor), with the
official input handling (RGB normalisation, zero padding to multiples of 32) and video post-processing.

``build_model(cfg)`` is the one place that reads the model config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import Config
from ..core.errors import AutoQVISError
from .backbone import ResNet
from .criterion import build_criterion
from .pixel_decoder import MSDeformAttnPixelDecoder
from .quality import QualityPredictor
from .video_decoder import VideoMultiScaleMaskedTransformerDecoder

ENCODE_CHUNK = 8  # frames per backbone/pixel-decoder pass at inference (frames are independent there)
RESIZE_CHUNK = 16  # frames per mask-upsampling pass at inference (bounds float memory on long videos)


class MaskFormerHead(nn.Module):
    """``sem_seg_head``: the pixel decoder and the transformer decoder (``predictor``)."""

    def __init__(self, pixel_decoder: MSDeformAttnPixelDecoder, predictor: VideoMultiScaleMaskedTransformerDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class VideoMaskFormer(nn.Module):
    """The VIS model.

    Args:
        backbone: ResNet returning res2..res5.
        sem_seg_head: pixel decoder + transformer decoder.
        criterion: training loss (``VideoSetCriterion``) or None; its ``empty_weight`` buffer is part of the
            state dict, as in detectron2.
        pixel_mean, pixel_std: RGB normalisation (0..255 units).
        size_divisibility: inputs are zero-padded (after normalisation) to multiples of this.
        test_topk: instances kept per video at inference.
    """

    def __init__(self, backbone: ResNet, sem_seg_head: MaskFormerHead, criterion: nn.Module | None,
                 pixel_mean: list[float], pixel_std: list[float], size_divisibility: int = 32, test_topk: int = 10):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.size_divisibility = size_divisibility
        self.test_topk = test_topk

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def has_quality(self) -> bool:
        return self.sem_seg_head.predictor.maskiou_feature_extractor is not None

    # ------------------------------------------------------------------------------- input
    def preprocess(self, clips: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalise and zero-pad a batch of clips.

        Args:
            clips: B float tensors (T, 3, H_b, W_b), RGB 0..255, same T.
        Returns:
            images (B*T, 3, Hp, Wp) (Hp, Wp: the largest H, W rounded up to ``size_divisibility``) and (Hp, Wp).
        """
        h = max(c.shape[-2] for c in clips)
        w = max(c.shape[-1] for c in clips)
        d = self.size_divisibility
        hp, wp = (h + d - 1) // d * d, (w + d - 1) // d * d
        t = clips[0].shape[0]
        images = torch.zeros(len(clips) * t, 3, hp, wp, device=self.device)
        for i, clip in enumerate(clips):
            x = (clip.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
            images[i * t:(i + 1) * t, :, : x.shape[-2], : x.shape[-1]] = x
        return images, (hp, wp)

    # ----------------------------------------------------------------------------- forward
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Backbone + pixel decoder, per frame: images (N, 3, Hp, Wp) ->
        mask_features (N, C_m, Hp/4, Wp/4), multi-scale [(N, C, Hp/32, Wp/32), Hp/16, Hp/8]."""
        if self.training or torch.is_grad_enabled() or len(images) <= ENCODE_CHUNK:
            return self.sem_seg_head.pixel_decoder(self.backbone(images))
        parts = [self.sem_seg_head.pixel_decoder(self.backbone(chunk)) for chunk in images.split(ENCODE_CHUNK)]
        return torch.cat([p[0] for p in parts]), [torch.cat(level) for level in zip(*[p[1] for p in parts])]

    def forward_batch(self, images: torch.Tensor, num_frames: int, score_all: bool | None = None,
                      aux: bool = True) -> dict:
        """images (B*T, 3, Hp, Wp) normalised and padded -> the decoder's batched outputs (see
        ``VideoMultiScaleMaskedTransformerDecoder.forward``; quality under ``"pred_maskiou"``)."""
        mask_features, multi_scale = self.encode(images)
        return self.sem_seg_head.predictor(multi_scale, mask_features, num_frames, score_all=score_all, aux=aux)

    def forward_raw(self, clip: torch.Tensor, with_aux: bool | None = None) -> dict:
        """Raw head outputs for one clip.

        Args:
            clip: float (T, 3, H, W), RGB 0..255.
            with_aux: include ``aux_outputs`` (default: in training mode only).
        Returns:
            {"pred_logits": (Q, K+1), "pred_masks": (Q, T, Hp/4, Wp/4) logits on the padded grid,
             "pred_maskiou": (Q, T) raw predicted IoU (with a quality predictor), "aux_outputs": list of dicts with the same
             keys for the dec_layers earlier predictions (when ``with_aux``; first = from the bare queries)}.
        """
        _check_clip(clip)
        with_aux = self.training if with_aux is None else with_aux
        images, _ = self.preprocess([clip])
        out = self.forward_batch(images, clip.shape[0], aux=with_aux)
        result = _unbatch(out)
        if with_aux:
            result["aux_outputs"] = [_unbatch(a) for a in out["aux_outputs"]]
        return result

    def forward(self, clip: torch.Tensor) -> dict:
        return self.forward_raw(clip)

    # --------------------------------------------------------------------------- inference
    @torch.no_grad()
    def inference(self, clip: torch.Tensor, out_size: tuple[int, int] | None = None) -> dict:
        """Segment one clip: the top-k queries by object score, masks at ``out_size``.

        Args:
            clip: float (T, 3, H, W), RGB 0..255.
            out_size: (h, w) of the output masks (default (H, W)).
        Returns:
            {"scores": (k,) descending, "labels": (k,), "query_indices": (k,), "masks": bool (k, T, h, w),
             "pred_iou": (k, T) predicted mask IoU in [0, 1] (None without a quality predictor)}.
        """
        _check_clip(clip)
        images, padded = self.preprocess([clip])
        mask_features, multi_scale = self.encode(images)
        predictor = self.sem_seg_head.predictor
        out = predictor(multi_scale, mask_features, clip.shape[0], score_all=False, score_last=False, aux=False)
        image_size = (clip.shape[-2], clip.shape[-1])
        res = postprocess_video(out["pred_logits"][0], out["pred_masks"][0], image_size, out_size or image_size,
                                self.test_topk, padded_size=padded)
        if self.has_quality:
            # only the kept queries are scored: the predictor treats every (query, frame) on its own
            kept = out["pred_masks"][:, res["query_indices"]]
            res["pred_iou"] = predictor.maskiou_feature_extractor(multi_scale[0], kept)[0].clamp(0, 1)
        return res

    # ---------------------------------------------------------------------------- training
    def forward_train(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        """Weighted losses of a batch of training samples.

        Args:
            batch: samples ``{"frames": float (T, 3, H, W) RGB 0..255, "masks": bool (N, T, H, W),
                "labels": int64 (N,)}`` (sizes may differ; T may not).
        Returns:
            {loss name: weighted scalar}; their sum is the total loss.
        """
        if self.criterion is None:
            raise AutoQVISError("forward_train: the model was built without a criterion")
        _check_batch(batch)
        images, padded = self.preprocess([s["frames"] for s in batch])
        score_all = "maskiou" in getattr(self.criterion, "losses", ["maskiou"]) and self.has_quality
        outputs = self.forward_batch(images, batch[0]["frames"].shape[0], score_all=score_all)
        targets = [_pad_target(s, padded, self.device) for s in batch]
        losses = self.criterion(outputs, targets)
        weights = self.criterion.weight_dict
        return {k: v * weights[k] for k, v in losses.items() if k in weights}


# ------------------------------------------------------------------------------ post-processing
def select_topk(pred_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k (query, class) pairs by softmax probability, sorted descending.

    Args:
        pred_logits: (Q, K+1), the last column is "no object".
        k: pairs to keep (at most Q * K are available).
    Returns:
        scores (k,), labels (k,) int64, query_indices (k,) int64.
    """
    q, k1 = pred_logits.shape
    scores = F.softmax(pred_logits, dim=-1)[:, :-1].flatten()
    top, flat = scores.topk(min(k, scores.numel()), sorted=True)
    return top, flat % (k1 - 1), torch.div(flat, k1 - 1, rounding_mode="floor")


def resize_mask_logits(mask_logits: torch.Tensor, image_size: tuple[int, int], out_size: tuple[int, int],
                       padded_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Official mask resizing: [bilinear to the padded input size], crop to the image size, bilinear to
    ``out_size``, threshold at logit 0 (strict). All bilinear resizes use ``align_corners=False``.

    Args:
        mask_logits: (k, T, h, w) logits; at the padded size already when ``padded_size`` is None.
        image_size: (H, W) before padding. out_size: (h_out, w_out).
        padded_size: (Hp, Wp) to upsample to first, or None.
    Returns:
        bool (k, T, h_out, w_out).
    """
    k, t = mask_logits.shape[:2]
    out = torch.empty(k, t, *out_size, dtype=torch.bool, device=mask_logits.device)
    for s in range(0, t, RESIZE_CHUNK):
        m = mask_logits[:, s:s + RESIZE_CHUNK]
        if padded_size is not None:
            m = F.interpolate(m, size=padded_size, mode="bilinear", align_corners=False)
        m = m[:, :, : image_size[0], : image_size[1]]
        m = F.interpolate(m, size=out_size, mode="bilinear", align_corners=False)
        out[:, s:s + RESIZE_CHUNK] = m > 0
    return out


def postprocess_video(pred_logits: torch.Tensor, pred_masks: torch.Tensor, image_size: tuple[int, int],
                      out_size: tuple[int, int], topk: int = 10, pred_maskiou: torch.Tensor | None = None,
                      padded_size: tuple[int, int] | None = None) -> dict:
    """The official ``inference_video`` (AutoQ-VIS flavour: sorted by score, predicted IoU clamped to [0, 1]).

    Selecting before resizing gives the same numbers as resizing every query (the resize is per query).

    Args:
        pred_logits: (Q, K+1). pred_masks: (Q, T, h, w) logits (at the padded size unless ``padded_size`` given).
        image_size: (H, W) before padding. out_size: output (h, w). topk: instances kept.
        pred_maskiou: (Q, T) raw predicted IoU or None. padded_size: see ``resize_mask_logits``.
    Returns:
        {"scores": (k,), "labels": (k,), "query_indices": (k,), "masks": bool (k, T, h, w), "pred_iou": (k, T) or None}.
    """
    scores, labels, queries = select_topk(pred_logits, topk)
    masks = resize_mask_logits(pred_masks[queries], image_size, out_size, padded_size)
    pred_iou = None if pred_maskiou is None else pred_maskiou[queries].clamp(0, 1)
    return {"scores": scores, "labels": labels, "query_indices": queries, "masks": masks, "pred_iou": pred_iou}


# -------------------------------------------------------------------------------------- helpers
def _unbatch(out: dict) -> dict:
    """First video of a batched prediction; ``pred_maskiou`` (Q, T) when the model has a quality predictor."""
    res = {"pred_logits": out["pred_logits"][0], "pred_masks": out["pred_masks"][0]}
    if out.get("pred_maskiou") is not None:
        res["pred_maskiou"] = out["pred_maskiou"][0]
    return res


def _check_clip(clip: torch.Tensor) -> None:
    if not torch.is_tensor(clip) or clip.dim() != 4 or clip.shape[1] != 3 or clip.shape[0] < 1:
        shape = tuple(clip.shape) if torch.is_tensor(clip) else type(clip).__name__
        raise AutoQVISError(f"model input: expected a clip (T, 3, H, W) with T >= 1, got {shape}")


def _check_batch(batch: list[dict]) -> None:
    if not batch:
        raise AutoQVISError("forward_train: empty batch")
    t = batch[0]["frames"].shape[0]
    for i, s in enumerate(batch):
        frames, masks, labels = s["frames"], s["masks"], s["labels"]
        _check_clip(frames)
        if frames.shape[0] != t:
            raise AutoQVISError(f"forward_train: sample {i}: frames has {frames.shape[0]} frames, sample 0 has {t}")
        if masks.dim() != 4 or masks.shape[1:] != (t, *frames.shape[-2:]) or masks.shape[0] != len(labels):
            raise AutoQVISError(
                f"forward_train: sample {i}: masks {tuple(masks.shape)} must be (N, {t}, {frames.shape[-2]}, "
                f"{frames.shape[-1]}) with N = {len(labels)} labels"
            )


def _pad_target(sample: dict, padded: tuple[int, int], device: torch.device) -> dict:
    """Targets padded like the input; instances empty in every frame are dropped (nothing to match)."""
    masks = sample["masks"].to(device)
    keep = masks.flatten(1).any(1)
    masks = masks[keep]
    out = torch.zeros(masks.shape[0], masks.shape[1], *padded, device=device)
    out[:, :, : masks.shape[2], : masks.shape[3]] = masks.float()
    return {"labels": sample["labels"].to(device)[keep], "masks": out}


# ------------------------------------------------------------------------------------------ build
def build_model(cfg: Config) -> VideoMaskFormer:
    """The VideoMaskFormer described by ``cfg.model`` (+ its criterion from ``cfg.loss``)."""
    m = cfg.model
    pd = m.pixel_decoder
    if pd.norm not in ("GN", ""):
        raise AutoQVISError(f"model.pixel_decoder.norm: {pd.norm!r} is not supported (\"GN\" or \"\")")
    for key, dim in (("model.pixel_decoder.conv_dim", pd.conv_dim),):
        if dim % 32:
            raise AutoQVISError(f"{key}: {dim} must be a multiple of 32 (GroupNorm with 32 groups)")
    if m.hidden_dim % m.nheads or pd.conv_dim % pd.enc_nheads:
        raise AutoQVISError("model.hidden_dim / model.pixel_decoder.conv_dim must be divisible by their head counts")
    if m.num_queries < 1 or m.dec_layers < 1 or m.num_classes < 1:
        raise AutoQVISError("model.num_queries, model.dec_layers and model.num_classes must be >= 1")
    b = m.backbone
    backbone = ResNet(b.depth, b.stem_out_channels, b.res2_out_channels, b.width_per_group, b.freeze_at, b.norm)
    pixel_decoder = MSDeformAttnPixelDecoder(
        backbone.out_channels, pd.conv_dim, pd.mask_dim, pd.enc_layers, pd.enc_dim_feedforward, pd.enc_nheads,
        pd.enc_n_points, pd.dropout, pd.norm,
    )
    quality = None
    if m.quality.enabled:
        quality = QualityPredictor(pd.conv_dim, m.quality.conv_dim, m.quality.fc_dim)
    predictor = VideoMultiScaleMaskedTransformerDecoder(
        pd.conv_dim, m.num_classes, m.hidden_dim, m.num_queries, m.nheads, m.dim_feedforward, m.dec_layers,
        m.pre_norm, pd.mask_dim, quality,
    )
    # a frozen predictor gets no quality loss: it would still push gradients into the mask branch
    with_quality_loss = m.quality.enabled and not cfg.train.freeze_quality_predictor
    criterion = build_criterion(cfg.loss, m.num_classes, m.dec_layers, with_quality_loss)
    return VideoMaskFormer(backbone, MaskFormerHead(pixel_decoder, predictor), criterion, m.pixel_mean,
                           m.pixel_std, m.size_divisibility, m.test_topk)
