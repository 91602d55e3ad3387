"""ResNet backbone in detectron2's layout, so VideoCutLER / AutoQ-VIS checkpoints load by name.

Names: ``stem.conv1``, ``res2.0.{shortcut,conv1,conv2,conv3}`` ... ``res5.*``; every conv has no bias and a
``.norm`` child (FrozenBatchNorm2d by default). The stride-2 of res3..res5 sits in the 3x3 conv
(``STRIDE_IN_1X1: False`` in the official config).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AutoQVISError
from . import onednn

# blocks per stage (res2, res3, res4, res5)
BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
NORMS = ("FrozenBN", "BN", "GN")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms, all four stored as buffers (detectron2).

    Input/output: (N, C, H, W).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        # detectron2 starts at 1 - eps so that a fresh layer is exactly the identity
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            # the fused op would also compute (useless) grads for the frozen affine terms
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # torchvision / BatchNorm2d checkpoints carry a counter that has no meaning here
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """``FrozenBN`` (detectron2 default), ``BN`` (trainable BatchNorm2d) or ``GN`` (GroupNorm, 32 groups)."""
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    if kind == "GN":
        if channels % 32:
            raise AutoQVISError(f"model.backbone.norm GN needs channel counts divisible by 32, got {channels}")
        return nn.GroupNorm(32, channels)
    raise AutoQVISError(f"model.backbone.norm: unknown norm {kind!r} (choose from {', '.join(NORMS)})")


class Conv2dNorm(nn.Conv2d):
    """detectron2's ``Conv2d``: conv, then the optional ``.norm`` child, then an optional ReLU.

    Input (N, C_in, H, W) -> output (N, C_out, H', W').
    """

    def __init__(self, *args, norm: nn.Module | None = None, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return onednn.conv2d(self, x, relu=self.relu)  # the ReLU fused on the oneDNN route
        x = self.norm(onednn.conv2d(self, x))
        if not self.relu:
            return x
        return F.relu(x) if torch.is_grad_enabled() else F.relu_(x)  # inference: no copy


def _conv(c_in: int, c_out: int, k: int, stride: int, norm: str, relu: bool = False) -> Conv2dNorm:
    conv = Conv2dNorm(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, norm=make_norm(norm, c_out), relu=relu)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # detectron2's c2_msra_fill
    return conv


class BasicStem(nn.Module):
    """7x7/2 conv + norm + ReLU, then 3x3/2 max-pool: (N, 3, H, W) -> (N, C, H/4, W/4)."""

    def __init__(self, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = _conv(3, out_channels, 7, 2, norm, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); the first carries the stride. (N, C_in, H, W) -> (N, C_out, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.shortcut = _conv(c_in, c_out, 1, stride, norm) if (c_in != c_out or stride != 1) else None
        self.conv1 = _conv(c_in, c_out, 3, stride, norm, relu=True)
        self.conv2 = _conv(c_out, c_out, 3, 1, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (ResNet-50/101). (N, C_in, H, W) -> (N, C_out, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, width: int, stride: int, norm: str):
        super().__init__()
        self.shortcut = _conv(c_in, c_out, 1, stride, norm) if (c_in != c_out or stride != 1) else None
        self.conv1 = _conv(c_in, width, 1, 1, norm, relu=True)
        self.conv2 = _conv(width, width, 3, stride, norm, relu=True)
        self.conv3 = _conv(width, c_out, 1, 1, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        if torch.is_grad_enabled():
            return F.relu(out + identity)
        return F.relu_(out.add_(identity))  # inference: no copies


class ResNet(nn.Module):
    """detectron2-style ResNet returning the four stage outputs.

    Args:
        depth: 18, 34 (basic blocks) or 50, 101 (bottleneck blocks).
        stem_out_channels: stem width (64 in the real model).
        res2_out_channels: res2 output width; doubles each stage (256 for R50, 64 for R18).
        width_per_group: bottleneck width of res2; doubles each stage (unused by basic blocks).
        freeze_at: 0 trains everything; k >= 1 freezes the stem and res2..res{k}.
        norm: ``FrozenBN`` (as the released checkpoints), ``BN`` or ``GN`` (for training from scratch).
    Forward: images (N, 3, H, W) -> {"res2": (N, C2, H/4, W/4), "res3": H/8, "res4": H/16, "res5": H/32}.
    """

    def __init__(
        self,
        depth: int = 50,
        stem_out_channels: int = 64,
        res2_out_channels: int = 256,
        width_per_group: int = 64,
        freeze_at: int = 0,
        norm: str = "FrozenBN",
    ):
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise AutoQVISError(f"model.backbone.depth: {depth} is not supported (choose from 18, 34, 50, 101)")
        self.stem = BasicStem(stem_out_channels, norm)
        self.out_channels: dict[str, int] = {}
        self.strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        c_in = stem_out_channels
        for i, n_blocks in enumerate(BLOCKS_PER_STAGE[depth]):
            c_out = res2_out_channels * 2**i
            width = width_per_group * 2**i
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (b == 0 and i > 0) else 1
                if depth >= 50:
                    blocks.append(BottleneckBlock(c_in, c_out, width, stride, norm))
                else:
                    blocks.append(BasicBlock(c_in, c_out, stride, norm))
                c_in = c_out
            name = f"res{i + 2}"
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = c_out
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the stem (``freeze_at >= 1``) and res2..res{freeze_at}."""
        stages = [self.stem] + [getattr(self, f"res{i}") for i in range(2, 6)]
        for idx, stage in enumerate(stages, start=1):
            if freeze_at >= idx:
                for p in stage.parameters():
                    p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if onednn.applies(x):
            # oneDNN's convolutions are faster in NHWC on the CPU; the features stay channels-last (same values)
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        out = {}
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            out[name] = x
        return out
