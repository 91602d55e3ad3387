"""Criterion: the authors' quality target/loss, CE weights, DropLoss, point sampling, deep supervision."""

from __future__ import annotations

import math

import pytest
import torch

from autoqvis.core.config import LossConfig
from autoqvis.core.errors import AutoQVISError
from autoqvis.model import criterion as crit
from autoqvis.model.criterion import VideoSetCriterion, build_criterion, drop_loss_weights, quality_targets
from autoqvis.model.point_sample import point_sample, uncertain_point_coords


class _FixedMatcher:
    """Returns a given assignment (the matcher has its own tests)."""

    def __init__(self, indices):
        self.indices = [(torch.tensor(r, dtype=torch.int64), torch.tensor(c, dtype=torch.int64)) for r, c in indices]

    def __call__(self, outputs, targets):
        return self.indices


def _criterion(losses, matcher, drop_loss=False, num_classes=1):
    return VideoSetCriterion(num_classes, matcher, {}, 0.1, losses, num_points=256, oversample_ratio=3.0,
                             importance_sample_ratio=0.75, drop_loss=drop_loss, drop_loss_iou=0.01)


# ----------------------------------------------------------------------------- quality target / loss
@pytest.fixture(scope="module")
def ref(reference_dir):
    root = reference_dir / "autoqvis_tiny"
    return {n: torch.load(root / f"{n}.pt", weights_only=True) for n in ("maskiou_target", "maskiou_loss_model", "outputs")}


@pytest.mark.parametrize("case", ["hand", "resize_batch"])
def test_quality_target_and_loss_match_authors(ref, case):
    data = ref["maskiou_target"][case]
    target = quality_targets(data["pred_masks"], data["target_masks"])
    torch.testing.assert_close(target, data["iou_targets"], atol=1e-6, rtol=0)
    labels = [torch.zeros(len(m), dtype=torch.int64) for m in data["target_masks"]]
    outputs = {"pred_logits": torch.zeros(*data["pred_masks"].shape[:2], 2), "pred_masks": data["pred_masks"],
               "pred_maskiou": data["pred_maskiou"]}  # (B, Q, T, 1) as the authors' head returns it
    loss = _criterion(["maskiou"], None)(outputs, [{"labels": lb, "masks": m} for lb, m in zip(labels, data["target_masks"])])
    assert math.isclose(float(loss["loss_maskiou"]), float(data["loss"]), rel_tol=1e-6, abs_tol=1e-6)
    if case == "hand":  # the README's exact fractions: 0.34453125 / 8
        exact = torch.tensor([[1, 0.5], [0, 0], [0, 1], [0.5625, 0.125]])
        torch.testing.assert_close(target[0], exact, atol=2e-7, rtol=0)
        assert math.isclose(float(loss["loss_maskiou"]) * 20, 0.861328, abs_tol=1e-6)


def test_quality_loss_every_layer_matches_authors(ref):
    out, model_ref = ref["outputs"], ref["maskiou_loss_model"]
    # contract layout: pred_maskiou (B, Q, T)
    strip = lambda o: {"pred_logits": o["pred_logits"], "pred_masks": o["pred_masks"], "pred_maskiou": o["pred_maskiou"][..., 0]}  # noqa: E731
    outputs = {**strip(out), "aux_outputs": [strip(a) for a in out["aux_outputs"]]}
    targets = [{"labels": torch.zeros(2, dtype=torch.int64), "masks": model_ref["targets_masks"]}]
    losses = _criterion(["maskiou"], None)(outputs, targets)
    assert len(losses) == 10
    for entry in model_ref["per_layer"]:
        assert math.isclose(float(losses[entry["name"]]), entry["loss"], rel_tol=1e-5), entry["name"]
    torch.testing.assert_close(quality_targets(out["pred_masks"], [model_ref["targets_masks"]])[0],
                               model_ref["last_layer_iou_targets"], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------- CE
def test_ce_weights_no_object_down_weighted():
    logits = torch.tensor([[[2.0, 0.0], [0.5, 1.0], [-1.0, 1.0]]])  # (B=1, Q=3, K+1=2)
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 3, 1, 4, 4)}
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 1, 4, 4)}]
    loss = _criterion(["labels"], _FixedMatcher([([1], [0])]))(outputs, targets)["loss_ce"]
    nll = lambda row, c: -torch.log_softmax(row, 0)[c]  # noqa: E731
    # query 1 is the object (weight 1), queries 0 and 2 are no-object (weight 0.1); weighted mean
    expected = (nll(logits[0, 1], 0) + 0.1 * nll(logits[0, 0], 1) + 0.1 * nll(logits[0, 2], 1)) / 1.2
    assert math.isclose(float(loss), float(expected), rel_tol=1e-6)
    assert math.isclose(float(loss), 0.99955, abs_tol=1e-5)


# -------------------------------------------------------------------------------------- DropLoss
def _interior_points(logits, num_points, oversample_ratio, importance_sample_ratio, generator=None):
    # points whose bilinear taps all lie inside the map: a constant map then reads exactly its value
    return 0.1 + 0.8 * torch.rand(logits.shape[0], num_points, 2)


def _drop_case():
    """1 video, T=3, matched pairs q0 -> target 0, q2 -> target 1; constant logit per (query, frame)."""
    p = torch.tensor([[0.5, 0.005, 0.9], [0.5, 0.5, 0.5], [0.011, 0.009, 0.3]])  # sigmoid per (q, t)
    masks = torch.logit(p.double()).float()[None, :, :, None, None].expand(1, 3, 3, 8, 8).clone().requires_grad_()
    tgt = torch.ones(2, 3, 32, 32)
    tgt[0, 2] = 0  # target 0 is absent in frame 2
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_masks": masks}
    return outputs, [{"labels": torch.zeros(2, dtype=torch.int64), "masks": tgt}], p


@pytest.mark.parametrize("drop", [True, False])
def test_droploss_zeroes_exactly_the_pairs_at_or_under_threshold(monkeypatch, drop):
    monkeypatch.setattr(crit, "uncertain_point_coords", _interior_points)
    outputs, targets, p = _drop_case()
    losses = _criterion(["masks"], _FixedMatcher([([0, 2], [0, 1])]), drop_loss=drop)(outputs, targets)
    # soft IoU of a constant prob p vs an all-ones target is p; vs an absent target it is 0
    rows = {(0, 0): 1.0, (0, 1): 1.0, (0, 2): 0.0, (2, 0): 1.0, (2, 1): 1.0, (2, 2): 1.0}  # (q, t) -> label
    kept = {(0, 0), (2, 0), (2, 2)} if drop else set(rows)  # 0.5, 0.011, 0.3 > 0.01; 0.005, 0.009, absent are not
    bce = sum(-math.log(p[q, t]) if rows[q, t] else -math.log(1 - p[q, t]) for q, t in kept)
    dice = sum(1 - (2 * 256 * p[q, t] * rows[q, t] + 1) / (256 * p[q, t] + 256 * rows[q, t] + 1) for q, t in kept)
    assert math.isclose(float(losses["loss_mask"].detach()), float(bce) / 2, rel_tol=1e-5)  # num_masks stays 2
    assert math.isclose(float(losses["loss_dice"].detach()), float(dice) / 2, rel_tol=1e-5)
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    grad = outputs["pred_masks"].grad[0].abs().sum((2, 3))  # (Q, T)
    for q in range(3):
        for t in range(3):
            assert (float(grad[q, t]) > 0) == ((q, t) in kept), (q, t)  # unmatched q1 never gets a gradient


def test_droploss_threshold_is_inclusive():
    labels = torch.ones(3, 100)
    logits = torch.full((3, 100), -100.0)  # sigmoid: 0 up to 4e-44
    logits[0, 0] = 100.0  # sigmoid 1: IoU = 1 / 100, exactly the threshold -> dropped
    logits[1, :2] = 100.0  # 2 / 100 -> kept
    logits[2, :] = 0.0  # 50 / 100 -> kept
    assert drop_loss_weights(logits, labels, 0.01).tolist() == [0.0, 1.0, 1.0]
    assert drop_loss_weights(torch.full((1, 4), -30.0), torch.zeros(1, 4), 0.01).tolist() == [0.0]  # empty vs empty


def test_droploss_with_real_point_sampling():
    torch.manual_seed(0)
    outputs, targets, _ = _drop_case()
    # -20 everywhere: zero padding halves the logit at the map's edge (where importance sampling looks
    # first), still sigmoid(-10) ~ 5e-5, far under the threshold
    outputs["pred_masks"].data[0, 0, 1] = -20.0
    losses = _criterion(["masks"], _FixedMatcher([([0, 2], [0, 1])]), drop_loss=True)(outputs, targets)
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    grad = outputs["pred_masks"].grad[0].abs().sum((2, 3))
    assert float(grad[0, 1]) == 0 and float(grad[0, 2]) == 0  # near-zero overlap; target absent
    assert float(grad[0, 0]) > 0 and float(grad[2, 2]) > 0


# --------------------------------------------------------------------------------- point sampling
def test_point_sampling_deterministic_and_importance_first():
    logits = torch.randn(4, 1, 12, 16) * 4
    draw = lambda seed: uncertain_point_coords(logits, 100, 3.0, 0.75, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = draw(7), draw(7), draw(8)
    assert a.shape == (4, 100, 2) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    torch.manual_seed(5)
    g1 = uncertain_point_coords(logits, 100, 3.0, 0.75)
    torch.manual_seed(5)
    assert torch.equal(g1, uncertain_point_coords(logits, 100, 3.0, 0.75))  # the global seed works too
    # the first 75 points are the 75 most uncertain of the 300 candidates drawn first by the same RNG
    candidates = torch.rand(4, 300, 2, generator=torch.Generator().manual_seed(7))
    cand_unc = -point_sample(logits, candidates)[:, 0].abs()
    chosen_unc = -point_sample(logits, a[:, :75])[:, 0].abs()
    torch.testing.assert_close(chosen_unc.sort(1).values, cand_unc.topk(75, 1).values.sort(1).values)


# ----------------------------------------------------------------------------- deep supervision
def test_every_term_on_every_layer_and_weights(ref):
    out = ref["outputs"]
    layer = lambda o: {"pred_logits": o["pred_logits"], "pred_masks": o["pred_masks"].clone().requires_grad_(),  # noqa: E731
                       "pred_maskiou": o["pred_maskiou"][..., 0].clone().requires_grad_()}
    outputs = {**layer(out), "aux_outputs": [layer(a) for a in out["aux_outputs"]]}
    targets = [{"labels": torch.zeros(2, dtype=torch.int64), "masks": ref["maskiou_loss_model"]["targets_masks"]}]
    cfg = LossConfig(num_points=1024)
    criterion = build_criterion(cfg, num_classes=1, num_aux=9, quality=True)
    torch.manual_seed(0)
    losses = criterion(outputs, targets)
    assert set(losses) == set(criterion.weight_dict) and len(losses) == 40
    assert criterion.weight_dict["loss_ce_0"] == 2.0 and criterion.weight_dict["loss_mask_8"] == 5.0
    assert criterion.weight_dict["loss_dice"] == 5.0 and criterion.weight_dict["loss_maskiou_3"] == 20.0
    assert all(torch.isfinite(v) and float(v.detach()) > 0 for v in losses.values())
    total = sum(losses[k] * criterion.weight_dict[k] for k in losses)
    total.backward()
    assert all(float(o["pred_masks"].grad.abs().sum()) > 0 for o in outputs["aux_outputs"])
    frozen = build_criterion(cfg, num_classes=1, num_aux=9, quality=False, drop_loss=False)
    assert len(frozen.weight_dict) == 30 and "loss_maskiou" not in frozen.weight_dict and not frozen.drop_loss


def test_no_targets_gives_zero_mask_loss_with_graph():
    masks = torch.randn(1, 3, 2, 8, 8, requires_grad=True)
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_masks": masks}
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 32, 32)}]
    losses = _criterion(["labels", "masks"], _FixedMatcher([([], [])]))(outputs, targets)
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0
    assert math.isclose(float(losses["loss_ce"]), math.log(2), rel_tol=1e-6)  # all no-object, logits equal
    losses["loss_mask"].backward()
    assert masks.grad is not None


def test_bad_targets_raise():
    outputs = {"pred_logits": torch.zeros(1, 3, 2), "pred_masks": torch.zeros(1, 3, 2, 8, 8)}
    with pytest.raises(AutoQVISError, match="target 0"):
        _criterion(["labels"], _FixedMatcher([([], [])]))(outputs, [{"labels": torch.zeros(1), "masks": torch.zeros(1, 3, 8, 8)}])
    with pytest.raises(AutoQVISError, match="pred_maskiou"):
        _criterion(["maskiou"], None)(outputs, [{"labels": torch.zeros(0), "masks": torch.zeros(0, 2, 8, 8)}])
