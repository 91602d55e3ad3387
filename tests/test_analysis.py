"""Fig. 5/6/7 numbers: true IoU matching, Spearman, size buckets, log-area histograms, PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from _selftrain_cases import EMPTY, box, track
from autoqvis.eval.analysis import (
    COCO_BUCKETS,
    RELATIVE_BUCKETS,
    analyse,
    log_area_histogram,
    size_buckets,
    spearman,
    true_ious,
    write_analysis,
)
from autoqvis.core.tracks import encode_track

A = box(0, 0, 4, 4)
A75 = box(0, 0, 4, 3)
FAR = box(6, 6, 10, 10)


def segs(masks):
    return encode_track(masks)


GT = {1: [segs([A, A, A]), segs([FAR, FAR, EMPTY])], 2: []}


def _pseudo():
    d1 = track([A, A75, EMPTY], score=0.9, quality=[0.9, 0.7, 0.1], selected=[1, 0, 1])
    d2 = track([FAR, box(6, 6, 10, 8), box(0, 0, 2, 2)], score=0.6, quality=[0.8, 0.5, 0.3], selected=[1, 1, 0])
    d3 = track([A], score=0.95, video_id=2, quality=[0.2], selected=[1])
    return {1: [d1, d2], 2: [d3]}


def test_true_ious_match_by_video_iou():
    frame, video = true_ious(_pseudo()[1], GT[1])
    np.testing.assert_allclose(frame, [[1.0, 0.75, 0.0], [1.0, 0.5, 0.0]])
    np.testing.assert_allclose(video, [28 / 48, 24 / 36])
    frame, video = true_ious(_pseudo()[2], [])
    assert frame.tolist() == [[0.0]] and video.tolist() == [0.0]


def test_analyse_spearman_and_training_set_numbers():
    summary, points = analyse(_pseudo(), _pseudo(), GT)
    # the non-empty pseudo frames, in order: d1 t0, t1; d2 t0, t1, t2; d3 t0
    np.testing.assert_allclose(points["iou"], [1.0, 0.75, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(points["quality"], [0.9, 0.7, 0.8, 0.5, 0.3, 0.2])
    np.testing.assert_allclose(points["area"], [16, 12, 16, 8, 4, 16])
    iou = [1.0, 0.75, 1.0, 0.5, 0.0, 0.0]
    rho_q = spearmanr([0.9, 0.7, 0.8, 0.5, 0.3, 0.2], iou).statistic
    rho_s = spearmanr([0.9, 0.9, 0.6, 0.6, 0.6, 0.95], iou).statistic
    assert summary["spearman"]["frame"]["quality"] == pytest.approx(rho_q)
    assert summary["spearman"]["frame"]["score"] == pytest.approx(rho_s)
    # by hand: rank deviations give rho_q = 16.5 / sqrt(17.5 * 16.5); s barely ranks the masks
    assert rho_q == pytest.approx((16.5 / 17.5) ** 0.5) and rho_s < 0.1
    assert summary["num_tracks"] == 3 and summary["num_frames"] == 6
    ts = summary["training_set"]
    # selected non-empty frames: d1 t0 (IoU 1), d2 t0 (1), d2 t1 (0.5), d3 t0 (0)
    assert ts["selected_frames"] == 4 and ts["selected_precision"] == pytest.approx(0.75)
    assert ts["frac_true_iou_ge_05"] == pytest.approx(4 / 6)
    coco = summary["size_buckets"]["coco"]
    assert coco["small"]["count"] == 6 and coco["medium"]["count"] == 0 and coco["medium"]["mean_iou"] is None
    rel = summary["size_buckets"]["relative"]
    assert rel["large"]["count"] == 6 and rel["large"]["mean_iou"] == pytest.approx(np.mean(iou))
    json.dumps(summary, allow_nan=False)


def test_size_buckets_boundaries():
    areas = np.array([1023.0, 1024.0, 9215.0, 9216.0])
    out = size_buckets(areas, np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.6, 0.7, 0.8]), COCO_BUCKETS)
    assert [out[k]["count"] for k in ("small", "medium", "large")] == [1, 2, 1]
    assert out["medium"]["mean_iou"] == pytest.approx(0.25) and out["large"]["mean_quality"] == pytest.approx(0.8)
    assert RELATIVE_BUCKETS["small"] == pytest.approx(1024 / 307200)


def test_spearman_undefined_cases():
    assert spearman([0.1, 0.2], [0.3, 0.4]) is None
    assert spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None
    assert spearman([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)


def test_log_area_histogram_bins():
    counts = log_area_histogram([segs([A, EMPTY, box(0, 0, 10, 10)]), segs([box(0, 0, 1, 1)])])
    # ln(0.16) = -1.83 -> bin 16 of 0.5-wide bins from -10; ln(1) = 0 -> last bin; ln(0.01) = -4.6 -> bin 10
    assert sum(counts) == 3 and counts[16] == 1 and counts[-1] == 1 and counts[10] == 1


def test_write_analysis_and_plots(tmp_path):
    from autoqvis.eval.plots import plot_area_distribution

    summary, points = analyse(_pseudo(), _pseudo(), GT)
    names = write_analysis(summary, points, tmp_path, title="round 0")
    assert json.loads((tmp_path / "analysis.json").read_text())["num_frames"] == 6
    hist = summary["area_histogram"]
    plot_area_distribution({"round 0": hist["pseudo"], "ground truth": hist["gt"]}, hist["log_area_edges"],
                           tmp_path / "area.png")
    for name in names + ["area.png"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
