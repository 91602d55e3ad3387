"""Pseudo-labelling memory stays flat in the number of videos (issue 7, part 4; CI-sized).

Round 0 of ``autoqvis selftrain --init <shipped toy model>`` labels the first 10, then all 50 videos of one toy
world (6 frames of 240 x 320 each) in fresh processes; their peak RSS must differ by less than 20%. Holding the
videos' dense predictions instead would add ~4.6 MB a video (10 tracks x 6 x 240 x 320 bools), ~180 MB over the
40 extra videos, above the ~80 MB the bound allows. ``benchmarks/bench_memory.py`` runs the full 20 vs 200 and
that control (numbers in benchmarks/RESULTS.md, "Reliability").
"""

from __future__ import annotations


import pytest
from _helpers import load_benchmark

pytestmark = pytest.mark.slow


def _bench():
    return load_benchmark("bench_memory")


def test_pseudo_labelling_peak_rss_is_flat_from_10_to_50_videos(tmp_path):
    bench = _bench()
    world = bench.make_world(tmp_path / "world", num_videos=50, num_frames=6, height=240, width=320)
    few = bench.measure(world, tmp_path / "few", max_videos=10)
    many = bench.measure(world, tmp_path / "many")
    assert (few["videos"], many["videos"]) == (10, 50)
    # every video was labelled (a run that stopped early would be flat for the wrong reason)
    assert many["tracks"] > 4 * few["tracks"] > 0, (few, many)
    growth = many["peak_rss_mb"] / few["peak_rss_mb"] - 1
    assert growth < 0.20, f"peak RSS {few['peak_rss_mb']:.0f} MB at 10 videos, {many['peak_rss_mb']:.0f} MB at 50"
