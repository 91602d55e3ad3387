"""The toy world: layout and loading, determinism, pseudo-mask imperfection rates, motion features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from autoqvis.cli import main as cli_main
from autoqvis.data.coco import load_coco
from autoqvis.data.toyworld import (
    OUTPUT_FILES,
    SHAPES,
    iter_stills,
    iter_videos,
    random_shape,
    toyworld_config,
    write_toyworld,
)
from autoqvis.core.tracks import decode_rle
from autoqvis.data.ytvis import load_ytvis
from autoqvis.core.errors import AutoQVISError


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "world"
    assert cli_main(["toyworld", "--out", str(out), "--size", "small", "--seed", "3"]) == 0
    return out


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ layout
def test_files_load_with_the_data_layer(world):
    cfg = toyworld_config("small")
    assert sorted(p.name for p in world.iterdir()) == sorted(OUTPUT_FILES)  # no staging left behind
    train, train_gt, val = (load_ytvis(world / n) for n in ("train.json", "train_gt.json", "val.json"))
    assert train.annotations == [] and "annotations" in json.loads((world / "train.json").read_text())
    assert [v.id for v in train.videos] == [v.id for v in train_gt.videos]
    assert (len(train.videos), len(val.videos)) == (cfg.num_train_videos, cfg.num_val_videos)
    assert len(train_gt.annotations) > 0 and len(val.annotations) > 0
    for ds in (train_gt, val):
        assert ds.categories == [{"id": 1, "name": "object", "supercategory": "object"}]
        for video in ds.videos:
            assert cfg.num_frames[0] <= video.length <= cfg.num_frames[1]
            assert (video.height, video.width) == tuple(cfg.video_size)
            assert ds.read_frame(video, video.length - 1).shape == (*cfg.video_size, 3)
        for ann in ds.annotations:
            present = [s is not None for s in ann.segmentations]
            assert any(present) and [a is not None for a in ann.areas] == present
            assert min(a for a in ann.areas if a is not None) >= cfg.min_area
    source, source_gt = load_coco(world / "source.json"), load_coco(world / "source_gt.json")
    assert len(source) == len(source_gt) == cfg.num_stills
    assert source.read_image(1).shape == (*cfg.still_size, 3)
    assert source.masks(1).shape[1:] == tuple(cfg.still_size)
    assert source.extra["info"]["pseudo_masks"]["configured"]["miss_rate"] == cfg.miss_rate


def test_jpeg_frames_match_the_rendered_frames(world):
    """Frames on disk are the generator's frames (quality 95, no chroma subsampling): masks stay valid."""
    val = load_ytvis(world / "val.json")
    video = next(iter_videos(toyworld_config("small"), 3, "val"))
    on_disk = np.stack([val.read_frame(val.videos[0], t) for t in range(val.videos[0].length)])
    assert on_disk.shape == video.frames.shape
    assert np.abs(on_disk.astype(int) - video.frames).mean() < 4.0  # JPEG error: ~3 grey levels, mostly the sensor noise it smooths
    first = [decode_rle(s) for s in val.annotations_of(val.videos[0].id)[0].segmentations if s is not None][0]
    assert first.any()


def test_same_seed_same_bytes_other_seed_other_world(world, tmp_path):
    write_toyworld(tmp_path / "again", seed=3, size="small")
    a, b = _tree_bytes(world), _tree_bytes(tmp_path / "again")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    write_toyworld(tmp_path / "other", seed=4, size="small")
    assert _tree_bytes(tmp_path / "other")["val.json"] != a["val.json"]


def test_val_ground_truth_scores_ap_one_against_itself(world):
    from autoqvis.eval.ytvis_eval import evaluate

    val = load_ytvis(world / "val.json")
    results = [{"video_id": a.video_id, "score": 1.0 - 0.01 * k, "category_id": 1, "segmentations": a.segmentations}
               for k, a in enumerate(val.annotations)]
    stats = evaluate(val, results, workers=1)
    assert stats["AP"] == stats["AP50"] == stats["AR100"] == stats["APs"] == 1.0
    assert stats["APm"] == stats["APl"] == -1.0  # every toy object is "small" (< 128^2 pixels)
    assert evaluate(val, results[1:], workers=1)["AR100"] < 1.0  # the check can fail


def test_stills_feed_imagecut2video(world):
    """source.json is a training set as CutLER's ImageNet pseudo-labels are: SyntheticClips reads it."""
    from autoqvis.core.config import load_config
    from autoqvis.data.dataset import SyntheticClips

    cfg = load_config("toy")
    clips = SyntheticClips(world / "source.json", cfg)
    sample = clips.sample(np.random.default_rng(0))
    t, c, h, w = sample["frames"].shape
    assert (t, c) == (cfg.synth.num_frames, 3) and min(h, w) in cfg.synth.min_size
    assert sample["masks"].shape[1:] == (t, h, w) and sample["source"] == "synthetic"


# ------------------------------------------------------------------------------------ pseudo-masks
def _coverage(pseudo: list[dict], true: list[dict]) -> np.ndarray:
    """(M, N) |pseudo m & true n| / |true n|, via pycocotools (a "crowd" ground truth divides by dt area)."""
    if not pseudo or not true:
        return np.zeros((len(pseudo), len(true)))
    rles = [dict(r, counts=r["counts"].encode()) for r in true + pseudo]
    return mask_utils.iou(rles[: len(true)], rles[len(true):], [1] * len(pseudo)).T


def _measure(source: dict, source_gt: dict) -> dict[str, int]:
    """Imperfection counts measured from the two COCO files alone (independent of the generator's books)."""
    counts = dict(objects=0, missed=0, merged=0, masks=0, spurious=0)
    for image in source["images"]:
        pseudo = [a["segmentation"] for a in source["annotations"] if a["image_id"] == image["id"]]
        true = [a["segmentation"] for a in source_gt["annotations"] if a["image_id"] == image["id"]]
        cov = _coverage(pseudo, true) >= 0.5
        counts["objects"] += len(true)
        counts["missed"] += int((~cov.any(0)).sum()) if len(true) else 0
        per_mask = cov.sum(1) if len(true) else np.zeros(len(pseudo), int)
        counts["merged"] += int((per_mask == 2).sum())
        counts["masks"] += int((per_mask >= 1).sum())
        counts["spurious"] += int((per_mask == 0).sum())
    return counts


def test_recorded_imperfections_are_measurable(world):
    source = json.loads((world / "source.json").read_text())
    measured = _measure(source, json.loads((world / "source_gt.json").read_text()))
    recorded = source["info"]["pseudo_masks"]["counts"]
    assert measured == {k: recorded[k] for k in measured}
    assert measured["missed"] + measured["merged"] + measured["spurious"] > 0  # the small world is imperfect too


def test_imperfection_rates_are_as_configured():
    """200 small stills with round rates: each realised rate within ~3 binomial sd of the knob."""
    cfg = toyworld_config("small", num_stills=200, miss_rate=0.2, merge_rate=0.5, jitter_rate=0.5,
                          spurious_rate=0.2, still_cluster_prob=0.8)
    stats = [s.stats for s in iter_stills(cfg, 0)]
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    assert total["objects"] > 300 and total["neighbour_pairs"] > 60
    assert abs(total["missed"] / total["objects"] - 0.2) < 0.07
    assert abs(total["merged"] / total["neighbour_pairs"] - 0.5) < 0.17
    assert abs(total["jittered"] / total["masks"] - 0.5) < 0.1
    assert abs(total["spurious"] / len(stats) - 0.2) < 0.09
    assert 0.5 < total["jitter_iou_sum"] / total["jittered"] < 0.95  # visibly wrong, still the same object
    clean = toyworld_config("small", num_stills=20, miss_rate=0.0, merge_rate=0.0, jitter_rate=0.0,
                            spurious_rate=0.0)
    for still in iter_stills(clean, 0):
        assert np.array_equal(still.pseudo, still.masks)


# -------------------------------------------------------------------------------------- the videos
def test_motion_features_are_present():
    cfg = toyworld_config("small", num_val_videos=8)
    entering_or_leaving = occluded = moving = spinning_or_scaling = 0
    tracks = 0
    for video in iter_videos(cfg, 0, "val"):
        in_frame = video.amodal.sum((2, 3))  # (N, T)
        visible = video.masks.sum((2, 3))
        for k in range(len(video.masks)):
            tracks += 1
            entering_or_leaving += bool((in_frame[k] == 0).any() and (visible[k] > 0).any())
            occluded += bool(((in_frame[k] - visible[k]) > 0.3 * np.maximum(in_frame[k], 1)).any())
            ys, xs = np.nonzero(video.masks[k].any(0))
            moving += bool(np.ptp(xs) + np.ptp(ys) > 0.4 * sum(cfg.video_size) / 2)
            full = in_frame[k][in_frame[k] > 0]
            spinning_or_scaling += bool(full.max() > 1.1 * full.min())
        brightness = video.frames.reshape(len(video.frames), -1).mean(1)
        assert np.abs(np.diff(video.frames.astype(np.int16), axis=0)).mean() > 1.0  # something moves each frame
        assert brightness.min() > 20 and brightness.max() < 235
    assert tracks >= 16
    assert entering_or_leaving >= 2 and occluded >= 2
    assert moving >= tracks // 2 and spinning_or_scaling >= 2


def test_lighting_drifts_in_videos_not_in_stills():
    cfg = toyworld_config("small", num_val_videos=6, lighting_drift=0.3, tint_drift=0.0, light_gradient=0.0,
                          video_objects=[1, 1], speed=[0.0, 0.0], pan=[0.0, 0.0], spin=0.0, scale_rate=0.0,
                          enter_leave_prob=0.0, noise_std=0.0)
    drifts = []
    for video in iter_videos(cfg, 0, "val"):
        mean = video.frames.reshape(len(video.frames), -1).mean(1)
        drifts.append(abs(mean[-1] / mean[0] - 1))
    assert max(drifts) > 0.1  # a static scene whose light changes


def test_every_shape_family_renders():
    rng = np.random.default_rng(0)
    v, u = np.mgrid[-1.2:1.2:97j, -1.2:1.2:97j]
    for kind in SHAPES:
        shape = random_shape(rng, [kind])
        inside = shape.inside(u, v)
        assert shape.kind == kind and 0.15 < inside.mean() < 0.6
        assert not inside[np.hypot(u, v) > 1.01].any()  # fits the unit disc: the bbox of render_object holds it
        assert inside[48, 48] == (kind != "ring")  # only rings have a hole


# ---------------------------------------------------------------------------------------- bad input
def test_refuses_to_overwrite_without_flag_and_replaces_with_it(world, tmp_path):
    out = tmp_path / "w"
    write_toyworld(out, seed=1, size="small")
    before = _tree_bytes(out)
    with pytest.raises(AutoQVISError, match="--overwrite"):
        write_toyworld(out, seed=2, size="small")
    assert _tree_bytes(out) == before
    write_toyworld(out, seed=3, size="small", overwrite=True)
    assert _tree_bytes(out) == _tree_bytes(world)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


def test_bad_knobs_are_one_clear_error(tmp_path, capsys):
    with pytest.raises(AutoQVISError, match="miss_rate"):
        toyworld_config("small", miss_rate=1.5)
    with pytest.raises(AutoQVISError, match="shapes has 'hexagon'"):
        toyworld_config("small", shapes=["hexagon"])
    with pytest.raises(AutoQVISError, match="unknown size"):
        toyworld_config("huge")
    assert cli_main(["toyworld", "--out", str(tmp_path / "x"), "--size", "small", "video_size=[8,8]"]) == 2
    assert cli_main(["toyworld", "--out", str(tmp_path / "x"), "nope=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("autoqvis toyworld: error: toyworld config: image sides") and "nope" in err[1]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
