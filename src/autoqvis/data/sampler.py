"""Balanced batches that are a pure function of (seed, iteration, rank).

Each batch is drawn whole from one source (e.g. 50% synthetic clips, 50% pseudo-labelled clips,
AutoQ-VIS Sec. 4 "balanced sampling"). ``source_draw`` "per_rank": each rank draws its own batch's source
from a generator seeded with (seed, iteration, rank), as the official CombinedLoader does on each GPU, so
one step may mix domains across ranks; "per_step": one draw seeded with (seed, iteration) for every rank.
Rank 0 draws the same either way, so a one-process run does not depend on the setting. The clips come
from a generator seeded with (seed, iteration, rank), so ranks see different clips.
``clips_per_draw`` > 0 splits each rank's batch into groups of that many clips, each drawn as the batch of a
rank of its own (group g of rank r is "rank" r x groups + g): one process with a batch of 4 in groups of 2
gets exactly the two batches of 2 that two processes of 2 would (the official IMS_PER_BATCH 4 on 2 GPUs).
Nothing is carried from one batch to the next: resuming at iteration i, or splitting the work over
ranks, needs no loader state.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch

from ..core.config import SOURCE_DRAWS, check_clips_per_draw
from ..core.errors import AutoQVISError

# Tags that keep the source stream and the clip stream of one iteration independent.
_SOURCE_STREAM = 0
_CLIP_STREAM = 1


class ClipSource(Protocol):
    """One source of training clips (see docs/CONTRACTS.md, "Training data and loop")."""

    def __len__(self) -> int: ...

    def sample(self, rng: np.random.Generator) -> dict[str, Any]: ...


class BalancedBatches:
    """Batches of ``batch_size`` clips, each batch from one source picked with probability ``probs``.

    Args:
        sources: clip sources, each non-empty when its probability is > 0.
        probs: one non-negative weight per source (normalised here; they need not sum to 1).
        batch_size: clips per batch on this rank.
        seed: the run's seed; with ``iteration`` and ``rank`` it fixes the batch.
        rank, world_size: this process's rank among ``world_size`` (rank 0 of 1 without DDP).
        source_draw: "per_rank" (each rank picks its batch's source) or "per_step" (one pick for all ranks).
        clips_per_draw: clips per group drawn as one rank's batch; 0 (or >= batch_size): the whole batch.
    """

    def __init__(
        self,
        sources: Sequence[ClipSource],
        probs: Sequence[float],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        source_draw: str = "per_rank",
        clips_per_draw: int = 0,
    ) -> None:
        if not sources:
            raise AutoQVISError("balanced batches: no clip source given")
        if len(probs) != len(sources):
            raise AutoQVISError(f"balanced batches: {len(sources)} sources but {len(probs)} probabilities")
        if any(not math.isfinite(p) or p < 0 for p in probs) or sum(probs) <= 0:
            raise AutoQVISError(f"balanced batches: probabilities must be >= 0 with a positive sum, got {list(probs)}")
        for i, (src, p) in enumerate(zip(sources, probs)):
            if p > 0 and len(src) == 0:
                raise AutoQVISError(f"balanced batches: source {i} ({_name(src)}) has no clips but probability {p}")
        if batch_size < 1:
            raise AutoQVISError(f"balanced batches: batch size must be >= 1, got {batch_size}")
        if seed < 0:
            raise AutoQVISError(f"balanced batches: seed must be >= 0, got {seed}")
        if not 0 <= rank < world_size:
            raise AutoQVISError(f"balanced batches: rank {rank} is outside world size {world_size}")
        if source_draw not in SOURCE_DRAWS:
            raise AutoQVISError(f"config key selftrain.source_draw: {source_draw!r} is not one of {', '.join(SOURCE_DRAWS)}")
        check_clips_per_draw(clips_per_draw, batch_size)
        self.sources = list(sources)
        self.source_draw = source_draw
        self.probs = np.asarray(probs, dtype=np.float64) / float(sum(probs))
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.group_size = clips_per_draw if 0 < clips_per_draw < batch_size else batch_size

    def source_index(self, iteration: int, group: int = 0) -> int:
        """Which source feeds group ``group`` of this rank's batch of ``iteration`` (the whole batch: group 0)."""
        key = [self.seed, iteration, _SOURCE_STREAM]
        draw_rank = self._draw_rank(group)
        if self.source_draw == "per_rank" and draw_rank > 0:
            key.append(draw_rank)  # rank 0 keeps the per-step stream: one process is the same in both modes
        rng = np.random.default_rng(key)
        return int(rng.choice(len(self.sources), p=self.probs))

    def _draw_rank(self, group: int) -> int:
        return self.rank * (self.batch_size // self.group_size) + group

    def batch(self, iteration: int) -> list[dict[str, Any]]:
        """The ``batch_size`` samples of ``iteration`` on this rank (sample dicts of CONTRACTS)."""
        if iteration < 0:
            raise AutoQVISError(f"balanced batches: iteration must be >= 0, got {iteration}")
        out = []
        for group in range(self.batch_size // self.group_size):
            source = self.sources[self.source_index(iteration, group)]
            rng = np.random.default_rng([self.seed, iteration, _CLIP_STREAM, self._draw_rank(group)])
            out += [source.sample(rng) for _ in range(self.group_size)]
        return out


def _name(src: object) -> str:
    return type(src).__name__


class _IterationDataset(torch.utils.data.Dataset):
    """Index ``i`` -> the batch of iteration ``start + i`` (so a DataLoader can prefetch in workers)."""

    def __init__(self, batches: BalancedBatches, start: int, stop: int) -> None:
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        return self.batches.batch(self.start + i)


def _keep_as_is(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Module level (not a lambda) so worker processes can pickle it.
    return batch


def batch_loader(batches: BalancedBatches, start: int, stop: int, num_workers: int = 0) -> Iterator[list[dict]]:
    """Yield the batches of iterations ``start .. stop-1`` in order; ``num_workers`` > 0 prepares them ahead.

    Because a batch depends only on its iteration, the workers need no shared state and the
    result is the same for any ``num_workers``.
    """
    if num_workers < 0:
        raise AutoQVISError(f"train.num_workers must be >= 0, got {num_workers}")
    loader = torch.utils.data.DataLoader(
        _IterationDataset(batches, start, stop),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep_as_is,
    )
    yield from loader


__all__ = ["ClipSource", "BalancedBatches", "batch_loader"]
