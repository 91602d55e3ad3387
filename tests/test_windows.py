"""Windowed inference for long videos: window cutting, overlap IoU, Hungarian linking, identities across windows."""

from __future__ import annotations

import numpy as np
import pytest

from autoqvis.core.tracks import decode_rle, encode_mask, video_iou
from autoqvis.engine.windows import WindowLinker, WindowTracks, iter_windows, link_tracks, predict_windowed
from autoqvis.core.errors import AutoQVISError

COLORS = [(230, 40, 40), (40, 200, 60), (50, 80, 240)]  # one solid colour per object
BACKGROUND = 128


def moving_shapes(num_frames: int, h: int = 48, w: int = 64):
    """A toy video: object 0 crosses the frame all along, object 1 leaves through the right edge half-way, object 2
    enters from the left in the last third. Returns frames uint8 (T, H, W, 3) and GT masks bool (3, T, H, W)."""
    yy, xx = np.mgrid[:h, :w]
    frames = np.full((num_frames, h, w, 3), BACKGROUND, np.uint8)
    masks = np.zeros((3, num_frames, h, w), bool)
    for t in range(num_frames):
        s = t / max(1, num_frames - 1)
        masks[0, t] = (yy - 12) ** 2 + (xx - (8 + 48 * s)) ** 2 < 7**2
        masks[1, t] = (abs(yy - 34) < 6) & (abs(xx - (20 + 100 * s)) < 8)
        masks[2, t] = (abs(yy - 24) < 5) & (abs(xx - (-40 + 120 * s)) < 5) & (s > 0.6)
        for k in range(3):
            masks[k, t] &= ~masks[:k, t].any(0)  # earlier objects in front
            frames[t][masks[k, t]] = COLORS[k]
    return frames, masks


def colour_oracle(seed: int = 0, junk: bool = True):
    """A stand-in for the model: segments objects by their exact colour (perfect masks), returns them in a random
    order per window (as query order differs between windows), plus a low-score random blob. The window index is
    written into the predicted IoU so tests can tell which window produced a frame."""
    rng = np.random.default_rng(seed)
    calls = [0]

    def predict(clip: np.ndarray) -> dict:
        n, h, w = clip.shape[:3]
        masks = [np.all(clip == np.array(c, np.uint8), axis=-1) for c in COLORS]
        masks = [m for m in masks if m.any()]
        scores = [0.9] * len(masks)
        if junk:
            masks.append(rng.random((n, h, w)) < 0.05)
            scores.append(0.1)
        order = rng.permutation(len(masks))
        pred_iou = np.full((len(masks), n), 0.5 + 0.01 * calls[0])
        calls[0] += 1
        return {"scores": np.asarray(scores)[order], "masks": np.stack(masks)[order], "pred_iou": pred_iou}

    return predict


def dense(track, h, w) -> np.ndarray:
    """bool (T, H, W) of a track (None -> empty)."""
    return np.stack([decode_rle(r) if r is not None else np.zeros((h, w), bool) for r in track.segmentations])


# ----------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize(
    "num, window, overlap, expected",
    [
        (10, 4, 1, [(0, 4), (3, 4), (6, 4)]),  # 0-3, 3-6, 6-9
        (11, 4, 1, [(0, 4), (3, 4), (6, 4), (9, 2)]),  # short last window, still holds new frame 10
        (7, 4, 1, [(0, 4), (3, 4)]),  # ends exactly: no window of old frames only
        (3, 8, 2, [(0, 3)]),  # shorter than one window
        (9, None, 0, [(0, 9)]),  # whole video
        (9, 5, 3, [(0, 5), (2, 5), (4, 5)]),  # overlap > window / 2: frames shared by 3 windows
    ],
)
def test_iter_windows_starts_and_lengths(num, window, overlap, expected):
    frames = (np.full((2, 2, 3), t, np.uint8) for t in range(num))
    got = [(s, len(c)) for s, c in iter_windows(frames, window, overlap)]
    assert got == expected
    for s, clip in iter_windows((np.full((2, 2, 3), t, np.uint8) for t in range(num)), window, overlap):
        assert clip[:, 0, 0, 0].tolist() == list(range(s, s + len(clip)))


def test_bad_window_settings_are_user_errors():
    with pytest.raises(AutoQVISError, match="--overlap 0"):
        predict_windowed([], colour_oracle(), window=8, overlap=0)
    with pytest.raises(AutoQVISError, match="--overlap 8"):
        predict_windowed([], colour_oracle(), window=8, overlap=8)
    with pytest.raises(AutoQVISError, match="--window 1"):
        predict_windowed([], colour_oracle(), window=1, overlap=0)


# ----------------------------------------------------------------------------------- IoU and matching
def test_video_iou_of_overlap_frames_sums_intersections_and_unions_over_frames():
    a0 = np.zeros((4, 5), bool); a0[:2, :2] = True  # 4 px
    b0 = np.zeros((4, 5), bool); b0[:2, 1:3] = True  # 4 px, 2 shared
    a1 = np.zeros((4, 5), bool); a1[:, :] = True  # 20 px
    b1 = np.zeros((4, 5), bool); b1[0, 0] = True  # 1 px, 1 shared
    prev = [[encode_mask(a0), encode_mask(a1)], [None, None]]
    new = [[encode_mask(b0), encode_mask(b1)], [encode_mask(a0), None]]
    iou, _ = video_iou(prev, new)  # the linker's overlap IoU
    assert iou.shape == (2, 2)
    assert iou[0, 0] == pytest.approx((2 + 1) / (6 + 20))  # not the mean of per-frame IoUs (1/3, 1/20)
    assert iou[0, 1] == pytest.approx(4 / (4 + 20))
    assert iou[1, 0] == 0.0 and iou[1, 1] == 0.0
    assert video_iou([], new)[0].shape == (0, 2)


def test_link_tracks_is_hungarian_and_thresholded():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    # greedy would take (0, 0) then be left with 0.1; Hungarian takes the larger total 0.8 + 0.85
    assert link_tracks(iou, 0.5) == [(0, 1), (1, 0)]
    assert link_tracks(iou, 0.82) == [(1, 0)]
    assert link_tracks(np.zeros((2, 3)), 0.0) == []
    assert link_tracks(np.zeros((0, 3)), 0.5) == []


def test_hand_made_tracks_continue_end_and_start():
    """Two windows of 3 frames sharing 1: track A continues (as the new window's 2nd track), track B ends,
    track C is new. Shared frame: A from the later window, B from the earlier one."""
    h, w = 6, 6

    def m(x0, x1):
        out = np.zeros((h, w), bool)
        out[1:4, x0:x1] = True
        return out

    def window(start, masks, scores, q):
        k, n = len(masks), len(masks[0])
        pred = {"scores": np.array(scores), "masks": np.array(masks), "pred_iou": np.full((k, n), q)}
        return WindowTracks.encode(start, pred, n)

    linker = WindowLinker(overlap=1, min_iou=0.5)
    linker.add(window(0, [[m(0, 2), m(0, 2), m(1, 3)], [m(4, 6), m(4, 6), m(4, 6)]], [0.8, 0.6], 0.3), 3)
    linker.add(window(2, [[m(0, 1), m(5, 6), m(5, 6)], [m(1, 3), m(2, 4), m(3, 5)]], [0.2, 0.4], 0.7), 3)
    tracks = linker.finish()
    assert [t.track_id for t in tracks] == [1, 2, 3]
    a, b, c = tracks
    assert a.score == pytest.approx((0.8 + 0.4) / 2) and b.score == pytest.approx(0.6) and c.score == 0.2
    assert [dense(a, h, w)[t].sum() for t in range(5)] == [6, 6, 6, 6, 6]
    assert np.array_equal(dense(a, h, w)[4], m(3, 5))
    assert a.pred_iou == [0.3, 0.3, 0.7, 0.7, 0.7]  # shared frame 2 from the later window
    assert b.pred_iou == [0.3, 0.3, 0.3, None, None] and b.segmentations[3] is None
    assert c.segmentations[:2] == [None, None] and c.pred_iou[2:] == [0.7, 0.7, 0.7]
    assert all(len(t.segmentations) == len(t.pred_iou) == 5 for t in tracks)


# -------------------------------------------------------------------------------- long toy video
@pytest.mark.parametrize("window, overlap, expected_windows", [
    (16, 4, [16] * 9 + [12]),
    (5, 3, [5] * 58 + [4]),  # frames shared by up to 3 windows
])
def test_long_video_keeps_identities_across_every_overlap(window, overlap, expected_windows):
    frames, gt = moving_shapes(120)
    windows_seen = []

    def counting(clip):
        windows_seen.append(len(clip))
        return oracle(clip)

    oracle = colour_oracle(seed=1)
    tracks, num = predict_windowed(iter(frames), counting, window=window, overlap=overlap)
    assert num == 120 and windows_seen == expected_windows
    real = [t for t in tracks if t.score > 0.5]
    assert len(real) == 3  # one identity per object over all windows, despite the shuffled query order
    for t in real:
        mask = dense(t, 48, 64)
        k = int(np.argmax([(mask & g).sum() for g in gt]))
        assert np.array_equal(mask, gt[k]), f"track {t.track_id} differs from object {k}"
    # the random blobs never link: every window's blob is a new identity
    assert len(tracks) == 3 + len(windows_seen)


def test_windowed_equals_whole_video_on_an_easy_case():
    frames, gt = moving_shapes(40)
    whole, _ = predict_windowed(iter(frames), colour_oracle(junk=False), window=None, overlap=0)
    windowed, _ = predict_windowed(iter(frames), colour_oracle(junk=False), window=10, overlap=3)
    assert len(whole) == len(windowed) == 3
    key = lambda t: int(np.argmax([(dense(t, 48, 64) & g).sum() for g in gt]))  # noqa: E731
    for a, b in zip(sorted(whole, key=key), sorted(windowed, key=key)):
        assert np.array_equal(dense(a, 48, 64), dense(b, 48, 64))  # None (not in a window) == empty mask


def test_progress_callback_counts_each_frame_once():
    frames, _ = moving_shapes(23)
    seen = []
    predict_windowed(iter(frames), colour_oracle(), window=8, overlap=2, on_frames=seen.append)
    assert seen == [8, 6, 6, 3] and sum(seen) == 23
