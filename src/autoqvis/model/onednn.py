"""Inference routes of linear layers and convolutions through oneDNN on the CPU (float32, no gradient).

Why: PyTorch sends a float32 ``linear`` (and, with one thread, every 1x1 stride-1 convolution of a small batch) to
MKL's sgemm, which runs its AVX2 code on AMD CPUs; oneDNN, which PyTorch already uses for the other convolutions,
runs AVX-512 there. On the 2-core AMD EPYC development machine oneDNN is 1.7-8x faster on the pixel decoder's
matmul shapes (benchmarks/RESULTS.md, "Inference speed"). The arithmetic is the same (float32 products summed in
float32, in another order, as with another thread count): results agree to float rounding.

The routes are taken only where they apply: CPU float32 tensors, no gradient recorded (the oneDNN ops have no
autograd), and a torch build that has the ops (checked once). Everywhere else, and with ``ENABLED = False`` (the
float32 reference route of the benchmarks and tests), the plain ``torch.nn.functional`` calls run.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

ENABLED = True  # module switch: False restores PyTorch's default routes everywhere


@functools.cache
def _available() -> bool:
    """Whether this torch build has the oneDNN pointwise ops and they run here (tried once on a tiny input)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x = torch.ones(1, 2)
        torch.ops.mkldnn._linear_pointwise(x, torch.ones(1, 2), None, "none", [], "")
        torch.ops.mkldnn._linear_pointwise.binary(x, torch.ones(1, 1), torch.ones(1, 2), None, "add")
        torch.ops.mkldnn._convolution_pointwise(x.view(1, 2, 1, 1), torch.ones(1, 2, 1, 1), None,
                                                [0, 0], [1, 1], [1, 1], 1, "none", [], "")
    except Exception:  # internal ops: a build without them, or with another signature, takes the plain route
        return False
    return True


def applies(x: torch.Tensor) -> bool:
    """True where the oneDNN routes run for ``x``: enabled, CPU float32, no gradient recorded, no CPU autocast
    (which would cast the operands of the plain calls)."""
    return (ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and _available())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False,
           add: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, then ``+ add`` (same shape as the result) or a ReLU (not both).

    x: (..., in) -> (..., out). On the oneDNN route the ReLU or the addition is fused into the matmul.
    """
    if relu and add is not None:
        raise ValueError("linear: relu and add cannot be fused together")
    if applies(x):
        if add is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, weight, bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
    y = F.linear(x, weight, bias)
    if add is not None:
        return y + add
    return F.relu(y) if relu else y


def conv2d(conv: nn.Conv2d, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """``conv(x)`` (zero padding), then an optional ReLU; (N, C_in, H, W) -> (N, C_out, H', W'), in the memory
    format of ``x`` (channels-last stays channels-last)."""
    if applies(x) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding),
                                                       list(conv.stride), list(conv.dilation), conv.groups,
                                                       "relu" if relu else "none", [], "")
    y = conv._conv_forward(x, conv.weight, conv.bias)
    return F.relu(y) if relu else y


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict names) whose inference forward takes the oneDNN route."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict names) whose inference forward takes the oneDNN route."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(self, x)
