"""Masks in the formats other tools read: ``predict --save-masks png|npz`` (DAVIS layout, palette PNGs, overlaps by
score), ``convert-masks`` PNG folder <-> YouTubeVIS json (round trips identical), evaluation against DAVIS labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoqvis.cli import main
from autoqvis.data.davis import davis_palette, label_map, read_label_png, write_label_png
from autoqvis.data.video_io import write_mp4
from autoqvis.core.tracks import decode_rle, encode_mask
from autoqvis.data.ytvis import load_ytvis
from _helpers import save_random_checkpoint

T, H, W = 6, 48, 64


def labelled_video(seed: int, n_objects: int, length: int = T) -> np.ndarray:
    """uint8 (T, H, W) DAVIS-style label maps: random rectangles with ids 1..n that move; some absent somewhere."""
    rng = np.random.default_rng(seed)
    out = np.zeros((length, H, W), np.uint8)
    for obj in range(1, n_objects + 1):
        y, x = rng.integers(0, H - 12), rng.integers(0, W - 16)
        h, w = rng.integers(6, 12), rng.integers(8, 16)
        for t in range(length):
            if obj == 2 and t in (1, 4):
                continue  # absent in these frames
            yy, xx = min(H - h, y + t), min(W - w, x + 2 * t)
            out[t, yy:yy + h, xx:xx + w] = obj * 3 if obj == 3 else obj  # non-contiguous ids too
    return out


def write_davis(root: Path, videos: dict[str, np.ndarray]) -> None:
    for name, labels in videos.items():
        for t, lab in enumerate(labels):
            write_label_png(root / name / f"{t:05d}.png", lab)


def read_folder(root: Path) -> dict[str, dict[str, np.ndarray]]:
    return {v.name: {p.name: read_label_png(p) for p in sorted(v.glob("*.png"))} for v in sorted(root.iterdir())}


def test_label_png_is_a_palette_png_with_the_davis_colours(tmp_path):
    lab = np.zeros((4, 5), np.uint8)
    lab[1, 2], lab[3, 4] = 1, 7
    write_label_png(tmp_path / "a.png", lab)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P"
        assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]  # DAVIS: black, dark red, dark green
        assert np.array_equal(np.asarray(im), lab)
    assert davis_palette()[7 * 3:8 * 3] == [128, 128, 128]


def test_overlaps_go_to_the_higher_score():
    a = np.zeros((3, 3), bool)
    a[:2] = True
    b = np.zeros((3, 3), bool)
    b[1:] = True
    out = label_map([a, b, None], [1, 2, 3], [0.4, 0.9, 1.0], (3, 3))
    assert out.tolist() == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    out = label_map([a, b], [1, 2], [0.9, 0.4], (3, 3))
    assert out.tolist() == [[1, 1, 1], [1, 1, 1], [2, 2, 2]]


def test_png_to_json_to_png_is_identical_and_evaluates(tmp_path, capsys):
    videos = {"bear": labelled_video(0, 3), "car-shadow": labelled_video(1, 2), "zebra": labelled_video(2, 1)}
    write_davis(tmp_path / "Annotations", videos)
    assert main(["convert-masks", str(tmp_path / "Annotations"), str(tmp_path / "gt.json")]) == 0
    gt = load_ytvis(tmp_path / "gt.json")
    assert [v.extra["name"] for v in gt.videos] == ["bear", "car-shadow", "zebra"]
    assert gt.videos[0].file_names[:2] == ["bear/00000.jpg", "bear/00001.jpg"]
    assert [a.extra["davis_id"] for a in gt.annotations] == [1, 2, 9, 1, 2, 1]
    # object 2 of bear is absent (None) in frames 1 and 4; every mask equals its pixels
    bear2 = gt.annotations[1]
    assert [s is None for s in bear2.segmentations] == [False, True, False, False, True, False]
    for a in gt.annotations:
        labels = videos[gt.video(a.video_id).extra["name"]]
        for t, seg in enumerate(a.segmentations):
            expected = labels[t] == a.extra["davis_id"]
            assert np.array_equal(decode_rle(seg) if seg else np.zeros((H, W), bool), expected)

    assert main(["convert-masks", str(tmp_path / "gt.json"), str(tmp_path / "back")]) == 0
    back = read_folder(tmp_path / "back")
    orig = read_folder(tmp_path / "Annotations")
    assert back.keys() == orig.keys()
    for name in orig:
        assert back[name].keys() == orig[name].keys()
        assert all(np.array_equal(back[name][f], orig[name][f]) for f in orig[name])

    # evaluate against the DAVIS labels: a perfect prediction scores 1, one missing object of two halves AR
    results = [{"video_id": a.video_id, "score": 0.9, "category_id": 1, "segmentations": a.segmentations}
               for a in gt.annotations]
    (tmp_path / "perfect.json").write_text(json.dumps(results))
    partial = [r for r, a in zip(results, gt.annotations) if not (a.video_id == 2 and a.extra["davis_id"] == 2)]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    capsys.readouterr()
    for name, ap, ar in (("perfect", 1.0, 1.0), ("partial", None, 5 / 6)):
        assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / f"{name}.json"),
                     "--out", str(tmp_path / f"{name}_metrics.json")]) == 0
        metrics = json.loads((tmp_path / f"{name}_metrics.json").read_text())
        if ap is not None:
            assert metrics["AP"] == pytest.approx(ap)
        assert metrics["AR10"] == pytest.approx(ar, abs=1e-6)


def test_results_to_png_folder_needs_videos_and_orders_by_score(tmp_path, capsys):
    labels = labelled_video(3, 2)
    videos = {"videos": [{"id": 5, "name": "clip", "width": W, "height": H, "length": T,
                          "file_names": [f"clip/{t:05d}.jpg" for t in range(T)]}], "annotations": [],
              "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "videos.json").write_text(json.dumps(videos))
    results = [{"video_id": 5, "score": s, "category_id": 1,
                "segmentations": [encode_mask(lab == obj) if (lab == obj).any() else None for lab in labels]}
               for obj, s in ((1, 0.6), (2, 0.95))] + \
              [{"video_id": 5, "score": 0.2, "category_id": 1,
                "segmentations": [encode_mask(np.ones((H, W), bool))] * T}]  # below the threshold: left out
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["convert-masks", str(tmp_path / "results.json"), str(tmp_path / "png")]) != 0
    assert "--videos" in capsys.readouterr().err and not (tmp_path / "png").exists()
    assert main(["convert-masks", str(tmp_path / "results.json"), str(tmp_path / "png"),
                 "--videos", str(tmp_path / "videos.json")]) == 0
    got = read_folder(tmp_path / "png")["clip"]
    # ids by score: object 2 (0.95) -> 1, object 1 (0.6) -> 2
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0))
    assert [np.array_equal(got[f"{t:05d}.png"], swapped[t]) for t in range(T)] == [True] * T


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    path = save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "toy_random.pt")
    return path


def test_predict_save_masks_png_and_npz(toy_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    frames = np.full((T, H, W, 3), 100, np.uint8)
    for t in range(T):
        frames[t, 10:30, 5 + 4 * t:25 + 4 * t] = (230, 30, 30)
        frames[t] = np.clip(frames[t].astype(int) + rng.integers(-10, 10, frames[t].shape), 0, 255)
    write_mp4(tmp_path / "movie.mp4", frames, fps=6)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(tmp_path / "movie.mp4"),
                 "--out", str(out), "--no-overlays", "--overlay-threshold", "0", "--save-masks", "png",
                 "--save-masks", "npz", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) >= 2
    pngs = sorted((out / "Annotations" / "movie").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(T)]
    npz = np.load(out / "masks" / "movie.npz")
    assert npz["labels"].shape == (T, H, W) and npz["ids"].tolist() == list(range(1, len(results) + 1))
    assert np.allclose(npz["scores"], [r["score"] for r in results])
    assert np.allclose(npz["pred_iou"], [r["pred_iou"] for r in results])
    # every pixel: the id (1 = best score) of the highest-scoring result covering it, 0 where none does
    order = sorted(range(len(results)), key=lambda i: -results[i]["score"])
    for t, p in enumerate(pngs):
        with Image.open(p) as im:
            assert im.mode == "P"
            got = np.asarray(im)
        expected = np.zeros((H, W), np.uint8)
        for i in reversed(order):
            seg = results[i]["segmentations"][t]
            if seg is not None:
                expected[decode_rle(seg)] = order.index(i) + 1
        assert np.array_equal(got, expected)
        assert np.array_equal(npz["labels"][t], got)
    assert (npz["labels"] > 0).any()
    # predict's PNGs -> json -> PNGs: identical
    assert main(["convert-masks", str(out / "Annotations"), str(tmp_path / "pred_gt.json")]) == 0
    assert main(["convert-masks", str(tmp_path / "pred_gt.json"), str(tmp_path / "again")]) == 0
    again = read_folder(tmp_path / "again")["movie"]
    assert all(np.array_equal(again[p.name], read_label_png(p)) for p in pngs)
