"""Process-group helpers: every rank/world-size decision of the project goes through here.

Long commands (``train``, ``selftrain``, ``predict``) call :func:`launched` around their work. Started by
``torchrun --nproc_per_node N [--nnodes M ...] -m autoqvis ...``, each process then joins the process group
torchrun describes in its environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), with NCCL on GPUs and gloo on CPUs, and uses GPU ``LOCAL_RANK`` of its node. Started
without torchrun (or with one process), nothing changes: rank 0 of 1, and every helper is a no-op.

Conventions the callers follow:
- only rank 0 writes files (checkpoints, logs, pseudo-labels, results);
- a decision that depends on the file system (does this output exist yet?) is taken on rank 0 and
  broadcast (:func:`broadcast_object`), so the ranks never take different branches;
- per-video work is split over the ranks and gathered on rank 0 in the original order (:func:`ordered_map`),
  so the files written are the same as a single process writes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
from torch import nn

from .errors import AutoQVISError

T = TypeVar("T")
R = TypeVar("R")

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Videos per rank between two gathers of ordered_map: large enough to even out video lengths,
# small enough that a killed run loses little and rank 0 holds little.
GATHER_CHUNK = 4
# Long enough for rank 0 to write a large checkpoint or evaluate while the others wait at a barrier.
TIMEOUT = timedelta(minutes=60)

_device: torch.device | None = None
_left_group = False  # teardown ran in a multi-process run: end_process ends it


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


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun with N > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1") > 1


# ----------------------------------------------------------------------------------------- set-up
def resolve_device(requested: str | None = None) -> torch.device:
    """The device of this process: ``requested`` (default cuda if available, else cpu); a bare "cuda"
    becomes ``cuda:LOCAL_RANK`` so that each process of a node drives its own GPU."""
    name = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AutoQVISError(f"--device {name!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AutoQVISError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= torch.cuda.device_count():
            raise AutoQVISError(
                f"process LOCAL_RANK={os.environ.get('LOCAL_RANK', '0')} wants GPU {device.index}, but this node has "
                f"{torch.cuda.device_count()}: start at most that many processes per node (--nproc_per_node)")
    return device


def setup(requested_device: str | None = None) -> torch.device:
    """Pick this process's device and, under torchrun with N > 1, join the process group.

    Backend: NCCL when the device is a GPU, gloo otherwise. Returns the device (also kept for :func:`device`).
    """
    global _device
    device = resolve_device(requested_device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if launched_by_torchrun() and not is_distributed():
        missing = [k for k in TORCHRUN_VARS if not os.environ.get(k)]
        if missing:
            raise AutoQVISError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start the command with torchrun")
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        torch.distributed.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    _device = device
    return device


def teardown() -> None:
    """Leave the process group (after the last collective).

    NCCL groups are destroyed, as NCCL asks. A gloo group is left standing: destroying it while the peer rank is
    already exiting, or letting the interpreter tear it down at exit, can abort the process ("terminate called
    without an active exception", seen once in six 2-process CPU runs after all work was done). The process then
    ends through :func:`end_process`, which skips the interpreter's teardown so that no gloo thread is joined
    or destroyed there."""
    global _device, _left_group
    if is_distributed():
        torch.distributed.barrier()
        if torch.distributed.get_backend() == "nccl":
            torch.distributed.destroy_process_group()
        _left_group = True
    _device = None


def end_process(exit_code: int) -> None:
    """After :func:`teardown` of a multi-process run: flush the standard streams and end the process at once
    (``os._exit``), without the interpreter teardown that may abort on a live gloo group. Every file the
    command wrote is closed by then (atomic writes). A no-op in a single process: it returns."""
    if not _left_group:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(exit_code)


@contextlib.contextmanager
def launched(requested_device: str | None = None) -> Iterator[torch.device]:
    """``with launched(args.device) as device:`` around a command's work: :func:`setup`, then :func:`teardown`
    on success. On an error the process just exits; torchrun then stops the other ranks."""
    device = setup(requested_device)
    yield device
    teardown()


def device() -> torch.device:
    """The device chosen by :func:`setup`; without it, cuda if available, else cpu."""
    if _device is not None:
        return _device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------ collectives
def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_distributed():
        torch.distributed.barrier()


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` on every rank (any picklable object; returned as is in one process)."""
    if not is_distributed():
        return value
    box = [value if get_rank() == src else None]
    torch.distributed.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_object(value: T) -> list[T]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * get_world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value (same keys on every rank); unchanged in one process."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t)
    t /= get_world_size()
    return dict(zip(keys, t.tolist()))


def _collective_device() -> torch.device | None:
    # NCCL moves objects through the current GPU; gloo through the CPU.
    return device() if torch.distributed.get_backend() == "nccl" else None


# ----------------------------------------------------------------------------------- sharded work
def shard(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """Indices ``0..n-1`` of this rank: every ``world_size``-th one from ``rank`` (balanced to within one)."""
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    return range(rank, n, world_size)


def ordered_map(fn: Callable[[T], R], items: Sequence[T], chunk: int = GATHER_CHUNK,
                on_item: Callable[[], None] | None = None) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, in order, on rank 0; nothing on the other ranks.

    The ranks split the items (``items`` must be the same sequence on every rank) in blocks of ``chunk`` per
    rank: within a block rank r computes items r, r + W, ...; the results are then gathered on rank 0, which
    yields them in the items' order. So the consumer on rank 0 sees exactly what one process would, while the
    other ranks must still run the iterator to its end (they take part in every gather).
    In one process it is a plain lazy map. ``on_item()`` is called on rank 0 for each yielded item.
    """
    world = get_world_size()
    if world == 1:
        for item in items:
            result = fn(item)
            if on_item is not None:
                on_item()
            yield item, result
        return
    if chunk < 1:
        raise AutoQVISError(f"ordered_map: chunk must be >= 1, got {chunk}")
    step = chunk * world
    for start in range(0, len(items), step):
        block = items[start:start + step]
        mine = {i: fn(block[i]) for i in shard(len(block))}
        gathered = all_gather_object(mine)
        if not is_main_process():
            continue
        merged: dict[int, Any] = {}
        for part in gathered:
            merged.update(part)
        for i, item in enumerate(block):
            if on_item is not None:
                on_item()
            yield item, merged[i]


# ------------------------------------------------------------------------------------------ models
def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


__all__ = [
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "launched_by_torchrun",
    "resolve_device",
    "setup",
    "teardown",
    "launched",
    "device",
    "barrier",
    "broadcast_object",
    "all_gather_object",
    "all_reduce_mean",
    "shard",
    "ordered_map",
    "unwrap",
]
