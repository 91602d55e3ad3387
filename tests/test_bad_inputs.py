"""A catalogue of bad inputs across the CLI (issue 7).

Every case builds a small bad input in its own folder, runs one ``autoqvis`` subcommand on it and checks:
the exit code is 2, stderr is ONE line ``autoqvis <cmd>: error: ...`` that names the file and the record /
field at fault, no traceback is printed, and no file or folder in the case folder was created, removed
or changed (names, sizes, mtimes and bytes). Most cases run in-process (``autoqvis.cli.main``); a few
run ``python -m autoqvis`` as a real subprocess to prove the exit code and the absence of a traceback.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis.cli import main
from autoqvis.data.video_io import write_mp4
from autoqvis.core.tracks import encode_mask
from _helpers import save_random_checkpoint

REPO = Path(__file__).resolve().parents[1]
REFERENCE = next((p for p in (REPO / "tests" / "reference", REPO.parent / "shared" / "reference") if p.is_dir()),
                 REPO / "tests" / "reference")  # as conftest.py finds it
T, H, W = 3, 16, 24  # frames, height, width of the small valid video every case starts from


# ------------------------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (hidden ones too): relative path -> (kind, size, mtime_ns, bytes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_file():
            out[str(p.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, p.read_bytes())
        else:
            out[str(p.relative_to(root))] = ("dir", 0, st.st_mtime_ns, b"")
    return out


def write_frames(folder: Path, n: int = T, size: tuple[int, int] = (H, W), suffix: str = ".png") -> list[Path]:
    """``n`` frames uint8 (h, w, 3) named 00000.png ... with a moving square."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(n):
        img = np.full((*size, 3), 90, np.uint8)
        img[2:8, 2 + t:8 + t] = (200, 40, 40)
        paths.append(folder / f"{t:05d}{suffix}")
        Image.fromarray(img).save(paths[-1])
    return paths


def square_masks() -> np.ndarray:
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        masks[t, 2:8, 2 + t:8 + t] = True
    return masks


def gt_dict() -> dict:
    """A valid YouTubeVIS file: one video of T frames (HxW) under JPEGImages/v1, one track."""
    rles = [encode_mask(m) for m in square_masks()]
    return {"videos": [{"id": 1, "width": W, "height": H, "length": T,
                        "file_names": [f"v1/{t:05d}.png" for t in range(T)]}],
            "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": rles,
                             "areas": [36.0] * T, "bboxes": [[2.0 + t, 2.0, 6.0, 6.0] for t in range(T)]}],
            "categories": [{"id": 1, "name": "object"}]}


def results_list() -> list[dict]:
    return [{"video_id": 1, "score": 0.9, "category_id": 1,
             "segmentations": [encode_mask(m) for m in square_masks()]}]


def coco_dict() -> dict:
    rle = encode_mask(square_masks()[0])
    return {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "object"}]}


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def gt_file(d: Path, edit: Callable[[dict], None] | None = None, name: str = "gt.json") -> Path:
    """gt.json (edited by ``edit``) with its frames under d/JPEGImages/v1."""
    write_frames(d / "JPEGImages" / "v1")
    data = gt_dict()
    if edit is not None:
        edit(data)
    return dump(d / name, data)


def results_file(d: Path, edit: Callable[[list], None] | None = None) -> Path:
    data = results_list()
    if edit is not None:
        edit(data)
    return dump(d / "results.json", data)


class Evil:
    """Unpickling this would create ``marker`` (``open(marker, "w")``): code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def unwritable_dir(d: Path) -> Path:
    """A folder this process cannot write into: chmod 0555 where that stops us; as root (where it does
    not), a folder whose path runs through a regular file, which no user can create."""
    folder = d / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / ".probe").touch()
    except OSError:
        return folder
    (folder / ".probe").unlink()
    folder.chmod(0o755)
    folder.rmdir()
    (d / "a_file").write_text("not a folder")
    return d / "a_file" / "out"


# ------------------------------------------------------------------------------------------ fixtures
@dataclass
class World:
    checkpoint: Path  # a valid toy checkpoint (random weights)
    other_architecture: Path  # detectron2 weights of the reference tiny VideoCutLER model (another architecture)

    def other(self) -> Path:
        if not self.other_architecture.is_file():
            pytest.skip("shared/reference is not available on this machine")
        return self.other_architecture


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    ckpt = save_random_checkpoint(root / "toy.pt")
    return World(ckpt, REFERENCE / "tiny" / "state_dict.pt")


@dataclass
class Case:
    argv: list[str]
    names: list[str]  # substrings the one-line message must hold: the file, the record / field
    marker: Path | None = None  # a file that must NOT exist afterwards (pickled code)


CASES: dict[str, Callable[[Path, World], Case]] = {}


def case(fn: Callable[[Path, World], Case]) -> Callable[[Path, World], Case]:
    CASES[fn.__name__] = fn
    return fn


def predict(w: World, d: Path, inp: Path, *extra: str, checkpoint: Path | None = None) -> list[str]:
    ckpt = checkpoint or w.checkpoint
    return ["predict", "--checkpoint", str(ckpt), "--input", str(inp), "--out", str(d / "out"), "--no-overlays", *extra]


def evaluate(gt: Path, res: Path, d: Path) -> list[str]:
    return ["evaluate", "--gt", str(gt), "--results", str(res), "--out", str(d / "metrics.json")]


# -------------------------------------------------------------------------------------- videos, frames
@case
def corrupt_mp4(d, w):
    good = d / "src" / "good.mp4"
    good.parent.mkdir()
    write_mp4(good, (np.full((H, W, 3), 10 * t, np.uint8) for t in range(8)), fps=8)
    data = bytearray(good.read_bytes())
    bad = d / "bad.mp4"
    bad.write_bytes(bytes(data[: len(data) // 3]) + b"\x00garbage" * 50)  # truncated + junk: moov atom lost
    good.unlink()
    good.parent.rmdir()
    return Case(predict(w, d, bad), ["bad.mp4", "video"])


@case
def not_a_video_mp4(d, w):
    bad = d / "clip.mp4"
    bad.write_bytes(bytes(range(256)) * 8)  # not a container of any format
    return Case(predict(w, d, bad), ["clip.mp4", "video"])


def empty_container(path: Path, codec: str) -> Path:
    """A container with a video stream header and no frame (what a recorder killed at once leaves)."""
    import av

    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=8)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    container.start_encoding()
    container.close()
    return path


@case
def zero_frame_video(d, w):
    path = empty_container(d / "empty.avi", "mpeg4")  # avi keeps the stream; it just has no frame
    return Case(predict(w, d, path), ["empty.avi", "zero frames"])


@case
def zero_frame_mp4(d, w):
    path = empty_container(d / "empty.mp4", "libx264")  # mp4 drops a stream without samples
    return Case(predict(w, d, path), ["empty.mp4", "no video stream"])


@case
def zero_byte_video(d, w):
    path = d / "zero.mp4"
    path.write_bytes(b"")
    return Case(predict(w, d, path), ["zero.mp4", "empty"])


@case
def frame_folder_mixed_sizes(d, w):
    folder = d / "frames"
    write_frames(folder, n=2)
    write_frames(d / "tmp", n=3, size=(H + 2, W))
    os.replace(d / "tmp" / "00002.png", folder / "00002.png")
    (d / "tmp" / "00000.png").unlink()
    (d / "tmp" / "00001.png").unlink()
    (d / "tmp").rmdir()
    return Case(predict(w, d, folder), ["frames", "00002.png", "size"])


@case
def frame_folder_with_a_text_file(d, w):
    folder = d / "frames"
    write_frames(folder)
    (folder / "notes.txt").write_text("hello")
    return Case(predict(w, d, folder), ["frames", "notes.txt", "not jpg/png"])


@case
def frame_that_is_not_an_image(d, w):
    folder = d / "frames"
    write_frames(folder)
    (folder / "00001.png").write_bytes(b"this is not a png")
    return Case(predict(w, d, folder), ["00001.png", "not a readable image"])


@case
def missing_frame_file(d, w):
    gt = gt_file(d)
    (d / "JPEGImages" / "v1" / "00001.png").unlink()
    return Case(predict(w, d, gt), ["00001.png", "not found"])


# ---------------------------------------------------------------------------------------- YTVIS json
@case
def ytvis_not_json(d, w):
    gt = d / "gt.json"
    gt.write_text('{"videos": [}')
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "not valid JSON"])


@case
def ytvis_without_videos(d, w):
    gt = gt_file(d, lambda g: g.pop("videos"))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "'videos'"])


@case
def ytvis_duplicate_video_ids(d, w):
    gt = gt_file(d, lambda g: g["videos"].append(copy.deepcopy(g["videos"][0])))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "video 1", "duplicate video id"])


@case
def ytvis_duplicate_annotation_ids(d, w):
    gt = gt_file(d, lambda g: g["annotations"].append(copy.deepcopy(g["annotations"][0])))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotation 1", "duplicate annotation id"])


@case
def ytvis_segmentations_shorter_than_video(d, w):
    gt = gt_file(d, lambda g: g["annotations"][0]["segmentations"].pop())
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotation 1", "'segmentations'", "2 entries"])


@case
def ytvis_rle_size_differs_from_video(d, w):
    def edit(g):
        g["annotations"][0]["segmentations"][1] = encode_mask(np.zeros((H, W + 1), bool))

    return Case(evaluate(gt_file(d, edit), results_file(d), d),
                ["gt.json", "annotation 1", "segmentations[1]", "RLE size"])


@case
def ytvis_malformed_rle_counts(d, w):
    def edit(g):
        g["annotations"][0]["segmentations"][2]["counts"] = "0000"

    return Case(evaluate(gt_file(d, edit), results_file(d), d),
                ["gt.json", "annotation 1", "segmentations[2]", "malformed RLE"])


@case
def ytvis_negative_area(d, w):
    gt = gt_file(d, lambda g: g["annotations"][0]["areas"].__setitem__(1, -5))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotation 1", "areas[1]"])


@case
def ytvis_infinite_area(d, w):
    gt = gt_file(d)
    gt.write_text(gt.read_text().replace("[36.0, 36.0, 36.0]", "[36.0, 1e999, 36.0]"))  # json reads inf
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotation 1", "areas[1]"])


@case
def ytvis_nan_area(d, w):
    gt = gt_file(d)
    gt.write_text(gt.read_text().replace("[36.0, 36.0, 36.0]", "[36.0, NaN, 36.0]"))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotations[0].areas[1]", "NaN"])


@case
def ytvis_bbox_outside_image(d, w):
    gt = gt_file(d, lambda g: g["annotations"][0]["bboxes"].__setitem__(0, [20.0, 2.0, 30.0, 6.0]))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "annotation 1", "bboxes[0]", "outside"])


@case
def ytvis_file_name_escapes_root(d, w):
    gt = gt_file(d, lambda g: g["videos"][0]["file_names"].__setitem__(1, "../../etc/passwd"))
    return Case(predict(w, d, gt), ["gt.json", "video 1", "file_names[1]", "escapes"])


@case
def ytvis_file_name_absolute(d, w):
    gt = gt_file(d, lambda g: g["videos"][0]["file_names"].__setitem__(0, "/etc/hostname"))
    return Case(evaluate(gt, results_file(d), d), ["gt.json", "video 1", "file_names[0]", "absolute"])


@case
def selftrain_unlabeled_with_bad_height(d, w):
    gt = gt_file(d, lambda g: g["videos"][0].__setitem__("height", 0), name="unlabeled.json")
    coco = dump(d / "source.json", coco_dict())
    return Case(["selftrain", "--config", "toy", "--synthetic", str(coco), "--unlabeled", str(gt),
                 "--out", str(d / "st")], ["unlabeled.json", "video 1", "'height'"])


@case
def selftrain_bad_val_after_a_video_folder(d, w):
    """--unlabeled is a folder (indexed into --out) and --val is bad: the index must not be written first."""
    write_frames(d / "videos" / "clip_a")
    coco = dump(d / "source.json", coco_dict())
    val = gt_file(d, lambda g: g["annotations"][0].__setitem__("video_id", 9), name="val.json")
    return Case(["selftrain", "--config", "toy", "--synthetic", str(coco), "--unlabeled", str(d / "videos"),
                 "--val", str(val), "--out", str(d / "st")], ["val.json", "annotation 1", "'video_id' 9"])


@case
def selftrain_bad_synthetic_with_init(d, w):
    """With --init the run starts by pseudo-labelling; a bad --synthetic must fail before that, not after."""
    data = coco_dict()
    data["annotations"][0]["segmentation"]["counts"] = "#bad"
    coco = dump(d / "source.json", data)
    return Case(["selftrain", "--config", "toy", "--synthetic", str(coco), "--unlabeled", str(gt_file(d)),
                 "--init", str(w.checkpoint), "--out", str(d / "st"), "--no-progress"],
                ["source.json", "annotation 1", "segmentation"])


@case
def selftrain_corrupt_video_in_folder(d, w):
    """A folder of videos is decoded into --out; the second one is corrupt: no frame of the first may stay."""
    (d / "videos").mkdir()
    write_mp4(d / "videos" / "a.mp4", (np.full((H, W, 3), 20 * t, np.uint8) for t in range(4)), fps=4)
    (d / "videos" / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    coco = dump(d / "source.json", coco_dict())
    return Case(["selftrain", "--config", "toy", "--synthetic", str(coco), "--unlabeled", str(d / "videos"),
                 "--out", str(d / "st")], ["b.mp4", "video"])


@case
def selftrain_truncated_init(d, w):
    data = w.checkpoint.read_bytes()
    (d / "init.pt").write_bytes(data[: len(data) // 3])
    write_frames(d / "images", n=1)
    os.replace(d / "images" / "00000.png", d / "images" / "a.png")
    coco = dump(d / "source.json", coco_dict())
    return Case(["selftrain", "--config", "toy", "--synthetic", str(coco), "--unlabeled", str(gt_file(d)),
                 "--init", str(d / "init.pt"), "--out", str(d / "st"), "--no-progress"],
                ["init.pt", "checkpoint"])


# -------------------------------------------------------------------------------------- results json
@case
def results_unknown_video_id(d, w):
    res = results_file(d, lambda r: r[0].__setitem__("video_id", 7))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "result 0", "video_id 7"])


@case
def results_infinite_score(d, w):
    res = results_file(d)
    res.write_text(res.read_text().replace('"score": 0.9', '"score": -1e999'))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "result 0", "'score'", "-inf"])


@case
def results_nan_score(d, w):
    res = results_file(d)
    res.write_text(res.read_text().replace('"score": 0.9', '"score": NaN'))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "[0].score", "NaN"])


@case
def results_score_out_of_range(d, w):
    res = results_file(d, lambda r: r[0].__setitem__("score", 1.5))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "result 0", "'score'", "1.5"])


@case
def results_missing_segmentations(d, w):
    res = results_file(d, lambda r: r[0].pop("segmentations"))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "result 0", "segmentations", "missing"])


@case
def results_zero_bytes(d, w):
    res = d / "results.json"
    res.write_bytes(b"")
    return Case(evaluate(gt_file(d), res, d), ["results.json", "0 bytes"])


@case
def results_not_a_list(d, w):
    res = dump(d / "results.json", {"video_id": 1})
    return Case(evaluate(gt_file(d), res, d), ["results.json", "list"])


def many_results(d: Path, bad: str) -> tuple[Path, Path]:
    """gt.json with two videos and 400 results (enough for the evaluator's process pool); result 333 has
    ``bad`` appended to the counts of its frame 2."""
    def two_videos(g):
        g["videos"].append({**g["videos"][0], "id": 2})

    one = results_list()[0]
    res = [{**copy.deepcopy(one), "video_id": 1 + k % 2, "score": 0.5} for k in range(400)]
    res[333]["segmentations"][2]["counts"] += bad
    return gt_file(d, two_videos), dump(d / "results.json", res)


@case
def results_bad_rle_character_found_in_a_worker_process(d, w):
    """The error is raised in a pool worker and crosses the process boundary intact."""
    gt, res = many_results(d, "~")
    return Case(evaluate(gt, res, d) + ["--workers", "2"],
                ["results.json", "result 333 (video 2)", "segmentations[2]", "malformed RLE", "character"])


@case
def results_rle_runs_beyond_the_frame_with_check_masks(d, w):
    """Runs that do not add up to the frame are left to pycocotools by default (as the official code);
    --check-masks refuses them."""
    gt, res = many_results(d, "1")
    return Case(evaluate(gt, res, d) + ["--workers", "2", "--check-masks"],
                ["results.json", "result 333 (video 2)", "segmentations[2]", "391 pixels", "384"])


@case
def results_rle_covering_part_of_the_frame(d, w):
    """Runs that stop short of the frame: pycocotools' iou would loop forever on this mask."""
    from pycocotools import mask as mask_utils

    short = mask_utils.frPyObjects({"size": [H, W], "counts": [2 * H + 2, 3]}, H, W)["counts"].decode()
    res = results_file(d, lambda r: r[0]["segmentations"].__setitem__(0, {"size": [H, W], "counts": short}))
    return Case(evaluate(gt_file(d), res, d), ["results.json", "result 0 (video 1)", "segmentations[0]",
                                               "37 pixels", "384"])


@case
def results_bad_rle_in_visualize(d, w):
    def edit(r):
        r[0]["segmentations"][1]["counts"] = "zz"

    res = results_file(d, edit)
    return Case(["visualize", "--results", str(res), "--videos", str(gt_file(d)), "--out", str(d / "viz")],
                ["results.json", "result 0", "segmentations[1]", "malformed RLE"])


# ----------------------------------------------------------------------------------------- COCO json
@case
def coco_annotation_for_missing_image(d, w):
    write_frames(d / "images", n=1)
    os.replace(d / "images" / "00000.png", d / "images" / "a.png")
    data = coco_dict()
    data["annotations"][0]["image_id"] = 42
    coco = dump(d / "coco.json", data)
    return Case(["synth", "--images", str(d / "images"), "--annotations", str(coco), "--out", str(d / "out"),
                 "--no-progress"], ["coco.json", "annotation 1", "image_id 42"])


@case
def coco_image_file_missing(d, w):
    coco = dump(d / "coco.json", coco_dict())
    (d / "images").mkdir()
    return Case(["synth", "--images", str(d / "images"), "--annotations", str(coco), "--out", str(d / "out"),
                 "--no-progress"], ["a.png", "not found"])


@case
def coco_second_image_corrupt(d, w):
    """The first clip renders fine, the second image does not decode: no frame of the first may stay."""
    data = coco_dict()
    data["images"].append({"id": 2, "file_name": "b.png", "height": H, "width": W})
    data["annotations"].append({**data["annotations"][0], "id": 2, "image_id": 2})
    coco = dump(d / "coco.json", data)
    write_frames(d / "images", n=1)
    os.replace(d / "images" / "00000.png", d / "images" / "a.png")
    (d / "images" / "b.png").write_bytes(b"\x89PNG but truncated")
    return Case(["synth", "--images", str(d / "images"), "--annotations", str(coco), "--out", str(d / "out"),
                 "--no-progress", "--config", "toy", "synth.copy_paste=false"], ["b.png", "not a readable image"])


@case
def coco_train_synthetic_with_bad_segmentation_size(d, w):
    data = coco_dict()
    data["annotations"][0]["segmentation"]["size"] = [H, W + 4]
    coco = dump(d / "coco.json", data)
    return Case(["train", "--config", "toy", "--synthetic", str(coco), "--out", str(d / "run"), "--no-progress"],
                ["coco.json", "annotation 1", "segmentation: RLE size is"])


# -------------------------------------------------------------------------------------------- configs
@case
def config_unknown_key(d, w):
    cfg = d / "cfg.yaml"
    cfg.write_text("_base_: {}\ntrain:\n  max_iters: 5\n".format(REPO / "src/autoqvis/configs/toy.yaml"))
    coco = dump(d / "coco.json", coco_dict())
    return Case(["train", "--config", str(cfg), "--synthetic", str(coco), "--out", str(d / "run")],
                ["train.max_iters", "unknown config key"])


@case
def config_wrong_type(d, w):
    cfg = d / "cfg.yaml"
    cfg.write_text("model:\n  num_queries: many\n")
    coco = dump(d / "coco.json", coco_dict())
    return Case(["train", "--config", str(cfg), "--synthetic", str(coco), "--out", str(d / "run")],
                ["model.num_queries", "integer", "many"])


@case
def config_override_wrong_type(d, w):
    coco = dump(d / "coco.json", coco_dict())
    return Case(["synth", "--images", str(d), "--annotations", str(coco), "--out", str(d / "out"),
                 "--config", "toy", "synth.rotation=[1, 2]"], ["synth.rotation", "number"])


@case
def toyworld_unknown_knob(d, w):
    return Case(["toyworld", "--out", str(d / "toy"), "--size", "small", "miss_rat=0.3"], ["miss_rat", "knob"])


# ---------------------------------------------------------------------------------------- checkpoints
@case
def checkpoint_of_another_architecture_convert(d, w):
    other = w.other()  # VideoCutLER-architecture tiny model
    return Case(["convert-checkpoint", str(other), str(d / "out.pt"), "--config", "toy"],
                ["state_dict.pt", "do not fit", "backbone."])


@case
def checkpoint_of_another_architecture_predict(d, w):
    gt = gt_file(d)
    other = w.other()
    return Case(predict(w, d, gt, "--config", "toy", checkpoint=other),
                ["state_dict.pt", "do not fit", "backbone."])


@case
def checkpoint_with_pickled_code(d, w):
    marker = d / "PWNED"
    evil = d / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": Evil(marker)}, evil)
    return Case(predict(w, d, gt_file(d), checkpoint=evil),
                ["evil.pt", "refused", "io.open"], marker=marker)


@case
def pkl_with_pickled_code(d, w):
    marker = d / "PWNED"
    evil = d / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "payload": Evil(marker)}, protocol=2))
    return Case(["convert-checkpoint", str(evil), str(d / "out.pt"), "--config", "toy"],
                ["evil.pkl", "refus", "open"], marker=marker)


@case
def checkpoint_zero_bytes(d, w):
    empty = d / "empty.pt"
    empty.write_bytes(b"")
    return Case(["convert-checkpoint", str(empty), str(d / "out.pt"), "--config", "toy"],
                ["empty.pt", "0 bytes"])


@case
def train_init_truncated_checkpoint(d, w):
    data = w.checkpoint.read_bytes()
    ckpt = d / "init.pt"
    ckpt.write_bytes(data[: len(data) // 2])
    coco = dump(d / "coco.json", coco_dict())
    write_frames(d / "images", n=1)
    os.replace(d / "images" / "00000.png", d / "images" / "a.png")
    return Case(["train", "--config", "toy", "--synthetic", str(coco), "--init", str(ckpt), "--out", str(d / "run"),
                 "--max-iters", "1", "--no-progress"], ["init.pt", "checkpoint"])


# --------------------------------------------------------------------------------------------- outputs
@case
def evaluate_out_not_writable(d, w):
    out = unwritable_dir(d)
    return Case(["evaluate", "--gt", str(gt_file(d)), "--results", str(results_file(d)), "--out",
                 str(out / "m.json")], [str(out.name), "writ" if out.name == "readonly" else "folder"])


@case
def toyworld_out_not_writable(d, w):
    out = unwritable_dir(d)
    return Case(["toyworld", "--out", str(out / "toy"), "--size", "small"], [out.name, "folder"])


@case
def predict_out_not_writable(d, w):
    out = unwritable_dir(d)
    argv = predict(w, d, gt_file(d))
    argv[argv.index("--out") + 1] = str(out / "pred")
    return Case(argv, [out.name, "folder"])


@case
def train_out_not_writable(d, w):
    out = unwritable_dir(d)
    coco = dump(d / "coco.json", coco_dict())
    write_frames(d / "images", n=1)
    os.replace(d / "images" / "00000.png", d / "images" / "a.png")
    return Case(["train", "--config", "toy", "--synthetic", str(coco), "--out", str(out / "run"), "--max-iters", "1",
                 "--no-progress"], [out.name, "folder"])


@case
def predict_out_is_a_file(d, w):
    (d / "out").write_text("I am a file")
    return Case(predict(w, d, gt_file(d)), ["out", "must be a folder"])


# ---------------------------------------------------------------------------------------------- tests
def test_catalogue_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, world, tmp_path, capsys):
    d = tmp_path / "case"
    d.mkdir()
    c = CASES[name](d, world)
    capsys.readouterr()
    before = snapshot(d)
    rc = main(c.argv)
    out, err = capsys.readouterr()
    command = c.argv[0]
    assert rc == 2, f"exit code {rc}; stderr: {err}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(f"autoqvis {command}: error: "), err
    for needle in c.names:
        assert needle in lines[0], f"{needle!r} missing from: {lines[0]}"
    assert "Traceback" not in err + out
    if c.marker is not None:
        assert not c.marker.exists(), "code in the checkpoint ran"
    after = snapshot(d)
    assert after.keys() == before.keys(), f"created/removed: {sorted(after.keys() ^ before.keys())}"
    assert after == before, "a file changed"
    for p in d.parent.iterdir():  # nothing staged next to the case folder either
        assert p == d, f"stray output {p}"


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    """--debug is the one way to get a traceback (for bug reports); the message line still ends the output."""
    res = tmp_path / "results.json"
    res.write_bytes(b"")
    assert main(["evaluate", "--debug", "--gt", str(gt_file(tmp_path)), "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "AutoQVISError" in err
    assert err.strip().splitlines()[-1].startswith("autoqvis evaluate: error: ")


def test_real_processes_exit_2_without_traceback(world, tmp_path):
    """Three bad inputs through ``python -m autoqvis`` (run side by side): exit status 2, one stderr line,
    nothing on stdout that looks like a traceback, nothing written, no code from the checkpoint run."""
    names = ["corrupt_mp4", "pkl_with_pickled_code", "results_zero_bytes"]
    cases, procs = {}, {}
    for name in names:
        d = tmp_path / name
        d.mkdir()
        cases[name] = (d, CASES[name](d, world), snapshot(d))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("AUTOQVIS_DEBUG", None)
    for name, (d, c, _) in cases.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", "autoqvis", *c.argv], cwd=d, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        d, c, before = cases[name]
        assert proc.returncode == 2, (name, proc.returncode, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"autoqvis {c.argv[0]}: error: "), err
        assert all(needle in err for needle in c.names), err
        assert "Traceback" not in out + err
        assert c.marker is None or not c.marker.exists()
        assert snapshot(d) == before
