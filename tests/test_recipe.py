"""Issue 14: the paper presets train as the official AutoQ-VIS code does (items 1-4, 7, 8).

The augmentation (item 1) and frame sampling (item 4) are tested in test_dataset.py, the per-rank source draw
(item 3) in test_sampler.py, the AMP dtype and GradScaler (item 8) in test_trainer.py; here: the preset values,
the initial stage without DropLoss (item 2) and the empty tracks of the evaluation output (item 7).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _selftrain_cases import TINY_OVERRIDES
from autoqvis.core.config import load_config
from autoqvis.core.tracks import encode_mask
from autoqvis.data.ytvis import load_ytvis
from autoqvis.engine.trainer import lr_factor
from autoqvis.core.errors import AutoQVISError


# ------------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", ["ytvis19_r50", "uvo_dense_r50"])
def test_paper_presets_follow_the_official_recipe(name):
    cfg = load_config(name)
    assert cfg.input.real_clip_augmentation == "official"  # item 1: YTVISDatasetMapper on real clips
    assert (cfg.synth.crop_type, cfg.synth.crop_size, cfg.synth.min_size, cfg.synth.max_size) == (
        "absolute_range", [600.0, 720.0], [360, 480], 1333)
    assert (cfg.synth.brightness, cfg.synth.contrast, cfg.synth.rotation, cfg.synth.rotation_center) == (
        [0.9, 1.1], [0.9, 1.1], 15.0, [0.4, 0.6])
    assert cfg.loss.drop_loss is False and cfg.selftrain.drop_loss is True  # item 2
    assert cfg.selftrain.source_draw == "per_rank"  # item 3
    assert cfg.selftrain.frame_sampling == "eligible_positions" and cfg.input.sampling_frame_range == 20  # item 4
    assert cfg.inference.keep_empty_tracks is True  # item 7
    assert cfg.train.steps == [7999] and cfg.train.max_iter == 8000 and cfg.train.amp_dtype == "float16"  # item 8
    # detectron2's multi-step schedule: the lr of iteration i is base x gamma^(milestones <= i)
    assert [lr_factor(i, cfg.train.steps, cfg.train.gamma) for i in (0, 7998, 7999)] == [1.0, 1.0, pytest.approx(0.1)]
    assert cfg.selftrain.tau == (0.3 if name == "uvo_dense_r50" else 0.75)


def test_toy_preset_keeps_its_own_initial_stage_droploss():
    cfg = load_config("toy")
    assert cfg.loss.drop_loss is True  # the shipped toy_init.pt was trained so
    assert cfg.input.real_clip_augmentation == "official" and cfg.synth.min_size == [80, 96, 112]
    assert cfg.selftrain.source_draw == "per_rank" and cfg.selftrain.frame_sampling == "eligible_positions"
    assert cfg.inference.keep_empty_tracks is True and cfg.train.steps == [800]


@pytest.mark.parametrize("key,value", [("input.real_clip_augmentation", "crop"), ("train.amp_dtype", "float32"),
                                       ("selftrain.source_draw", "per_batch"),
                                       ("selftrain.frame_sampling", "positions")])
def test_recipe_switches_reject_unknown_values(key, value):
    with pytest.raises(AutoQVISError, match=key.replace(".", r"\.")):
        load_config("ytvis19_r50", [f"{key}={value}"])


# ------------------------------------------------------------------------ item 2: DropLoss per stage
def test_initial_stage_trains_without_droploss_and_the_rounds_with_it(tmp_path, monkeypatch):
    import autoqvis.engine.trainer as trainer
    from autoqvis.data.toyworld import write_toyworld
    from autoqvis.core import dist
    from autoqvis.selftrain.loop import SelfTraining, SelfTrainInputs, write_pseudo_labels

    write_toyworld(tmp_path / "w", size="small", seed=0)
    seen = []

    def train_loop(model, batches, cfg, out_dir, *, max_iter, desc="", **kw):
        seen.append((desc, dist.unwrap(model).criterion.drop_loss))
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "optimizer": {}, "iteration": max_iter}, out_dir / "model_final.pt")
        return out_dir / "model_final.pt"

    monkeypatch.setattr(trainer, "train_loop", train_loop)
    # the toy architecture with the paper's DropLoss settings (the toy preset keeps DropLoss in its initial stage)
    cfg = load_config("toy", TINY_OVERRIDES + ["loss.drop_loss=false", "selftrain.drop_loss=true"])
    unlabeled = load_ytvis(tmp_path / "w" / "train.json")
    run = SelfTraining(cfg, SelfTrainInputs(tmp_path / "w" / "source.json", unlabeled), tmp_path / "run", progress=False)
    weights = run.initial_weights()
    write_pseudo_labels({}, unlabeled, tmp_path / "run" / "round_0" / "pseudo_labels.json", 0)
    run.train_round(1, weights)
    assert seen == [("initial stage", False), ("round 1", True)]


# ------------------------------------------------------------------------ item 7: empty tracks in the output
def _empty_track_case():
    h, w, t = 8, 8, 2
    obj = np.zeros((h, w), dtype=bool)
    obj[2:6, 2:6] = True
    gt = load_ytvis({"videos": [{"id": 1, "width": w, "height": h, "length": t, "file_names": ["a.png", "b.png"]}],
                     "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                      "segmentations": [encode_mask(obj)] * t}],
                     "categories": [{"id": 1, "name": "object"}]})
    pred = {"scores": np.array([0.8, 0.9]), "pred_iou": np.array([[0.9, 0.9], [0.1, 0.1]]),
            "segmentations": [[encode_mask(obj)] * t, [None] * t]}  # the best-scoring track is empty everywhere
    return gt, pred, obj


def test_empty_tracks_are_kept_and_scored_as_the_official_evaluator_does():
    from autoqvis.engine.inference import results_from_prediction
    from autoqvis.eval.ytvis_eval import evaluate

    gt, pred, obj = _empty_track_case()
    kept = results_from_prediction(1, pred, keep_empty_tracks=True)
    assert [r["score"] for r in kept] == [0.9, 0.8] and kept[0]["segmentations"] == [None, None]
    dropped = results_from_prediction(1, pred, keep_empty_tracks=False)
    assert [r["score"] for r in dropped] == [0.8]
    # official ytvoseval: the empty track (area 0, inside the "all" range) is an unmatched detection ranked
    # first, so precision is 1/2 at full recall: AP50 0.5 instead of 1.0
    assert evaluate(gt, kept)["AP50"] == pytest.approx(0.5)
    assert evaluate(gt, dropped)["AP50"] == pytest.approx(1.0)
    # the official file writes an empty RLE per frame instead of null: scored the same
    as_official = [dict(r, segmentations=[s or encode_mask(np.zeros_like(obj)) for s in r["segmentations"]])
                   for r in kept]
    assert evaluate(gt, as_official) == evaluate(gt, kept)


def test_evaluate_model_follows_inference_keep_empty_tracks(monkeypatch):
    import autoqvis.engine.inference as inference
    from autoqvis.eval.model_eval import evaluate_model

    gt, pred, _ = _empty_track_case()
    monkeypatch.setattr(inference, "predict_dataset", lambda model, ds, cfg, **kw: iter([(1, pred)]))
    for keep, ap50 in ((True, 0.5), (False, 1.0)):
        cfg = load_config("ytvis19_r50", [f"inference.keep_empty_tracks={str(keep).lower()}"])
        assert evaluate_model(None, gt, cfg, progress=False)["AP50"] == pytest.approx(ap50)


# --------------------------------------------------------------------- fidelity items F2 and F6 (docs/fidelity.md)
class _Probe(torch.nn.Module):
    """Records the autocast state its inference runs under."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list = []

    def inference(self, clip, out_size):
        return {}


@pytest.mark.parametrize("name,overrides,expected", [
    ("ytvis19_r50", [], (True, torch.float16)),  # the official Trainer.test: fp16 autocast
    ("uvo_dense_r50", [], (True, torch.float16)),
    ("toy", [], (False, torch.float32)),  # the toy's float32, as before the switch
    ("ytvis19_r50", ["inference.amp_dtype=bfloat16"], (True, torch.bfloat16)),
    ("ytvis19_r50", ["inference.amp_dtype=none"], (False, torch.float32)),
    pytest.param("toy", ["train.amp_inference=true"], (True, torch.bfloat16),  # the old switch still reads as bf16
                 marks=pytest.mark.filterwarnings("ignore:config key train.amp_inference is deprecated")),
])
def test_inference_amp_dtype_reaches_autocast(name, overrides, expected, monkeypatch):
    import contextlib

    from autoqvis.engine import inference

    seen = []

    def recording_autocast(device, enabled, dtype=torch.bfloat16):
        seen.append((enabled, dtype))
        return contextlib.nullcontext()

    monkeypatch.setattr(inference.fast_path, "autocast", recording_autocast)
    cfg = load_config(name, overrides)
    inference._run_model(_Probe(), np.zeros((2, 8, 8, 3), np.uint8), cfg)
    assert seen == [expected]


def test_inference_amp_dtype_is_checked_and_old_runs_resume_as_they_ran():
    from autoqvis.selftrain.loop import _upgrade_saved_config

    with pytest.raises(AutoQVISError, match="inference.amp_dtype"):
        load_config("ytvis19_r50", ["inference.amp_dtype=float32"])
    with pytest.raises(AutoQVISError, match="train.nonfinite_loss"):
        load_config("ytvis19_r50", ["train.nonfinite_loss=ignore"])
    old = load_config("ytvis19_r50").to_dict()
    del old["inference"]["amp_dtype"], old["train"]["nonfinite_loss"], old["selftrain"]["clips_per_draw"]
    new = _upgrade_saved_config(old)
    assert new["inference"]["amp_dtype"] == "none" and new["train"]["nonfinite_loss"] == "stop"
    assert new["selftrain"]["clips_per_draw"] == 0
    with pytest.raises(AutoQVISError, match="clips_per_draw"):
        load_config("ytvis19_r50", ["selftrain.clips_per_draw=3"])
    assert load_config("ytvis19_r50", ["selftrain.batch_size=1"]).selftrain.clips_per_draw == 2  # one group


@pytest.mark.parametrize("name", ["ytvis19_r50", "uvo_dense_r50", "toy"])
def test_fidelity_switches_in_the_presets(name):
    cfg = load_config(name)
    toy = name == "toy"
    assert cfg.inference.amp_dtype == ("none" if toy else "float16")  # F2
    assert cfg.train.nonfinite_loss == ("stop" if toy else "skip")  # F6
    assert cfg.selftrain.clips_per_draw == (0 if toy else 2) and cfg.selftrain.batch_size == 4  # F1
    assert not cfg.runtime.channels_last and not cfg.runtime.compile  # speed-only switches, off


def test_checkpoints_saved_before_inference_amp_dtype_predict_as_they_did(tmp_path):
    from autoqvis.core.torch_io import atomic_torch_save
    from autoqvis.model.checkpoint import checkpoint_config

    for amp_inference, expected in ((False, "none"), (True, "bfloat16")):
        stored = load_config("ytvis19_r50").to_dict()
        del stored["inference"]["amp_dtype"], stored["runtime"]
        stored["train"].update(amp_inference=amp_inference, channels_last=False, compile=False)  # as saved then
        path = tmp_path / f"old_{amp_inference}.pt"
        atomic_torch_save({"model": {"w": torch.zeros(1)}, "iteration": 1, "config": stored}, path)
        assert checkpoint_config(path).inference.amp_dtype == expected
    new = tmp_path / "new.pt"
    atomic_torch_save({"model": {"w": torch.zeros(1)}, "iteration": 1, "config": load_config("ytvis19_r50").to_dict()}, new)
    assert checkpoint_config(new).inference.amp_dtype == "float16"
