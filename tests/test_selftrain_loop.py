"""The round loop with the model's predictions and the training replaced by stubs.

The stub "model" predicts the ground-truth tracks (plus a duplicate and a low-score track), so every count in
the round files is known in advance; the stub trainer samples one pseudo-labelled batch (the loop's files
must feed the real VideoClips) and saves the weights unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _selftrain_cases import TINY_OVERRIDES
from autoqvis import load_config
from autoqvis.data.ytvis import load_ytvis
from autoqvis.core.errors import AutoQVISError
from autoqvis.selftrain.loop import SelfTrainInputs, run_selftrain
from autoqvis.selftrain.selection import training_frames

TAU = 0.75


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from autoqvis.data.toyworld import write_toyworld

    root = tmp_path_factory.mktemp("toy")
    write_toyworld(root, size="small", seed=0)
    return root


def _stub_predictions(gt_by_name, calls, val_missing=None):
    """predict_dataset stand-in: per video the GT tracks (score 0.95 - 0.05 i, predicted IoU 1 except 0.5 in
    frame 1 during round 0), a duplicate of track 0 (score 0.3) and a track with score 0.1 (filtered by eq. 16).
    Round 0 predicts nothing in the last unlabeled video; round 1 nothing in the first one. val_missing
    {k: n}: round k's model predicts nothing in the first n val videos."""

    def predict_dataset(model, dataset, cfg, *, progress=True, video_ids=None, desc=""):
        gt = gt_by_name.get(str(dataset.path), dataset)
        ids = [v.id for v in dataset.videos] if video_ids is None else list(video_ids)
        rnd = int(desc.split()[1].rstrip(":")) if desc.endswith("pseudo-label") else None  # "round k: pseudo-label"
        val_round = int(desc.split()[1].rstrip(":")) if desc.endswith(": val") else None
        calls[desc] = calls.get(desc, 0) + 1
        for vid in ids:
            tracks = [a.segmentations for a in gt.annotations_of(vid)]
            t = dataset.video(vid).length
            if rnd == 0 and vid == max(ids) or rnd == 1 and vid == min(ids):
                tracks = []
            if val_round is not None and vid in ids[: (val_missing or {}).get(val_round, 0)]:
                tracks = []
            segs = tracks + tracks[:1] + tracks[:1]
            scores = [0.95 - 0.05 * i for i in range(len(tracks))] + ([0.3, 0.1] if tracks else [])
            q = np.ones((len(segs), t))
            if rnd == 0:
                q[:, 1] = 0.5
            yield vid, {"scores": np.array(scores), "segmentations": segs, "pred_iou": q}

    return predict_dataset


def _stub_train_loop(seen):
    def train_loop(model, batches, cfg, out_dir, *, max_iter, resume=False, init_state=None, desc="",
                   val_fn=None, checkpoint_meta=None, progress=True, runtime=None):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        seen.append({"desc": desc, "probs": batches.probs.tolist(), "sources": len(batches.sources),
                     "freeze": cfg.freeze_quality_predictor, "max_iter": max_iter, "batch_size": cfg.batch_size})
        if len(batches.sources) == 2:
            it = next(i for i in range(100) if batches.source_index(i) == 1)
            seen[-1]["pseudo_batch"] = batches.batch(it)
        torch.save({"model": model.state_dict(), "optimizer": {}, "iteration": max_iter}, out_dir / "model_final.pt")
        return out_dir / "model_final.pt"

    return train_loop


def _run(world, out, monkeypatch, overrides=(), val=True, gt=True, val_missing=None):
    import autoqvis.engine.inference as inference
    import autoqvis.engine.trainer as trainer

    unlabeled = load_ytvis(world / "train.json")
    train_gt = load_ytvis(world / "train_gt.json")
    val_ds = load_ytvis(world / "val.json")
    calls: dict = {}
    seen: list = []
    monkeypatch.setattr(inference, "predict_dataset",
                        _stub_predictions({str(unlabeled.path): train_gt}, calls, val_missing))
    monkeypatch.setattr(trainer, "train_loop", _stub_train_loop(seen))
    cfg = load_config("toy", TINY_OVERRIDES + [f"selftrain.tau={TAU}", "selftrain.rounds=2", *overrides])
    inputs = SelfTrainInputs(world / "source.json", unlabeled, val=val_ds if val else None,
                             unlabeled_gt=train_gt if gt else None)
    final = run_selftrain(cfg, inputs, out, progress=False)
    return final, seen, train_gt


def _nonempty(segs):
    return sum(s is not None for s in segs)


def test_round_files_counts_fusion_and_val(world, tmp_path, monkeypatch):
    out = tmp_path / "run"
    final, seen, gt = _run(world, out, monkeypatch)
    assert final == out / "round_2" / "model.pt" and final.exists()
    ids = [v.id for v in gt.videos]
    first, last = min(ids), max(ids)

    # round 0: videos but the last; NMS drops the duplicate and the 0.1 track (both copies of track 0) before the
    # score filter sees them; frame 1 unselected (Q 0.475)
    s0 = json.loads((out / "round_0" / "stats.json").read_text())
    gt0 = [a for v in ids if v != last for a in gt.annotations_of(v)]
    assert s0["videos"] == len(ids) and s0["training_set"]["videos"] == len(ids) - 1
    assert s0["tracks_before_nms"] == len(gt0) + 2 * (len(ids) - 1)  # the raw tracks: GT + 2 copies per video
    assert s0["tracks_after_nms"] == s0["tracks_after_score_filter"] == len(gt0)
    sel = [_nonempty(a.segmentations) - (a.segmentations[1] is not None) for a in gt0]
    assert s0["retained"] == sum(n >= 2 for n in sel) and s0["selected_frames"] == sum(n for n in sel if n >= 2)
    labels0 = load_ytvis(out / "round_0" / "pseudo_labels.json")  # plain YTVIS
    assert sorted(v.id for v in labels0.videos) == sorted({a.video_id for a in labels0.annotations})
    ann = labels0.annotations[0]
    assert ann.extra["selected"][1] == 1 if ann.segmentations[1] is None else ann.extra["selected"][1] == 0
    assert ann.extra["quality"][0] == pytest.approx(ann.extra["score"])

    # round 1: the first video has no new detection (kept by fusion), the last one is new (eq. 4);
    # the fused tracks take S = max -> every frame selected now
    labels1 = load_ytvis(out / "round_1" / "pseudo_labels.json")
    assert {v.id for v in labels1.videos} == {v.id for v in labels0.videos} | {last}
    by_video = {}
    for a in labels1.annotations:
        by_video.setdefault(a.video_id, []).append(a)
    assert labels0.annotations_of(first), "the toy world should give the first video a retained track"
    assert [a.extra["selected"] for a in by_video[first]] == [a.extra["selected"] for a in labels0.annotations_of(first)]
    for v in set(by_video) - {first}:
        assert all(all(a.extra["selected"]) for a in by_video[v])
    s1 = json.loads((out / "round_1" / "stats.json").read_text())
    assert s1["training_set"]["tracks"] == len(labels1.annotations)
    for v in labels1.videos:  # PL.json: the frames a video trains on ride on its record
        assert v.extra["eligible_frames"] == training_frames(labels1.annotations_of(v.id))

    # `autoqvis select` on the round's saved detections and round 0's labels makes the round's labels exactly
    from autoqvis.cli import main

    again = tmp_path / "select_round_1.json"
    assert main(["select", "--detections", str(out / "round_1" / "detections.jsonl"), "--unlabeled",
                 str(world / "train.json"), "--previous", str(out / "round_0" / "pseudo_labels.json"),
                 "--out", str(again), "--config", "toy", f"selftrain.tau={TAU}"]) == 0
    mine, loops = json.loads(again.read_text()), json.loads((out / "round_1" / "pseudo_labels.json").read_text())
    assert mine["videos"] == loops["videos"] and mine["annotations"] == loops["annotations"]

    # training: the initial stage, then 2 rounds on synthetic + pseudo (50/50), predictor frozen
    assert [s["desc"] for s in seen] == ["initial stage", "round 1", "round 2"]
    assert seen[0]["sources"] == 1 and not seen[0]["freeze"]
    assert seen[1]["probs"] == [0.5, 0.5] and seen[1]["freeze"] and seen[1]["batch_size"] == 2
    batch = seen[1]["pseudo_batch"]
    assert all(s["source"] == "pseudo" and s["frames"].shape[0] == 3 for s in batch)

    # val: the stub predicts the val ground truth exactly (duplicates score below every true track)
    m0 = json.loads((out / "round_0" / "metrics.json").read_text())
    assert m0["AP"] == pytest.approx(1.0) and m0["AP50"] == pytest.approx(1.0)
    # analysis: pseudo masks ARE the ground truth
    a0 = json.loads((out / "round_0" / "analysis.json").read_text())
    assert a0["mean_true_iou"] == pytest.approx(1.0) and a0["training_set"]["selected_precision"] == pytest.approx(1.0)
    assert (out / "area_distribution.png").exists() and (out / "round_2" / "quality_vs_iou.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["last"]["round"] == 2 and summary["final_model"] == "round_2/model.pt"  # toy: keep_best false
    assert summary["best"]["round"] == 1  # every round scores AP50 1: the earliest round >= 1


def test_keep_best_makes_the_best_val_round_the_result(world, tmp_path, monkeypatch):
    # val AP50 falls round by round (the models miss 0, 1, 2 val videos): round 0 is best overall, but the
    # official model_best only looks at trained rounds, so round 1; the last is round 2
    for keep_best, want in ((True, 1), (False, 2)):
        out = tmp_path / f"run_{keep_best}"
        final, _, _ = _run(world, out, monkeypatch, [f"selftrain.keep_best={str(keep_best).lower()}"], gt=False,
                           val_missing={0: 0, 1: 1, 2: 2})
        summary = json.loads((out / "summary.json").read_text())
        ap50 = [r["val"]["AP50"] for r in summary["rounds"]]
        assert ap50[0] == pytest.approx(1.0) and ap50[0] > ap50[1] > ap50[2] > 0
        assert summary["best"] == {"round": 1, "model": "round_1/model.pt", "val": summary["rounds"][1]["val"]}
        assert summary["last"] == {"round": 2, "model": "round_2/model.pt", "val": summary["rounds"][2]["val"]}
        assert summary["keep_best"] is keep_best and summary["final_model"] == f"round_{want}/model.pt"
        assert final == out / f"round_{want}" / "model.pt"


def test_best_round_rules():
    from autoqvis.selftrain.loop import best_round, summary_rows

    rows = [{"round": 0, "val": {"AP50": 0.9}}, {"round": 1, "val": {"AP50": 0.5}}, {"round": 2, "val": {"AP50": 0.5}}]
    assert best_round(rows)["round"] == 1  # round 0 is no candidate; ties: the earliest
    assert best_round(rows[:1])["round"] == 0  # no trained round: the initial model
    assert best_round([{"round": 0}, {"round": 1}]) is None  # no val
    assert summary_rows(rows) == rows and summary_rows({"rounds": rows}) == rows


def test_no_fusion_replaces_and_resume_refuses_other_config(world, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _, _, gt = _run(world, out, monkeypatch, ["selftrain.fusion=false", "selftrain.rounds=1"], val=False, gt=False)
    first = min(v.id for v in gt.videos)
    labels1 = load_ytvis(out / "round_1" / "pseudo_labels.json")
    assert first not in {v.id for v in labels1.videos}  # replaced: the first video had no new detection
    assert not (out / "round_1" / "metrics.json").exists() and not (out / "round_1" / "analysis.json").exists()
    with pytest.raises(AutoQVISError, match="already holds a run"):
        _run(world, out, monkeypatch, ["selftrain.fusion=false", "selftrain.rounds=1"], val=False, gt=False)


def _args(*argv):
    import argparse

    from autoqvis.commands import selftrain

    parser = argparse.ArgumentParser()
    selftrain.add_arguments(parser)
    return parser.parse_args(["--config", "toy", "--synthetic", "s.json", "--unlabeled", "u.json", "--out", "o", *argv])


def test_cli_switches_map_to_the_config():
    from autoqvis.commands.selftrain import build_config
    from autoqvis.selftrain.loop import round_config, selection_tau

    cfg = build_config(_args())
    assert selection_tau(cfg) == 0.8 and cfg.selftrain.rounds == 2  # toy.yaml sets tau per data set, as the paper
    assert selection_tau(build_config(_args("--config", "ytvis19_r50"))) == 0.75
    rc = round_config(cfg)
    assert rc.train.freeze_quality_predictor and rc.loss.drop_loss
    assert (rc.train.max_iter, rc.train.batch_size) == (cfg.selftrain.max_iter, cfg.selftrain.batch_size)
    # a round has its own schedule: toy.yaml's initial-stage drop at 800 must not cut a longer round's lr
    assert cfg.train.steps == [800] and rc.train.steps == [] and rc.train.lr == cfg.selftrain.lr
    cfg = build_config(_args("--no-quality-predictor", "--no-fusion", "--no-reset", "--no-freeze", "--no-droploss",
                             "--rounds", "3", "--max-iters", "7"))
    st = cfg.selftrain
    assert selection_tau(cfg) == 0.85 and not (st.fusion or st.reset or st.use_quality_predictor)
    assert st.rounds == 3 and cfg.train.max_iter == st.max_iter == 7
    rc = round_config(cfg)
    assert not rc.train.freeze_quality_predictor and not rc.loss.drop_loss
    assert selection_tau(build_config(_args("--tau", "0.3"))) == 0.3
    assert selection_tau(build_config(_args("--tau", "0.9", "--no-quality-predictor"))) == 0.9
    with pytest.raises(AutoQVISError, match="--tau must be in"):
        build_config(_args("--tau", "1.5"))


def test_cli_rejects_bad_inputs_before_training(world, tmp_path):
    from autoqvis.cli import main

    base = ["selftrain", "--config", "toy", "--synthetic", str(world / "source.json"), "--out", str(tmp_path / "o")]
    assert main(base + ["--unlabeled", str(tmp_path / "missing.json")]) == 2
    assert main(base + ["--unlabeled", str(world / "train.json"), "--unlabeled-gt", str(world / "val.json")]) == 2
    assert not (tmp_path / "o" / "config.yaml").exists()


def test_unlabeled_video_folder(tmp_path):
    from autoqvis.data.inputs import unlabeled_from_folder
    from autoqvis.data.video_io import write_image, write_mp4

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 32, 48, 3), dtype=np.uint8)
    src = tmp_path / "videos"
    for t, f in enumerate(frames[:3]):
        write_image(src / "clip_a" / f"{t}.png", f)
    in_place = unlabeled_from_folder(src, tmp_path / "u1", fps=None)
    assert in_place.image_root == src and in_place.videos[0].file_names == ["clip_a/0.png", "clip_a/1.png", "clip_a/2.png"]
    np.testing.assert_array_equal(in_place.read_frame(in_place.videos[0], 2), frames[2])
    write_mp4(src / "movie.mp4", frames, fps=6)
    mixed = unlabeled_from_folder(src, tmp_path / "u2", fps=None)
    assert [v.length for v in mixed.videos] == [3, 4] and mixed.image_root == tmp_path / "u2" / "JPEGImages"
    assert mixed.read_frame(mixed.videos[1], 0).shape == (32, 48, 3)


def test_resume_reads_a_run_saved_before_selftrain_steps(tmp_path):
    # a run saved before selftrain.steps existed ran its rounds with train.steps: resume compares with that
    from autoqvis.core.config import save_config
    from autoqvis.selftrain.loop import _check_resume_config

    cfg = load_config("toy")
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["selftrain"]["steps"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(AutoQVISError, match=r"selftrain.steps: run has \[800\], now \[\]"):
        _check_resume_config(cfg, tmp_path)
    _check_resume_config(load_config("toy", ["selftrain.steps=[800]"]), tmp_path)  # the old schedule resumes
    with pytest.raises(AutoQVISError, match="selftrain.tau"):
        _check_resume_config(load_config("toy", ["selftrain.steps=[800]", "selftrain.tau=0.6"]), tmp_path)


def test_resume_of_a_run_saved_before_fusion_match_keeps_best_iou(tmp_path):
    from autoqvis.core.config import save_config
    from autoqvis.selftrain.loop import _check_resume_config

    cfg = load_config("toy")
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["selftrain"]["fusion_match"], saved["selftrain"]["keep_best"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(AutoQVISError, match=r"selftrain.fusion_match: run has 'best_iou', now 'first'"):
        _check_resume_config(cfg, tmp_path)
    # the old rule resumes; keep_best only chooses the result among finished rounds, so it may differ
    _check_resume_config(load_config("toy", ["selftrain.fusion_match=best_iou", "selftrain.keep_best=true"]), tmp_path)
