"""Overlays: stable colours, blended masks + contours, legible "#id IoU^ 0.82" / "#id Q 0.61" labels, decodable gif/mp4."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from autoqvis.data.video_io import VideoReader
from autoqvis.core.tracks import encode_mask
from autoqvis.core.errors import AutoQVISError
from autoqvis.viz.overlay import (
    PRED_IOU_LABEL,
    QUALITY_LABEL,
    OverlayTrack,
    display_scale,
    frame_instances,
    instance_color,
    label_anchor,
    label_text,
    render_frame,
    tracks_from_results,
    write_overlay,
)

H, W = 100, 120


def scene(seed: int = 0):
    """A 100x120 frame of grey noise in 80..140 (no white pixels) with a disc and a box."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(80, 141, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:H, :W]
    disc = (yy - 40) ** 2 + (xx - 35) ** 2 < 20**2
    box = (abs(yy - 60) < 15) & (abs(xx - 85) < 20)
    return frame, np.stack([disc, box])


def test_colours_are_stable_and_distinct():
    assert instance_color(3) == instance_color(3)
    colours = np.array([instance_color(i) for i in range(1, 13)], float)
    dists = [np.abs(a - b).sum() for a, b in itertools.combinations(colours, 2)]
    assert min(dists) > 60  # no two of the first 12 ids look alike


def test_small_frames_are_scaled_up_before_drawing():
    assert display_scale(100, 120) == 3 and display_scale(256, 400) == 1 and display_scale(720, 1280) == 1
    frame, masks = scene()
    out = render_frame(frame, masks, [1, 3], ["#1 IoU^ 0.82", "#3 IoU^ 0.41"])
    assert out.shape == (300, 360, 3)
    titled = render_frame(frame, masks, [1, 3], ["#1 IoU^ 0.82", "#3 IoU^ 0.41"], title="prediction  t=0/9")
    assert titled.shape[1] == 360 and titled.shape[0] > 300


def test_masks_are_tinted_and_outlined_in_their_colour():
    frame, masks = scene()
    out = render_frame(frame, masks, [1, 3], None, alpha=0.5)
    c = np.array(instance_color(3), float)
    y, x = 60 * 3 + 30, 85 * 3 + 45  # inside the box, away from its centre label and its outline
    expected = np.round(0.5 * frame[y // 3, x // 3].astype(float) + 0.5 * c)
    assert np.abs(out[y, x].astype(float) - expected).max() <= 8  # bilinear upscaling of the noise
    top_edge = out[(60 - 14) * 3, 85 * 3 - 30 : 85 * 3 + 30]  # first row of the box: its outline
    assert (top_edge == c.astype(np.uint8)).all()
    outside = out[5, 5].astype(float)  # no mask there: the frame, not tinted
    assert np.abs(outside - frame[1, 1].astype(float)).max() <= 60


def test_label_is_written_at_the_mask_centre_and_legible():
    frame, masks = scene()
    out = render_frame(frame, masks[:1], [7], [label_text(7, 0.82)])
    cy, cx = 40 * 3, 35 * 3
    window = out[cy - 30 : cy + 30, cx - 60 : cx + 60]
    ys, xs = np.nonzero((window > 220).all(-1))  # white text; noise and tints stay below 200
    assert len(ys) > 40
    assert ys.max() - ys.min() + 1 >= 10  # text at least 10 px high in the picture
    assert xs.max() - xs.min() + 1 >= 60  # "#7 IoU^ 0.82" is wider than a lone "#7"
    ys_all, _ = np.nonzero((out > 220).all(-1))
    assert len(ys_all) == len(ys)  # no other label anywhere


def test_labels_name_the_quantity_they_show():
    """Predicted IoU (predict, visualize) and Q = s * IoU^ (demo) never share a label."""
    assert label_text(3, 0.8249) == "#3 IoU^ 0.82" and label_text(3, None) == "#3"
    assert label_text(3, 0.61, QUALITY_LABEL) == "#3 Q 0.61" and label_text(3, 0.61, "") == "#3 0.61"
    seg = encode_mask(np.pad(np.ones((4, 4), bool), ((0, H - 4), (0, W - 4))))
    results = [{"video_id": 1, "score": 0.9, "segmentations": [seg, None], "pred_iou": [0.7, 0.0]},
               {"video_id": 1, "score": 0.8, "segmentations": [seg, seg]}]  # no quality predictor: no number
    tracks = tracks_from_results(results)
    assert [t.value_name for t in tracks] == [PRED_IOU_LABEL, PRED_IOU_LABEL]
    assert frame_instances(tracks, 0, (H, W))[1:] == ([1, 2], ["#1 IoU^ 0.70", "#2"])
    assert frame_instances(tracks, 1, (H, W))[1:] == ([2], ["#2"])
    q_track = OverlayTrack(5, [seg], [0.61], QUALITY_LABEL)
    assert frame_instances([q_track], 0, (H, W))[2] == ["#5 Q 0.61"]


def test_label_anchor_stays_inside_a_ring():
    yy, xx = np.mgrid[:60, :60]
    r2 = (yy - 30) ** 2 + (xx - 30) ** 2
    ring = (r2 < 25**2) & (r2 > 20**2)
    x, y = label_anchor(ring)
    assert ring[y, x]
    assert label_anchor(np.zeros((5, 5), bool)) is None


def test_results_for_another_frame_size_are_a_user_error():
    track = OverlayTrack(1, [encode_mask(np.ones((10, 10), bool))])
    with pytest.raises(AutoQVISError, match="instance #1: its mask in frame 0 is 10x10 but the frame is 120x100"):
        frame_instances([track], 0, (H, W))


def video_tracks(num_frames: int):
    frame, masks = scene()
    frames = [np.roll(frame, t, axis=1) for t in range(num_frames)]
    pred = OverlayTrack(1, [encode_mask(np.roll(masks[0], t, axis=1)) for t in range(num_frames)],
                        [0.5 + 0.05 * t for t in range(num_frames)])
    absent = OverlayTrack(2, [None] * num_frames)
    gt = OverlayTrack(4, [encode_mask(np.roll(masks[1], t, axis=1)) for t in range(num_frames)])
    return frames, [pred, absent], [gt]


def test_mp4_and_gif_decode_with_the_right_frame_count(tmp_path):
    frames, tracks, gt = video_tracks(7)
    assert write_overlay(tmp_path / "a.mp4", iter(frames), tracks, fps=6) == 7
    reader = VideoReader(tmp_path / "a.mp4")
    assert len(reader) == 7 and reader.info.width == 360
    assert sum(1 for _ in reader) == 7
    assert write_overlay(tmp_path / "a.gif", iter(frames), tracks, fps=6, gt_tracks=gt) == 7
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 7
        assert gif.size[0] == 2 * 360 + 4  # prediction | ground truth
    with pytest.raises(AutoQVISError, match=r"\.mp4 or \.gif"):
        write_overlay(tmp_path / "a.avi", iter(frames), tracks, fps=6)
    assert not (tmp_path / "a.avi").exists()
