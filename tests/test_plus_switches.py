"""Issue 17's switches beyond the paper: frames judged with their track, tau from Q's quantile, the weight average.
Each is off in every packaged config (the paper presets do not change)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from autoqvis.core.config import load_config
from autoqvis.core.errors import AutoQVISError
from autoqvis.core.torch_io import safe_torch_load
from autoqvis.core.tracks import Detection, encode_mask
from autoqvis.engine.trainer import train_loop
from autoqvis.engine.weight_ema import WeightEMA
from autoqvis.selftrain.curate import SelectionRule, curate_video, round_tau
from autoqvis.selftrain.loop import round_config
from autoqvis.selftrain.selection import hysteresis_select, score_and_select, smooth_quality

from test_trainer import CFG, _batches, _model

SEG = encode_mask(np.pad(np.ones((4, 4), bool), 2))


def _det(pred_iou, score=1.0, present=None):
    present = present or [True] * len(pred_iou)
    return Detection(video_id=1, score=score, segmentations=[SEG if p else None for p in present], pred_iou=list(pred_iou))


def test_smoothing_takes_the_median_of_the_present_neighbours():
    d = _det([0.9, 0.2, 0.9, 0.8, 0.1], present=[True, True, True, False, True])
    q = smooth_quality(d, d.pred_iou, 1)
    # frame 1: median(0.9, 0.2, 0.9); frame 3 is empty (kept); frame 4: its only present neighbour within 1 is itself
    assert q == pytest.approx([0.55, 0.9, 0.55, 0.8, 0.1])
    assert smooth_quality(d, d.pred_iou, 0) == d.pred_iou


def test_hysteresis_rescues_low_frames_only_in_a_good_track():
    good = _det([0.8, 0.75, 0.6, 0.45, 0.72])  # median 0.72 >= tau
    assert hysteresis_select(good, good.pred_iou, tau=0.7, tau_low=0.5) == [1, 1, 1, 0, 1]
    poor = _det([0.8, 0.6, 0.6, 0.45, 0.62])  # median 0.6 < tau: the paper's rule
    assert hysteresis_select(poor, poor.pred_iou, tau=0.7, tau_low=0.5) == [1, 0, 0, 0, 0]
    (plain,) = score_and_select([good], tau=0.7)
    assert plain.selected == [1, 1, 0, 0, 1]


def test_round_tau_keeps_the_share_and_never_goes_below_tau():
    dets = [(1, [_det([0.1 * i for i in range(1, 11)], score=1.0)])]  # Q = 0.1 .. 1.0
    rule = SelectionRule(tau=0.5, score_threshold=0.0, keep_share=0.3)
    assert round_tau(iter(dets), rule).tau == pytest.approx(np.quantile(np.arange(1, 11) / 10, 0.7))
    assert round_tau(iter(dets), replace(rule, keep_share=0.9)).tau == 0.5  # the floor
    assert round_tau(iter(dets), replace(rule, keep_share=0.0)) is not None
    assert round_tau(iter(dets), replace(rule, keep_share=0.0)).tau == 0.5
    kept = curate_video(dets[0][1], round_tau(iter(dets), rule)).retained[0]
    assert sum(kept.selected) == 3


def test_bad_values_are_refused_naming_the_key():
    with pytest.raises(AutoQVISError, match="track_tau_low"):
        SelectionRule(tau=0.7, tau_low=0.8).check()
    with pytest.raises(AutoQVISError, match="tau_keep_share"):
        SelectionRule(keep_share=1.0).check()
    with pytest.raises(AutoQVISError, match="quality_smooth_radius"):
        SelectionRule(smooth_radius=-1).check()


@pytest.mark.parametrize("name", ["ytvis19_r50", "uvo_dense_r50", "toy"])
def test_paper_presets_leave_every_switch_off(name):
    cfg = load_config(name)
    st = cfg.selftrain
    assert (st.quality_smooth_radius, st.track_tau_low, st.tau_keep_share, st.ema_decay, cfg.train.ema_decay) == (0, 0, 0, 0, 0)
    assert st.tau_hold_share is False
    assert (st.oracle_selection, st.oracle_clean_from_round) == (False, -1)  # the oracles read ground truth
    assert st.oracle_iou == 0.5  # were an oracle switched on, it is the paper's practical limit (Table 2)
    assert st.diag_round0_videos_only is False  # a diagnosis: leaves out the videos later rounds add
    rule = SelectionRule.from_config(cfg)
    assert (rule.smooth_radius, rule.tau_low, rule.keep_share) == (0, None, 0.0)


def test_round_config_carries_the_round_weight_average_only():
    cfg = load_config("toy", ["selftrain.ema_decay=0.99"])
    assert cfg.train.ema_decay == 0 and round_config(cfg).train.ema_decay == 0.99


def test_weight_average_is_the_result_and_resumes_exactly(tmp_path):
    cfg = replace(CFG, ema_decay=0.5)
    straight = _model()
    train_loop(straight, _batches(), cfg, tmp_path / "a", max_iter=cfg.max_iter, progress=False)
    final = safe_torch_load(tmp_path / "a" / "model_final.pt")
    # the stage hands on the average; the trained weights stay apart for a resume
    assert set(final) >= {"model", "model_trained", "ema"}
    for k, v in final["model"].items():
        assert torch.equal(v, straight.state_dict()[k]), k
    w = "backbone.0.weight"
    assert not torch.equal(final["model"][w], final["model_trained"][w])
    half = _model()
    train_loop(half, _batches(), cfg, tmp_path / "b", max_iter=4, progress=False)
    # resumed from that stage's final checkpoint (the average as "model"): training goes on from the trained weights
    resumed = _model(seed=7)
    train_loop(resumed, _batches(), cfg, tmp_path / "b", max_iter=cfg.max_iter, resume=True, progress=False)
    again = safe_torch_load(tmp_path / "b" / "model_final.pt")
    for key in ("model", "model_trained"):
        for k, v in final[key].items():
            assert torch.equal(v, again[key][k]), (key, k)


def test_weight_average_arithmetic():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = WeightEMA(lin, 0.9)
    with torch.no_grad():
        lin.weight.fill_(3.0)
    ema.update(lin)
    assert ema.state_dict()["weight"].flatten().tolist() == pytest.approx([1.2, 1.2])
    with pytest.raises(ValueError, match="ema_decay"):
        WeightEMA(lin, 1.0)


# ----------------------------------------------------------------------- no target label in the new variants
PLUS = ["selftrain.track_tau_low=0.4", "selftrain.quality_smooth_radius=1", "selftrain.tau_keep_share=0.5",
        "selftrain.ema_decay=0.9"]


class _Watched:
    """The unlabeled videos' ground truth, recording which source file touches it."""

    def __init__(self, ds, seen: set) -> None:
        object.__setattr__(self, "_ds", ds)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name):
        import sys

        self._seen.add(sys._getframe(1).f_code.co_filename.replace("\\", "/"))
        return getattr(self._ds, name)


def test_plus_variants_read_no_target_label(tmp_path, monkeypatch):
    """With and without the unlabeled videos' ground truth, the plus switches make the same pseudo-labels round by
    round (they differ from the paper's rule), and the ground truth is touched by the analysis alone."""
    import json

    import test_selftrain_loop as loop_cases
    from autoqvis.data.toyworld import write_toyworld
    from autoqvis.data.ytvis import load_ytvis

    world = tmp_path / "toy"
    write_toyworld(world, size="small", seed=0)
    seen: set = set()
    real = load_ytvis

    def watched_load(path, *a, **k):
        ds = real(path, *a, **k)
        return _Watched(ds, seen) if str(path).endswith("train_gt.json") else ds

    monkeypatch.setattr(loop_cases, "load_ytvis", watched_load)
    loop_cases._run(world, tmp_path / "with_gt", monkeypatch, PLUS, gt=True)
    loop_cases._run(world, tmp_path / "no_gt", monkeypatch, PLUS, gt=False)
    loop_cases._run(world, tmp_path / "paper", monkeypatch, gt=False)
    assert seen and all(f.endswith("autoqvis/eval/analysis.py") or f.endswith("tests/test_selftrain_loop.py") for f in seen), seen
    assert any(f.endswith("autoqvis/eval/analysis.py") for f in seen)
    for k in range(3):
        a, b = (tmp_path / d / f"round_{k}" / "pseudo_labels.json" for d in ("with_gt", "no_gt"))
        assert a.read_bytes() == b.read_bytes(), k
    plus, paper = (json.loads((tmp_path / d / "round_0" / "stats.json").read_text()) for d in ("no_gt", "paper"))
    assert paper["tau"] == 0.75 and plus["tau"] > 0.75  # the round's tau from Q's quantile
    assert plus["selected_frames"] != paper["selected_frames"]


def test_hold_share_keeps_round_0s_share_in_later_rounds(tmp_path, monkeypatch):
    """The stub model scores every frame higher from round 1 on (its round-0 dip at frame 1 is gone): the paper's
    fixed tau then keeps a larger share; tau_hold_share raises round 1's tau to keep round 0's share."""
    import json

    import test_selftrain_loop as loop_cases
    from autoqvis.data.toyworld import write_toyworld

    world = tmp_path / "toy"
    write_toyworld(world, size="small", seed=0)
    loop_cases._run(world, tmp_path / "hold", monkeypatch, ["selftrain.tau_hold_share=true"], gt=False)
    loop_cases._run(world, tmp_path / "paper", monkeypatch, gt=False)
    stats = {d: [json.loads((tmp_path / d / f"round_{k}" / "stats.json").read_text()) for k in range(2)]
             for d in ("hold", "paper")}
    assert stats["paper"][0]["share_at_tau"] == stats["hold"][0]["share_at_tau"] < stats["paper"][1]["share_at_tau"]
    assert stats["hold"][0]["tau"] == 0.75 and stats["hold"][1]["tau"] > 0.75
    assert stats["hold"][1]["share_at_tau"] < stats["paper"][1]["share_at_tau"]
    assert abs(stats["hold"][1]["share_at_tau"] - stats["hold"][0]["share_at_tau"]) < 0.15


@pytest.mark.parametrize("plus, paper", [("ytvis19_r50_plus", "ytvis19_r50"), ("toy_plus", "toy")])
def test_plus_configs_change_only_the_switches(plus, paper):
    a, b = load_config(plus).to_dict(), load_config(paper).to_dict()
    changed = {(s, k) for s in a if isinstance(a[s], dict) for k in a[s] if a[s][k] != b[s][k]}
    assert changed == {("selftrain", "quality_smooth_radius"), ("selftrain", "track_tau_low"),
                       ("selftrain", "tau_hold_share"), ("selftrain", "ema_decay")}
    assert a["name"] == plus
