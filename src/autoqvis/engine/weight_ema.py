"""An exponential moving average of a model's weights over the training steps (beyond the paper: issue 17).

A self-training round's model is the last step's weights in the paper; on a small, noisy training set those land
where the last few batches pushed them. The average of the weights over the round's later steps is a steadier
model to label the next round with and to report. Every floating-point entry of the state dict (parameters and
BatchNorm statistics) is averaged; the others (step counters) are copied.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    """ema <- decay * ema + (1 - decay) * weights after each optimizer step; ``state_dict`` checkpoints it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"weight average lacks {sorted(missing)[:3]}")
        for k, v in self.shadow.items():
            v.copy_(state[k])
