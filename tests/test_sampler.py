"""BalancedBatches: balanced source choice, purity in (seed, iteration, rank), the loader over iterations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoqvis.data.sampler import BalancedBatches, batch_loader
from autoqvis.core.errors import AutoQVISError


class CountingSource:
    """A clip source whose samples record where they came from and one random draw."""

    def __init__(self, name: str, n: int = 10) -> None:
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def sample(self, rng: np.random.Generator) -> dict:
        k = int(rng.integers(self.n))
        return {
            "frames": torch.full((3, 3, 4, 4), float(k)),
            "masks": torch.zeros((0, 3, 4, 4), dtype=torch.bool),
            "labels": torch.zeros((0,), dtype=torch.int64),
            "source": self.name,
            "k": k,
        }


def _sources():
    return [CountingSource("synthetic", 1000), CountingSource("pseudo", 1000)]


def test_synthetic_share_is_balanced():
    batches = BalancedBatches(_sources(), [0.5, 0.5], batch_size=1, seed=3)
    share = np.mean([batches.source_index(i) == 0 for i in range(2000)])
    assert 0.45 <= share <= 0.55
    skewed = BalancedBatches(_sources(), [1, 3], batch_size=1, seed=3)  # weights are normalised
    share = np.mean([skewed.source_index(i) == 0 for i in range(2000)])
    assert 0.20 <= share <= 0.30


def test_one_batch_comes_from_one_source():
    batches = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=0)
    for i in range(50):
        assert len({s["source"] for s in batches.batch(i)}) == 1


def test_same_seed_and_iteration_give_the_same_batch():
    a = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=7)
    b = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=7)
    for i in (0, 1, 99):
        assert [s["k"] for s in a.batch(i)] == [s["k"] for s in b.batch(i)]
        assert [s["source"] for s in a.batch(i)] == [s["source"] for s in b.batch(i)]
    # out of order and repeated: still the same (no hidden state)
    first = [s["k"] for s in a.batch(5)]
    a.batch(6)
    assert [s["k"] for s in a.batch(5)] == first
    other_seed = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=8)
    assert any([s["k"] for s in a.batch(i)] != [s["k"] for s in other_seed.batch(i)] for i in range(5))


def test_per_step_ranks_share_the_source_but_not_the_clips():
    ranks = [BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=1, rank=r, world_size=2,
                             source_draw="per_step") for r in range(2)]
    for i in range(30):
        b0, b1 = ranks[0].batch(i), ranks[1].batch(i)
        assert b0[0]["source"] == b1[0]["source"]
        assert [s["k"] for s in b0] != [s["k"] for s in b1]


def test_per_rank_each_rank_draws_its_own_source():
    """The official CombinedLoader: random.random() < 0.5 on each GPU for each batch (issue 14, item 3)."""
    def draws(mode, seed=1):
        ranks = [BalancedBatches(_sources(), [0.5, 0.5], batch_size=1, seed=seed, rank=r, world_size=4,
                                 source_draw=mode) for r in range(4)]
        return np.array([[b.source_index(i) for b in ranks] for i in range(2000)])  # (steps, ranks)

    per_rank = draws("per_rank")
    differ = (per_rank != per_rank[:, :1]).any(axis=1)
    assert 0.80 <= differ.mean() <= 0.95  # independent fair coins on 4 ranks disagree in 7/8 of the steps
    assert np.all(np.abs((per_rank == 0).mean(axis=0) - 0.5) <= 0.04)  # each rank ~50 % synthetic
    assert 0.40 <= np.mean(per_rank[:, 1] == per_rank[:, 2]) <= 0.60  # ranks are independent of each other
    assert np.array_equal(per_rank, draws("per_rank"))  # a pure function of (seed, iteration, rank)
    assert not np.array_equal(per_rank, draws("per_rank", seed=2))
    per_step = draws("per_step")
    assert not (per_step != per_step[:, :1]).any()  # the old behaviour: one draw for every rank
    assert np.array_equal(per_rank[:, 0], per_step[:, 0])  # rank 0 (a one-process run) is the same in both
    # the batch follows the rank's own draw
    b = BalancedBatches(_sources(), [0.5, 0.5], batch_size=2, seed=1, rank=3, world_size=4)
    assert all(b.batch(i)[0]["source"] == ("synthetic", "pseudo")[per_rank[i, 3]] for i in range(40))
    with pytest.raises(AutoQVISError, match="selftrain.source_draw"):
        BalancedBatches(_sources(), [0.5, 0.5], batch_size=1, seed=0, source_draw="per_batch")


def test_loader_with_workers_matches_direct_batches():
    batches = BalancedBatches(_sources(), [0.5, 0.5], batch_size=2, seed=5)
    direct = [[s["k"] for s in batches.batch(i)] for i in range(3, 9)]
    for workers in (0, 2):
        got = [[s["k"] for s in b] for b in batch_loader(batches, 3, 9, num_workers=workers)]
        assert got == direct


@pytest.mark.parametrize(
    "sources,probs,match",
    [
        ([], [], "no clip source"),
        ([CountingSource("a")], [0.5, 0.5], "1 sources but 2 probabilities"),
        ([CountingSource("a"), CountingSource("b", 0)], [0.5, 0.5], "source 1 .* has no clips"),
        ([CountingSource("a")], [-1.0], "probabilities must be >= 0"),
        ([CountingSource("a")], [float("nan")], "probabilities must be >= 0"),
    ],
)
def test_bad_arguments_are_clear_errors(sources, probs, match):
    with pytest.raises(AutoQVISError, match=match):
        BalancedBatches(sources, probs, batch_size=2, seed=0)


def test_empty_source_with_zero_probability_is_allowed():
    batches = BalancedBatches([CountingSource("a"), CountingSource("b", 0)], [1.0, 0.0], batch_size=2, seed=0)
    assert all(s["source"] == "a" for i in range(20) for s in batches.batch(i))


def test_clips_per_draw_makes_one_process_draw_as_two_gpus():
    """Fidelity F1: the official rounds draw a source per GPU batch of 2 (IMS_PER_BATCH 4 on 2 GPUs); one process
    with a batch of 4 in groups of 2 gets exactly ranks 0 and 1's batches, so its 4 clips mix sources."""
    grouped = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=11, clips_per_draw=2)
    gpus = [BalancedBatches(_sources(), [0.5, 0.5], batch_size=2, seed=11, rank=r, world_size=2) for r in (0, 1)]
    whole = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=11)  # clips_per_draw 0: one draw
    mixed = 0
    for i in range(200):
        batch = grouped.batch(i)
        assert [(s["source"], s["k"]) for s in batch] == [(s["source"], s["k"]) for g in gpus for s in g.batch(i)]
        assert len({s["source"] for s in batch[:2]}) == 1 and len({s["source"] for s in batch[2:]}) == 1
        mixed += len({s["source"] for s in batch}) == 2
        assert len({s["source"] for s in whole.batch(i)}) == 1
    assert 70 <= mixed <= 130  # two independent fair coins differ half the time
    # a group as large as the batch is the whole batch: today's draw
    same = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=11, clips_per_draw=4)
    assert all([s["k"] for s in same.batch(i)] == [s["k"] for s in whole.batch(i)] for i in range(20))
    # rank 1 of two processes in groups of 2 continues the numbering: the 4 GPUs of a total of 8
    second = BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=11, rank=1, world_size=2, clips_per_draw=2)
    four = [BalancedBatches(_sources(), [0.5, 0.5], batch_size=2, seed=11, rank=r, world_size=4) for r in (2, 3)]
    assert [s["k"] for s in second.batch(3)] == [s["k"] for g in four for s in g.batch(3)]
    with pytest.raises(AutoQVISError, match="clips_per_draw"):
        BalancedBatches(_sources(), [0.5, 0.5], batch_size=4, seed=0, clips_per_draw=3)
