"""Process-group helpers: every rank/world-size decision of the project goes through here.

Today training runs in one process; under ``torchrun`` with an initialised process group the same
functions report the real rank, so making the trainer multi-process only touches this file.
"""

from __future__ import annotations

import torch
from torch import nn


def is_distributed() -> bool:
    """True when a torch.distributed process group is up (e.g. under torchrun)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_rank() -> int:
    """This process's rank; 0 without a process group."""
    return torch.distributed.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes; 1 without a process group."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only the main process writes checkpoints, logs and progress bars."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_distributed():
        torch.distributed.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


__all__ = ["is_distributed", "get_rank", "get_world_size", "is_main_process", "barrier", "unwrap"]
