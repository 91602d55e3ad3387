"""bench_selftrain.gap_lines: issue 17's target (share of the gap to a limit closed) from per-seed AP50."""

from __future__ import annotations

from _helpers import load_benchmark

AQ2 = "AutoQ-VIS, 2 rounds"
PRACTICAL = "practical limit (oracle: true IoU >= 0.5)"
GT = "theoretical limit (train ground truth)"


def seed(aq: float, plus1: float, plus2: float, practical: float | None, gt: float) -> dict[str, dict]:
    bs = load_benchmark("bench_selftrain")
    rows = {AQ2: {"AP50": aq}, bs.plus_name("plus", 1): {"AP50": plus1}, bs.plus_name("plus", 2): {"AP50": plus2},
            GT: {"AP50": gt}}
    if practical is not None:
        rows[PRACTICAL] = {"AP50": practical}
    return rows


def test_gap_closed_to_each_limit_and_seed_counts():
    bs = load_benchmark("bench_selftrain")
    # AutoQ-VIS 0.50 / 0.54 (mean 0.52), plus 0.57 / 0.55 (mean 0.56), practical mean 0.60, ground truth mean 0.62
    per_seed = [seed(0.50, 0.56, 0.57, 0.58, 0.62), seed(0.54, 0.56, 0.55, 0.62, 0.62)]
    (line,) = bs.gap_lines(per_seed, 2)
    assert line.startswith("`plus` after 2 rounds, 56.0 AP50 (n 2) against AutoQ-VIS's 52.0 (n 2)")
    assert "closes 50 % of the gap to the practical limit (52.0 -> 60.0, n 2)" in line  # (56 - 52) / (60 - 52)
    assert "closes 40 % of the gap to the ground-truth limit (52.0 -> 62.0, n 2)" in line  # (56 - 52) / (62 - 52)
    assert "2 of 2 seeds above AutoQ-VIS's mean" in line
    assert "round 2 >= round 1 in 1 of 2" in line  # 0.57 >= 0.56, 0.55 < 0.56
    # model_best per seed: plus max(0.56, 0.57), max(0.56, 0.55); AutoQ-VIS has only its round 2 row here
    assert line.endswith("the better of rounds 1-2 per seed (model_best) 56.5 against AutoQ-VIS's 52.0.")


def test_a_limit_below_autoqvis_is_said_not_divided():
    bs = load_benchmark("bench_selftrain")
    per_seed = [seed(0.56, 0.55, 0.57, 0.54, 0.60), seed(0.56, 0.55, 0.53, None, 0.60)]
    (line,) = bs.gap_lines(per_seed, 2)
    assert "the practical limit (54.0, n 1) is not above AutoQ-VIS" in line
    assert "closes -25 % of the gap to the ground-truth limit" in line  # plus 55 vs AutoQ-VIS 56, limit 60
    assert "1 of 2 seeds above" in line and "round 2 >= round 1 in 1 of 2" in line


def test_no_line_without_the_variant():
    bs = load_benchmark("bench_selftrain")
    assert bs.gap_lines([{AQ2: {"AP50": 0.5}, GT: {"AP50": 0.6}}], 2) == []


def test_a_limit_within_the_seed_std_is_not_a_gap():
    bs = load_benchmark("bench_selftrain")
    # AutoQ-VIS 0.53 / 0.57 (mean 0.55, std 0.02), practical 0.56 (0.01 above), ground truth 0.60
    per_seed = [seed(0.53, 0.56, 0.58, 0.56, 0.60), seed(0.57, 0.56, 0.58, 0.56, 0.60)]
    (line,) = bs.gap_lines(per_seed, 2)
    assert "the practical limit (56.0, n 2) is above AutoQ-VIS by less than AutoQ-VIS's seed std (2.0)" in line
    assert "closes 60 % of the gap to the ground-truth limit (55.0 -> 60.0, n 2)" in line  # (58 - 55) / (60 - 55)
