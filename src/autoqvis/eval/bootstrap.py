"""How much of a val gain is the luck of the split: a paired bootstrap over val videos.

Two models scored on the same val videos differ by some AP50. Redraw the videos with replacement, the
same draw for both models (what the two share cancels), accumulate each model's precision/recall over the
drawn videos as the evaluator does, and read the spread of the difference. A gain whose interval stays
above 0 is not the choice of val videos; training-seed noise is another matter (benchmarks measure that).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .ytvis_eval import VideoEval, accumulate, summarize

__all__ = ["paired_bootstrap", "per_video_stat"]


def _stat(evals: Sequence[VideoEval], key: str) -> float:
    return summarize(*accumulate(evals))[key]


def per_video_stat(evals: Sequence[VideoEval], key: str = "AP50") -> dict[int, float]:
    """Each video's metric on its own (-1 where the video has no ground truth)."""
    return {e.video_id: _stat([e], key) for e in evals}


def paired_bootstrap(before: Sequence[VideoEval], after: Sequence[VideoEval], key: str = "AP50",
                     draws: int = 1000, seed: int = 0) -> dict[str, float]:
    """``key`` of ``after`` minus that of ``before``, with the std and the 2.5/97.5 % quantiles of the
    difference over ``draws`` paired resamplings of the videos (seeded: the same numbers every run)."""
    first = {e.video_id: e for e in before}
    second = {e.video_id: e for e in after}
    ids = sorted(set(first) | set(second))
    delta = _stat(after, key) - _stat(before, key)
    if not ids:
        return {"delta": delta, "std": 0.0, "low": delta, "high": delta, "draws": 0, "videos": 0}
    rng = np.random.default_rng(seed)
    diffs = np.empty(draws)
    for i in range(draws):
        drawn = [ids[j] for j in rng.integers(0, len(ids), len(ids))]
        diffs[i] = (_stat([second[v] for v in drawn if v in second], key)
                    - _stat([first[v] for v in drawn if v in first], key))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return {"delta": float(delta), "std": float(diffs.std(ddof=1)), "low": float(low), "high": float(high),
            "draws": draws, "videos": len(ids)}
