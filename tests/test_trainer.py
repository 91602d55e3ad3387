"""train_loop on a small stand-in model: losses fall, exact resume, non-finite loss, freezing, groups."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autoqvis.core.config import TrainConfig
from autoqvis.data.sampler import BalancedBatches
from autoqvis.engine import trainer
from autoqvis.engine.trainer import find_last_checkpoint, lr_factor, param_groups, train_loop
from autoqvis.core.errors import AutoQVISError
from autoqvis.core.torch_io import safe_torch_load


class SquareClips:
    """Clips of one bright square on a dark background, at a random place (a learnable task)."""

    def __len__(self) -> int:
        return 100

    def sample(self, rng: np.random.Generator) -> dict:
        t, h, w = 2, 16, 16
        y, x = rng.integers(0, 10, size=2)
        masks = torch.zeros((1, t, h, w), dtype=torch.bool)
        masks[:, :, y : y + 6, x : x + 6] = True
        frames = masks[0].unsqueeze(1).expand(t, 3, h, w).float() * 200 + 20
        return {"frames": frames, "masks": masks, "labels": torch.zeros(1, dtype=torch.int64), "source": "synthetic"}


class StandIn(nn.Module):
    """Stand-in with the trainer-facing surface of the VIS model: ``forward_train`` -> weighted losses.

    It uses dropout and ``torch.rand`` (like the criterion's point sampling) so exact resume is only
    possible if the trainer re-seeds torch every iteration.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU())
        self.query = nn.Embedding(1, 8)
        self.dropout = nn.Dropout(0.2)
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.predictor = nn.Module()
        self.sem_seg_head.predictor.maskiou_feature_extractor = nn.Linear(8, 1)
        self.nan_at_call: int | None = None
        self.calls = 0

    def forward_train(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        self.calls += 1
        mask_loss, quality_loss = 0.0, 0.0
        for s in batch:
            feats = self.dropout(self.backbone(s["frames"] / 255.0))  # (T, 8, H, W)
            logits = torch.einsum("qc,tchw->qthw", self.query.weight, feats)
            points = torch.rand(64) * logits[0].numel()  # random point subset, as the criterion samples
            idx = points.long()
            mask_loss = mask_loss + F.binary_cross_entropy_with_logits(
                logits.flatten()[idx], s["masks"][0].flatten()[idx].float()
            )
            quality = self.sem_seg_head.predictor.maskiou_feature_extractor(feats.mean(dim=(0, 2, 3)))
            quality_loss = quality_loss + (quality - 0.5).pow(2).sum()
        losses = {"loss_mask": 5 * mask_loss / len(batch), "loss_maskiou": quality_loss / len(batch)}
        if self.nan_at_call is not None and self.calls == self.nan_at_call:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses


CFG = TrainConfig(
    max_iter=8,
    batch_size=2,
    lr=1e-2,
    backbone_lr_mult=0.1,
    clip_grad_norm=1.0,
    steps=[6],
    checkpoint_period=4,
    log_period=2,
)


def _model(seed: int = 0) -> StandIn:
    torch.manual_seed(seed)
    return StandIn()


def _batches(seed: int = 0) -> BalancedBatches:
    return BalancedBatches([SquareClips()], [1.0], batch_size=CFG.batch_size, seed=seed)


def _run(tmp, model=None, cfg=CFG, **kw):
    model = model or _model()
    path = train_loop(model, _batches(), cfg, tmp, max_iter=kw.pop("max_iter", cfg.max_iter), progress=False, **kw)
    return model, path


def _log(path):
    return [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]


def test_loss_falls_and_files_are_written(tmp_path):
    cfg = replace(CFG, max_iter=60, checkpoint_period=25, log_period=10, steps=[])
    _, final = _run(tmp_path, cfg=cfg, checkpoint_meta={"round": 2, "config": {"name": "x"}})
    assert final == tmp_path / "model_final.pt"
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == ["model_0000025.pt", "model_0000050.pt", "model_final.pt"]
    ckpt = safe_torch_load(final)
    assert ckpt["iteration"] == 60 and ckpt["round"] == 2 and ckpt["config"] == {"name": "x"}
    assert set(ckpt) == {"model", "optimizer", "iteration", "round", "config"}
    log = _log(tmp_path)
    assert [r["iteration"] for r in log] == [1, 10, 20, 30, 40, 50, 60]
    assert {"loss_mask", "loss_maskiou", "total_loss", "lr", "time", "cpu_time", "data_time"} <= set(log[0])
    assert all(math.isclose(r["total_loss"], r["loss_mask"] + r["loss_maskiou"], rel_tol=1e-5) for r in log)
    assert log[-1]["total_loss"] < 0.7 * log[0]["total_loss"]


def test_resume_continues_exactly(tmp_path):
    straight, _ = _run(tmp_path / "a")  # 8 iterations, checkpoint at 4, lr step at 6
    half, _ = _run(tmp_path / "b", max_iter=4)
    assert not torch.equal(half.backbone[0].weight, straight.backbone[0].weight)
    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    _run(tmp_path / "b", model=resumed, resume=True, cfg=replace(CFG, num_workers=1))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert safe_torch_load(tmp_path / "b" / "model_final.pt")["iteration"] == 8
    assert [r["iteration"] for r in _log(tmp_path / "b")] == [1, 2, 4, 5, 6, 8]


def test_resume_picks_the_latest_checkpoint_and_drops_later_log_lines(tmp_path):
    _run(tmp_path)
    (tmp_path / "model_final.pt").unlink()  # as if the run died after iteration 4's checkpoint
    path, state = find_last_checkpoint(tmp_path)
    assert path.name == "model_0000004.pt" and state["iteration"] == 4
    model = _model(seed=5)
    _run(tmp_path, model=model, resume=True)
    assert [r["iteration"] for r in _log(tmp_path)] == [1, 2, 4, 5, 6, 8]
    # a finished run resumed again trains no further and leaves the final checkpoint alone
    before = (tmp_path / "model_final.pt").stat().st_mtime_ns
    model.calls = 0
    _run(tmp_path, model=model, resume=True)
    assert model.calls == 0 and (tmp_path / "model_final.pt").stat().st_mtime_ns == before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    model.nan_at_call = 6
    with pytest.raises(AutoQVISError, match=r"iteration 6: the loss is not finite \(loss_mask, total_loss\).*model_0000004\.pt"):
        _run(tmp_path, model=model, cfg=replace(CFG, nonfinite_loss="stop"))
    assert not (tmp_path / "model_final.pt").exists()
    good = safe_torch_load(tmp_path / "model_0000004.pt")
    assert good["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in good["model"].values())


def test_non_finite_loss_is_skipped_counted_and_resumes_exactly(tmp_path):
    """train.nonfinite_loss "skip" (the official AMP trainer goes on): iteration 6 makes no update, the log counts
    it, the other iterations see their own batches, and a run resumed before the bad step ends bit for bit equal."""
    assert TrainConfig().nonfinite_loss == "skip"
    straight = _model()
    straight.nan_at_call = 6
    _run(tmp_path / "a", model=straight)
    log = _log(tmp_path / "a")
    assert [r.get("skipped_steps", 0) for r in log] == [0, 0, 0, 1, 0]  # lines at 1, 2, 4, 6, 8
    assert math.isfinite(log[3]["total_loss"])  # the line of 6 averages the losses of iteration 5 alone
    assert all(math.isfinite(r["total_loss"]) for r in log if "total_loss" in r)
    assert all(torch.isfinite(v).all() for v in straight.state_dict().values())
    # the skipped update: iterations 1-5, then 6 without a step, equal 1-5 and 7-8 trained on from there
    six = _model()
    six.nan_at_call = 6
    _run(tmp_path / "six", model=six, max_iter=6)
    five, _ = _run(tmp_path / "five", max_iter=5)
    for a, b in zip(six.state_dict().values(), five.state_dict().values()):
        assert torch.equal(a, b)
    clean, _ = _run(tmp_path / "clean")
    assert not torch.equal(clean.backbone[0].weight, straight.backbone[0].weight)
    half, _ = _run(tmp_path / "b", max_iter=4)
    resumed = _model(seed=123)
    resumed.nan_at_call = 2  # the resumed process's second call is iteration 6
    _run(tmp_path / "b", model=resumed, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_frozen_parameters_stay_untouched(tmp_path):
    model = _model()
    model.backbone[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _run(tmp_path, model=model, cfg=replace(CFG, freeze_quality_predictor=True))
    after = model.state_dict()
    assert torch.equal(after["backbone.0.bias"], before["backbone.0.bias"])
    for k in ("sem_seg_head.predictor.maskiou_feature_extractor.weight", "sem_seg_head.predictor.maskiou_feature_extractor.bias"):
        assert torch.equal(after[k], before[k]), k
    assert not torch.equal(after["backbone.0.weight"], before["backbone.0.weight"])
    assert not torch.equal(after["query.weight"], before["query.weight"])


def test_freezing_a_model_without_predictor_is_an_error(tmp_path):
    model = _model()
    del model.sem_seg_head.predictor.maskiou_feature_extractor
    with pytest.raises(AutoQVISError, match="no quality predictor"):
        _run(tmp_path, model=model, cfg=replace(CFG, freeze_quality_predictor=True))


def test_param_groups_follow_mask2former():
    model = _model()
    groups = param_groups(model, replace(CFG, lr=1.0, backbone_lr_mult=0.1, weight_decay=0.05))
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["backbone.0.weight"])] == (0.1, 0.05)
    assert by_param[id(named["backbone.1.weight"])] == (0.1, 0.0)  # GroupNorm: no decay
    assert by_param[id(named["query.weight"])] == (1.0, 0.0)  # embedding: no decay
    assert by_param[id(named["sem_seg_head.predictor.maskiou_feature_extractor.weight"])] == (1.0, 0.05)
    assert len(by_param) == len(named)


def test_step_schedule_has_no_warmup():
    assert [lr_factor(i, [3, 5], 0.1) for i in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(0, [], 0.1) == 1.0


def test_iteration_seed_is_pure():
    assert trainer.iteration_seed(0, 5, 0) == trainer.iteration_seed(0, 5, 0)
    assert len({trainer.iteration_seed(0, i, r) for i in range(10) for r in range(2)}) == 20


# ------------------------------------------------------------------------------- the real toy model
def _toy_model_and_cfg():
    from autoqvis import build_model
    from autoqvis.core.config import load_config

    cfg = load_config("toy", ["model.num_queries=4", "model.dec_layers=2", "loss.num_points=64"])
    torch.manual_seed(0)
    return build_model(cfg), cfg


class ToyClips(SquareClips):
    """3-frame 64x64 clips with one bright square (what the VIS model expects)."""

    def sample(self, rng: np.random.Generator) -> dict:
        masks = torch.zeros((1, 3, 64, 64), dtype=torch.bool)
        for t in range(3):
            y, x = rng.integers(0, 40, size=2)
            masks[0, t, y : y + 20, x : x + 20] = True
        frames = masks[0].unsqueeze(1).expand(3, 3, 64, 64).float() * 180 + 40
        return {"frames": frames, "masks": masks, "labels": torch.zeros(1, dtype=torch.int64), "source": "synthetic"}


def test_real_toy_model_trains_resumes_exactly_and_reloads(tmp_path):
    from autoqvis import build_model, load_checkpoint

    model, cfg = _toy_model_and_cfg()
    tcfg = replace(cfg.train, max_iter=4, batch_size=1, checkpoint_period=2, log_period=1)
    batches = BalancedBatches([ToyClips()], [1.0], batch_size=1, seed=0)
    train_loop(model, batches, tcfg, tmp_path / "a", max_iter=4, progress=False, checkpoint_meta={"config": cfg.to_dict()})
    log = _log(tmp_path / "a")
    assert len(log) == 4 and all(math.isfinite(r["total_loss"]) for r in log)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_maskiou"} <= set(log[0])

    half, _ = _toy_model_and_cfg()
    train_loop(half, batches, tcfg, tmp_path / "b", max_iter=2, progress=False)
    resumed, _ = _toy_model_and_cfg()
    train_loop(resumed, batches, tcfg, tmp_path / "b", max_iter=4, resume=True, progress=False)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name

    fresh = build_model(cfg)
    load_checkpoint(fresh, str(tmp_path / "a" / "model_final.pt"))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        # BN's batch counter is not loaded (unused with a fixed momentum); every weight and statistic is
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(a, b), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_autocast_on_cuda(tmp_path):
    seen = []

    class Recording(StandIn):
        def forward_train(self, batch):
            seen.append(self.backbone[0](batch[0]["frames"]).dtype)
            return super().forward_train(batch)

    for amp, dtype in ((True, "bfloat16"), (True, "float16"), (False, "float16")):
        seen.clear()
        model = Recording().cuda()
        before = model.backbone[0].weight.detach().clone()
        _run(tmp_path / f"{amp}{dtype}", model=model, cfg=replace(CFG, amp=amp, amp_dtype=dtype, max_iter=3))
        assert set(seen) == {getattr(torch, dtype) if amp else torch.float32}
        assert not torch.equal(before, model.backbone[0].weight)
        state = safe_torch_load(tmp_path / f"{amp}{dtype}" / "model_final.pt")
        assert ("grad_scaler" in state) == (amp and dtype == "float16")
    toy, cfg = _toy_model_and_cfg()
    toy.cuda()
    batches = BalancedBatches([ToyClips()], [1.0], batch_size=2, seed=0)
    train_loop(toy, batches, replace(cfg.train, amp=True, log_period=1), tmp_path / "toy", max_iter=3, progress=False)
    assert all(math.isfinite(r["total_loss"]) for r in _log(tmp_path / "toy"))


# ------------------------------------------------------------------------------------ the command
def test_train_command_end_to_end_on_a_small_toy_world(tmp_path, capsys):
    from autoqvis.cli import main
    from autoqvis.data.toyworld import write_toyworld

    world = tmp_path / "world"
    write_toyworld(world, seed=0, size="small")
    out = tmp_path / "run"
    argv = ["train", "--config", "toy", "--synthetic", str(world / "source.json"), "--out", str(out),
            "--val", str(world / "val.json"), "--max-iters", "2", "--no-progress",
            "model.num_queries=4", "model.dec_layers=2", "loss.num_points=64", "train.log_period=1"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "log.jsonl", "model_final.pt", "metrics.json",
                                              "val_results.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AR10"} and all(-1 <= v <= 1 for v in metrics.values())
    assert "AP50" in capsys.readouterr().out
    ckpt = safe_torch_load(out / "model_final.pt")
    assert ckpt["iteration"] == 2 and ckpt["config"]["model"]["num_queries"] == 4
    assert main(argv) == 2  # the folder holds checkpoints: refuse without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # finished: nothing to train, evaluates again


# ------------------------------------------------------------------------------- AMP dtype (issue 14, item 8)
def test_grad_scaler_is_built_for_float16_on_cuda_only():
    import warnings

    with warnings.catch_warnings():  # a CPU-only torch disables a CUDA scaler with a warning; it is still built
        warnings.simplefilter("ignore")
        assert isinstance(trainer.grad_scaler(TrainConfig(amp_dtype="float16"), torch.device("cuda")), torch.amp.GradScaler)
    assert TrainConfig().amp_dtype == "float16"  # the official detectron2 AMP trainer
    assert trainer.grad_scaler(TrainConfig(amp_dtype="bfloat16"), torch.device("cuda")) is None
    assert trainer.grad_scaler(TrainConfig(amp_dtype="float16", amp=False), torch.device("cuda")) is None
    assert trainer.grad_scaler(TrainConfig(amp_dtype="float16"), torch.device("cpu")) is None  # CPU: no autocast
    with pytest.raises(AutoQVISError, match="train.amp_dtype"):
        TrainConfig(amp_dtype="float32")


def test_amp_dtype_reaches_autocast(tmp_path, monkeypatch):
    import contextlib

    seen = []

    def recording_autocast(device, enabled, dtype=None):
        seen.append(dtype)
        return contextlib.nullcontext()

    monkeypatch.setattr(trainer.fast_path, "autocast", recording_autocast)
    for dtype in ("float16", "bfloat16"):
        seen.clear()
        _run(tmp_path / dtype, cfg=replace(CFG, amp_dtype=dtype, max_iter=2))
        assert seen == [getattr(torch, dtype)] * 2


def test_grad_scaler_steps_clip_unscaled_gradients_and_resume_exactly(tmp_path, monkeypatch):
    """The float16 path on CPU (a CPU GradScaler stands in for the CUDA one): a power-of-two scale is undone
    before clipping, so the weights equal the unscaled run bit for bit; its state rides in the checkpoints."""
    monkeypatch.setattr(trainer, "grad_scaler", lambda cfg, device: torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    scaled, _ = _run(tmp_path / "scaled")
    state = safe_torch_load(tmp_path / "scaled" / "model_final.pt")
    assert state["grad_scaler"]["scale"] == 2.0 ** 12
    monkeypatch.undo()
    plain, _ = _run(tmp_path / "plain")
    assert "grad_scaler" not in safe_torch_load(tmp_path / "plain" / "model_final.pt")
    for a, b in zip(scaled.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
    monkeypatch.setattr(trainer, "grad_scaler", lambda cfg, device: torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    _run(tmp_path / "resumed", max_iter=4)
    monkeypatch.setattr(trainer, "grad_scaler", lambda cfg, device: torch.amp.GradScaler("cpu", init_scale=2.0 ** 3))
    resumed, _ = _run(tmp_path / "resumed", model=_model(1), resume=True)
    for a, b in zip(scaled.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert safe_torch_load(tmp_path / "resumed" / "model_final.pt")["grad_scaler"]["scale"] == 2.0 ** 12  # restored


def test_runtime_switches_reach_the_fast_path(tmp_path, monkeypatch):
    """train_loop applies runtime.* (default: all off) to the model it trains, once per call."""
    from autoqvis.core.config import RuntimeConfig

    seen = []
    monkeypatch.setattr(trainer.fast_path, "prepare", lambda model, cfg: seen.append(cfg) or model)
    _run(tmp_path / "a", max_iter=2)
    _run(tmp_path / "b", max_iter=2, runtime=RuntimeConfig(channels_last=True, compile=True))
    assert seen == [RuntimeConfig(), RuntimeConfig(channels_last=True, compile=True)]
