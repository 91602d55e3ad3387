"""benchmarks/tau_table.py: the Table 5 analogue read back from bench_selftrain's run folders."""

from __future__ import annotations

import json
from pathlib import Path

from _helpers import load_benchmark


def fake_round(run: Path, k: int, ap50: float, tracks: int, frames: int, prec: float) -> None:
    r = run / f"round_{k}"
    r.mkdir(parents=True)
    (r / "metrics.json").write_text(json.dumps({"AP50": ap50, "AP": ap50 / 2}))
    (r / "stats.json").write_text(json.dumps({"training_set": {"tracks": tracks, "selected_frames": frames}}))
    (r / "analysis.json").write_text(json.dumps({
        "spearman": {"frame": {"quality": 0.8, "score": 0.6}},
        "training_set": {"selected_precision": prec}}))


def test_rows_choice_and_paired_differences(tmp_path):
    tt = load_benchmark("tau_table")
    init = tmp_path / "assets" / "toy_init.pt"
    # tau 0.6: round 2 at 0.50 / 0.56; tau 0.8: 0.55 / 0.57 (seed 1 has no round 2: left out)
    ap = {0.6: [(0.58, 0.50), (0.60, 0.56)], 0.8: [(0.52, 0.55), (0.50, 0.57)]}
    for tau, seeds in ap.items():
        folder = tt.run_folder(tmp_path, init, 0, [], 1500, tau)
        assert folder.name == f"init-assets-toy_init_r1500_tau{tau}"
        for seed, (r1, r2) in enumerate(seeds):
            run = folder / f"seed{seed}" / "full"
            fake_round(run, 0, 0.487, 74 if tau == 0.6 else 26, 600, 0.98)  # round 1 trains on this set
            fake_round(run, 1, r1, 100, 900 + seed, 0.95)
            if tau == 0.6 or seed == 0:
                fake_round(run, 2, r2, 110, 950, 0.94)
    rows = tt.tau_rows(tmp_path, init, 0, 1500, [0.6, 0.8], [0, 1])
    assert rows[0.8]["r2"] == [0.55, None]
    assert rows[0.6]["sets"][1] == {"tracks": 74.0, "frames": 600.0, "prec": 0.98}
    assert rows[0.6]["sets"][2]["frames"] == 900.5  # round 2 trains on round 1's set; averaged over seeds
    lines = tt.table(rows)
    assert lines[2].startswith("| 0.6 | 74 / 600 / 0.980 | 59.0 ± 1.0 | 100 / 900 / 0.950 | 53.0 ± 3.0 |")
    assert "| 0 of 2 | 2 |" in lines[2] and "| 1 of 1 | 1 | 55.0 / – |" in lines[3]
    choice = tt.choice_lines(rows)
    assert choice[0].endswith("tau 0.8 (55.0)")  # 55.0 beats 53.0 on the means over the seeds each has
    assert choice[1] == ("tau 0.6 against tau 0.8, paired per seed: -5.0 ± 0.0 AP50 (per seed -5.0), "
                         "below it in 1 of 1 seeds")
