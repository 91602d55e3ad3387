"""Mask2Former's MSDeformAttn pixel decoder: a deformable transformer encoder over res3..res5, then one
FPN step to the stride-4 ``mask_features``. Every frame is an independent image here.

State-dict names follow detectron2 (``input_proj.{l}.{0,1}``, ``transformer.level_embed``,
``transformer.encoder.layers.{i}.*``, ``mask_features``, ``adapter_1``, ``layer_1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import onednn
from .backbone import Conv2dNorm
from .ms_deform_attn import MSDeformAttn
from .position_encoding import sine_position_2d

ENCODER_FEATURES = ("res5", "res4", "res3")  # level 0 = coarsest, as in the official code


def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill``: kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: x = norm1(x + attn(x + pos)); x = norm2(x + FFN(x)). Shapes (N, S, C)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        if onednn.applies(x) and not self.training:
            # inference: the residual additions and the ReLU fused into the linear layers (dropout is inactive)
            x = self.norm1(self.self_attn(x + pos, reference_points, x, shapes, residual=x))
            hidden = onednn.linear(x, self.linear1.weight, self.linear1.bias, relu=True)
            return self.norm2(onednn.linear(hidden, self.linear2.weight, self.linear2.bias, add=x))
        x = self.norm1(x + self.dropout1(self.self_attn(x + pos, reference_points, x, shapes)))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(x), inplace=not torch.is_grad_enabled())))
        return self.norm2(x + self.dropout3(ffn))


class DeformableEncoderStack(nn.Module):
    """The ``encoder.layers`` list (a module of its own only to keep the official state-dict names)."""

    def __init__(self, layers: list[DeformableEncoderLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


def reference_points(shapes: list[tuple[int, int]], device=None) -> torch.Tensor:
    """(1, S, L, 2): the normalised (x, y) centre of every token, repeated for each of the L levels
    (no padding mask, so the valid ratios are all 1)."""
    points = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        points.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
    return torch.cat(points, 0)[None, :, None, :].expand(1, -1, len(shapes), 2)


class DeformableTransformerEncoder(nn.Module):
    """Deformable encoder over several levels at once.

    Forward: srcs [(N, C, h_l, w_l)], pos [(C, h_l, w_l)] -> [(N, C, h_l, w_l)] (same shapes).
    """

    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float,
                 num_levels: int, n_points: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        self.encoder = DeformableEncoderStack(
            [DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_levels, nhead, n_points)
             for _ in range(num_layers)]
        )
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.encoder.layers:
            layer.self_attn.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[torch.Tensor], pos: list[torch.Tensor]) -> list[torch.Tensor]:
        shapes = [(s.shape[2], s.shape[3]) for s in srcs]
        x = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # (N, S, C)
        lvl_pos = torch.cat([p.flatten(1).transpose(0, 1) + self.level_embed[i] for i, p in enumerate(pos)], 0)[None]
        ref = reference_points(shapes, device=x.device)
        for layer in self.encoder.layers:
            x = layer(x, lvl_pos, ref, shapes)
        n, _, c = x.shape
        parts = x.split([h * w for h, w in shapes], dim=1)
        maps = [z.transpose(1, 2).reshape(n, c, h, w) for z, (h, w) in zip(parts, shapes)]
        if srcs[0].is_contiguous(memory_format=torch.channels_last):
            # channels-last views already; made dense so that resizing and additions downstream keep that layout
            maps = [z.contiguous(memory_format=torch.channels_last) for z in maps]
        return maps


class MSDeformAttnPixelDecoder(nn.Module):
    """Pixel decoder of Mask2Former (one FPN level: res2, i.e. ``common_stride`` 4).

    Args:
        in_channels: backbone channels {"res2": C2, "res3": C3, "res4": C4, "res5": C5}.
        conv_dim: width of every decoder map (CONVS_DIM).
        mask_dim: channels of ``mask_features`` (MASK_DIM).
        enc_layers, enc_dim_feedforward, enc_nheads, enc_n_points, dropout: deformable encoder settings.
        norm: "GN" (GroupNorm, 32 groups) or "" (no norm, conv biases instead) for adapter_1 / layer_1.
    Forward: features {"res2".."res5": (N, C_k, H/s, W/s)} ->
        mask_features (N, mask_dim, H/4, W/4),
        multi_scale [(N, conv_dim, H/32, W/32), (N, conv_dim, H/16, W/16), (N, conv_dim, H/8, W/8)].
    """

    def __init__(self, in_channels: dict[str, int], conv_dim: int = 256, mask_dim: int = 256, enc_layers: int = 6,
                 enc_dim_feedforward: int = 1024, enc_nheads: int = 8, enc_n_points: int = 4,
                 dropout: float = 0.0, norm: str = "GN"):
        super().__init__()
        self.input_proj = nn.ModuleList(
            nn.Sequential(onednn.Conv2d(in_channels[f], conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for f in ENCODER_FEATURES
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.transformer = DeformableTransformerEncoder(
            conv_dim, enc_nheads, enc_layers, enc_dim_feedforward, dropout, len(ENCODER_FEATURES), enc_n_points
        )
        self.conv_dim = conv_dim
        self.mask_features = onednn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        _c2_xavier_fill(self.mask_features)
        use_bias = norm == ""
        self.adapter_1 = Conv2dNorm(in_channels["res2"], conv_dim, kernel_size=1, bias=use_bias,
                                    norm=nn.GroupNorm(32, conv_dim) if norm else None)
        self.layer_1 = Conv2dNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias,
                                  norm=nn.GroupNorm(32, conv_dim) if norm else None, relu=True)
        _c2_xavier_fill(self.adapter_1)
        _c2_xavier_fill(self.layer_1)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # float32 throughout, as the official code: deformable sampling is not reliable in half precision
        with torch.autocast(device_type=features["res2"].device.type, enabled=False):
            return self._forward(features)

    def _forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        srcs = [proj(features[f].float()) for proj, f in zip(self.input_proj, ENCODER_FEATURES)]
        pos = [sine_position_2d(s.shape[2], s.shape[3], self.conv_dim // 2, device=s.device) for s in srcs]
        multi_scale = self.transformer(srcs, pos)
        lateral = self.adapter_1(features["res2"].float())
        y = lateral + F.interpolate(multi_scale[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return self.mask_features(self.layer_1(y)), multi_scale
