"""VideoMask2Former's transformer decoder: learnable queries attend to the features of all T frames of a
clip at once, each layer masked by the previous prediction's mask tube, and predict a class and a mask
tube per query after every layer (deep supervision).

State-dict names follow the official ``VideoMultiScaleMaskedTransformerDecoder`` (``sem_seg_head.predictor.*``),
the AutoQ-VIS quality predictor sits under ``maskiou_feature_extractor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import onednn
from .position_encoding import sine_position_3d

NUM_LEVELS = 3  # always strides 32, 16, 8


class SelfAttentionLayer(nn.Module):
    """Self-attention among queries (q = k = x + query_pos, v = x), residual, LayerNorm. Shapes (Q, B, C)."""

    def __init__(self, d_model: int, nhead: int, pre_norm: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        y = self.norm(x) if self.pre_norm else x
        q = y + query_pos
        out = x + self.self_attn(q, q, value=y, need_weights=False)[0]
        return out if self.pre_norm else self.norm(out)


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention from queries to memory tokens, residual, LayerNorm.

    Forward: x (Q, B, C), memory (S, B, C), attn_mask bool (B * heads, Q, S) or (Q, S) for all, True = blocked,
    pos (S, B, C), query_pos (Q, B, C) -> (Q, B, C).
    """

    def __init__(self, d_model: int, nhead: int, pre_norm: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x, memory, attn_mask, pos, query_pos):
        y = self.norm(x) if self.pre_norm else x
        if onednn.applies(memory) and not self.training:
            out = x + self._attend(y + query_pos, memory + pos, memory, attn_mask)
        else:
            att = self.multihead_attn(y + query_pos, memory + pos, value=memory, attn_mask=attn_mask,
                                      need_weights=False)
            out = x + att[0]
        return out if self.pre_norm else self.norm(out)

    def _attend(self, query, key, value, attn_mask):
        """``multihead_attn(...)[0]`` at inference with the projections on the oneDNN route: the key and value
        projections of all T x h x w memory tokens are most of the decoder's arithmetic. Same steps as
        ``F.multi_head_attention_forward`` (blocked = -inf added to the scores, then
        ``scaled_dot_product_attention``)."""
        mha = self.multihead_attn
        heads, (q_len, b, c) = mha.num_heads, query.shape
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)

        def split(t):  # (L, B, C) -> (B, heads, L, C / heads)
            return t.view(t.shape[0], b * heads, c // heads).transpose(0, 1).view(b, heads, t.shape[0], c // heads)

        q = split(onednn.linear(query, w_q, b_q))
        k, v = split(onednn.linear(key, w_k, b_k)), split(onednn.linear(value, w_v, b_v))
        mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(attn_mask, float("-inf"))
        mask = mask.view(b, heads, q_len, -1) if mask.dim() == 3 else mask
        out = F.scaled_dot_product_attention(q, k, v, mask)  # (B, heads, Q, C / heads)
        out = out.permute(2, 0, 1, 3).reshape(q_len * b, c)
        return onednn.linear(out, mha.out_proj.weight, mha.out_proj.bias).view(q_len, b, c)


class FFNLayer(nn.Module):
    """linear2(relu(linear1(x))), residual, LayerNorm. Shapes (Q, B, C)."""

    def __init__(self, d_model: int, dim_feedforward: int, pre_norm: bool = False):
        super().__init__()
        self.linear1 = onednn.Linear(d_model, dim_feedforward)
        self.linear2 = onednn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x) if self.pre_norm else x
        out = x + self.linear2(F.relu(self.linear1(y)))
        return out if self.pre_norm else self.norm(out)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them: (..., in_dim) -> (..., out_dim)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(onednn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class VideoMultiScaleMaskedTransformerDecoder(nn.Module):
    """Decoder of VideoMask2Former.

    Args:
        in_channels: channels of the multi-scale features (pixel decoder's conv_dim).
        num_classes: K; the class head predicts K + 1 logits (last = no object).
        hidden_dim, num_queries, nheads, dim_feedforward: transformer sizes.
        dec_layers: number of decoder layers (9 in the paper; the official config says 10 = 9 + 1).
        pre_norm: pre-LayerNorm layers instead of post-norm.
        mask_dim: channels of ``mask_features``.
        quality_predictor: AutoQ-VIS's quality predictor, ``(features (T, C, h32, w32), mask_logits
            (Q, T, h4, w4)) -> (Q, T)``, or None.
    """

    def __init__(self, in_channels: int, num_classes: int = 1, hidden_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 9, pre_norm: bool = False,
                 mask_dim: int = 256, quality_predictor: nn.Module | None = None):
        super().__init__()
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.hidden_dim = hidden_dim
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, pre_norm) for _ in range(dec_layers))
        for layers in (self.transformer_self_attention_layers, self.transformer_cross_attention_layers,
                       self.transformer_ffn_layers):
            for p in layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        # the official code projects only when in_channels != hidden_dim (never in its configs)
        self.input_proj = nn.ModuleList(
            nn.Identity() if in_channels == hidden_dim else nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
            for _ in range(NUM_LEVELS))
        self.class_embed = onednn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        if quality_predictor is not None:
            self.maskiou_feature_extractor = quality_predictor
        else:
            self.maskiou_feature_extractor = None

    def _memory(self, x: torch.Tensor, level: int, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B*T, C, h, w) -> memory and its position encoding, both (T*h*w, B, C) (frame-major)."""
        _, _, h, w = x.shape
        pos = sine_position_3d(t, h, w, self.hidden_dim // 2, device=x.device)  # (T, C, h, w)
        pos = pos.flatten(2).permute(0, 2, 1).flatten(0, 1)[:, None, :].expand(-1, b, -1)
        src = self.input_proj[level](x).flatten(2) + self.level_embed.weight[level][None, :, None]
        src = src.view(b, t, -1, h * w).permute(1, 3, 0, 2).flatten(0, 1)
        return src, pos

    def _heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_size: tuple[int, int],
               shrunk_features: torch.Tensor | None = None):
        """Predictions from the query states.

        Args:
            output: (Q, B, C) query states; mask_features: (B, T, C_m, h4, w4); attn_size: (h, w) of the next level.
            shrunk_features: mask_features already resized to ``attn_size`` when only the attention mask is
                wanted: bilinear resizing is linear per channel, so projecting the shrunk features gives the
                resized mask logits (to float rounding) at a fraction of the cost; mask logits are then None.
        Returns:
            logits (B, Q, K+1), mask logits (B, Q, T, h4, w4) or None, attention mask bool (B, Q, T*h*w)
            (True = blocked; the same for every head).
        """
        dec = self.decoder_norm(output).transpose(0, 1)
        logits = self.class_embed(dec)
        embedding = self.mask_embed(dec)
        if shrunk_features is not None:
            masks = None
            small = torch.einsum("bqc,btchw->bqthw", embedding, shrunk_features)
            b, q, t = small.shape[:3]
        else:
            masks = torch.einsum("bqc,btchw->bqthw", embedding, mask_features)
            b, q, t = masks.shape[:3]
            small = F.interpolate(masks.flatten(0, 1), size=attn_size, mode="bilinear", align_corners=False)
        blocked = small.detach().view(b, q, t * attn_size[0] * attn_size[1]).sigmoid() < 0.5
        return logits, masks, blocked

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor, num_frames: int,
                score_all: bool | None = None, score_last: bool = True, aux: bool = True) -> dict:
        """
        Args:
            multi_scale: 3 maps (B*T, C, h_l, w_l), strides 32, 16, 8, frames of a clip consecutive.
            mask_features: (B*T, C_m, H/4, W/4).
            num_frames: T.
            score_all: run the quality predictor on every prediction, not only the last (default: in training).
            score_last: run it on the last prediction (False: the caller scores only the queries it keeps).
            aux: also return the earlier predictions. Without them (inference), the earlier layers only need
                their attention masks, which come from mask features shrunk once per level (see ``_heads``).
        Returns:
            {"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, T, H/4, W/4),
             "aux_outputs": [dict of the same keys] * dec_layers (prediction 0 comes from the bare queries; [] without
             ``aux``),
             "pred_maskiou": (B, Q, T) raw quality, when the model has a quality predictor;
             with ``score_all`` every aux dict has its own "pred_maskiou"}.
        """
        bt, c_m, h_m, w_m = mask_features.shape
        t = num_frames
        b = bt // t
        mask_features = mask_features.view(b, t, c_m, h_m, w_m)
        sizes = [tuple(x.shape[-2:]) for x in multi_scale]
        memories = [self._memory(x, lvl, b, t) for lvl, x in enumerate(multi_scale)]
        query_pos = self.query_embed.weight[:, None, :].expand(-1, b, -1)
        output = self.query_feat.weight[:, None, :].expand(-1, b, -1)

        aux = aux or self.training
        shrunk = {}
        if not aux:
            flat = mask_features.flatten(0, 1)
            shrunk = {size: F.interpolate(flat, size=size, mode="bilinear", align_corners=False).view(b, t, c_m, *size)
                      for size in set(sizes)}
        logits, masks, blocked = self._heads(output, mask_features, sizes[0], shrunk.get(sizes[0]))
        preds = [(logits, masks)]
        for i in range(self.num_layers):
            lvl = i % NUM_LEVELS
            # a query whose mask is empty at this level attends everywhere instead of nowhere
            blocked = blocked & ~blocked.all(-1, keepdim=True)
            # one (Q, S) mask serves every head of a single clip; batches need one per (clip, head)
            attn_mask = blocked[0] if b == 1 else blocked[:, None].expand(b, self.num_heads, *blocked.shape[1:]).flatten(0, 1)
            src, pos = memories[lvl]
            output = self.transformer_cross_attention_layers[i](output, src, attn_mask, pos, query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            size = sizes[(i + 1) % NUM_LEVELS]
            logits, masks, blocked = self._heads(output, mask_features, size, None if last else shrunk.get(size))
            preds.append((logits, masks))

        outs = [{"pred_logits": lg, "pred_masks": mk} for lg, mk in (preds if aux else preds[-1:])]
        if self.maskiou_feature_extractor is not None:
            # scored with the stride-32 map: only the last prediction in eval, every one in training
            scored = outs if (self.training if score_all is None else score_all) else outs[-1:] if score_last else []
            for o in scored:
                o["pred_maskiou"] = self.maskiou_feature_extractor(multi_scale[0], o["pred_masks"])
        out = dict(outs[-1])
        out["aux_outputs"] = outs[:-1]
        return out
