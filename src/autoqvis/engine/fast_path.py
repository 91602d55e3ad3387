"""GPU fast-path switches: autocast (training: ``train.amp_dtype``; test passes: ``inference.amp_dtype``),
channels-last backbone, ``torch.compile``.

All are off by default except autocast (``train.amp``, ``inference.amp_dtype``), and each falls back cleanly:
autocast is a no-op off CUDA, channels-last is only a memory layout (same numbers up to float rounding), and compile
is skipped with a warning where it cannot run (no C++ compiler for the CPU backend).

``prepare(model, cfg.runtime)`` applies the layout and compile switches once per model (it marks the model);
``autocast(device, enabled)`` is the context every forward pass uses.
"""

from __future__ import annotations

import shutil
import warnings

import torch
from torch import nn

from ..core.config import RuntimeConfig

_MARK = "_autoqvis_fast_path"  # attribute set on a prepared model: the switches it was prepared with


def autocast(device: torch.device, enabled: bool, dtype: torch.dtype = torch.bfloat16) -> torch.autocast:
    """``dtype`` autocast on CUDA when ``enabled``; a disabled context elsewhere (CPU bf16 is slower without AMX)."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled and device.type == "cuda")


def can_compile(device: torch.device) -> bool:
    """torch.compile's default backend needs Triton on GPU and a C++ compiler for CPU code."""
    if device.type == "cpu":
        return any(shutil.which(c) for c in ("c++", "g++", "clang++"))
    if device.type == "cuda":
        try:
            import triton  # noqa: F401  # why: optional (GPU compile backend); only probed
        except ImportError:
            return False
        return True
    return False


def prepare(model: nn.Module, cfg: RuntimeConfig) -> nn.Module:
    """Apply ``cfg.channels_last`` and ``cfg.compile`` to ``model`` (a VideoMaskFormer) in place; returns it.

    channels-last converts the backbone's weights, so its convolutions run in NHWC (what GPU tensor cores and
    oneDNN prefer); the pixel decoder receives NHWC features and works on them as they are. compile wraps the
    backbone and the pixel decoder (the per-frame, fixed-structure part; the decoder's matching and
    post-processing stay eager) with ``nn.Module.compile``, which keeps the state-dict names.
    Calling it again with the same switches does nothing; compile, once applied, stays.
    """
    wanted = (bool(cfg.channels_last), bool(cfg.compile))
    done = getattr(model, _MARK, (False, False))
    if done == wanted:
        return model
    device = next(model.parameters()).device
    if wanted[0] != done[0]:
        model.backbone.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    if cfg.compile and not done[1]:
        if can_compile(device):
            model.backbone.compile(dynamic=True)
            model.sem_seg_head.pixel_decoder.compile(dynamic=True)
        else:
            warnings.warn(f"runtime.compile is set but torch.compile cannot run on {device} here "
                          "(no Triton / C++ compiler); running eagerly", stacklevel=2)
    setattr(model, _MARK, (wanted[0], wanted[1] or done[1]))  # compiling cannot be undone
    return model


__all__ = ["autocast", "can_compile", "prepare"]
