"""Non-learned baselines on hand-built videos."""

from __future__ import annotations

import numpy as np
import pytest

from autoqvis.core.errors import AutoQVISError

from _helpers import load_benchmark

_baselines = load_benchmark("baselines")
color_cluster_tracks, full_frame_tracks, link_segments = (
    _baselines.color_cluster_tracks, _baselines.full_frame_tracks, _baselines.link_segments)


def _video(t: int = 4, h: int = 40, w: int = 60) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grey background with a red square moving right and a blue square moving down."""
    frames = np.full((t, h, w, 3), 128, dtype=np.uint8)
    red, blue = np.zeros((t, h, w), dtype=bool), np.zeros((t, h, w), dtype=bool)
    for i in range(t):
        red[i, 5:15, 5 + 3 * i : 15 + 3 * i] = True
        blue[i, 10 + 3 * i : 20 + 3 * i, 40:50] = True
    frames[red] = (220, 30, 30)
    frames[blue] = (30, 30, 220)
    return frames, [red, blue]


def _best_iou(track: np.ndarray, truth: np.ndarray) -> float:
    return float((track & truth).sum() / (track | truth).sum())


def test_color_clusters_recover_coloured_moving_squares():
    frames, truths = _video()
    tracks = color_cluster_tracks(frames, k=3)
    for truth in truths:
        assert max(_best_iou(m, truth) for _, m in tracks) == 1.0
    top = [m for s, m in tracks if s == 1.0]  # both squares are present in every frame
    assert len(top) == 2
    assert all(0 < s <= 1 for s, _ in tracks)


def test_link_segments_starts_a_new_track_below_the_iou_threshold():
    a = np.zeros((10, 10), dtype=bool)
    a[:4, :4] = True
    far = np.zeros((10, 10), dtype=bool)
    far[6:, 6:] = True
    tracks = link_segments([[a], [a], [far]], (10, 10), min_iou=0.3)
    assert len(tracks) == 2
    assert tracks[0][:2].any(axis=(1, 2)).all() and not tracks[0][2].any()
    assert tracks[1][2].sum() == 16 and not tracks[1][:2].any()


def test_full_frame_is_one_track_of_whole_frames():
    frames, _ = _video(t=2)
    ((score, masks),) = full_frame_tracks(frames)
    assert score == 1.0 and masks.shape == (2, 40, 60) and masks.all()


def test_unknown_baseline_is_a_clear_error():
    from autoqvis.data.ytvis import YTVISDataset
    baseline_results = _baselines.baseline_results

    with pytest.raises(AutoQVISError, match="unknown baseline 'sam'"):
        baseline_results("sam", YTVISDataset([], [], []))
