"""Quality predictor: the authors' numbers on the tiny reference, shapes, init, and freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoqvis.core.errors import AutoQVISError
from autoqvis.model.criterion import build_criterion
from autoqvis.model.quality import (
    QualityPredictor,
    freeze_quality_predictor,
    pool_mask_logits,
    resize_features,
    resize_mask_logits,
)

PREFIX = "sem_seg_head.predictor.maskiou_feature_extractor."


@pytest.fixture(scope="module")
def ref(reference_dir):
    root = reference_dir / "autoqvis_tiny"
    load = lambda name: torch.load(root / name, weights_only=True)  # noqa: E731
    state = {k[len(PREFIX):]: v for k, v in load("predictor_state_dict.pt").items()}
    predictor = QualityPredictor(64, 64, 256)
    predictor.load_state_dict(state)  # strict: names and shapes are the authors'
    return predictor.eval(), load("intermediates.pt"), load("outputs.pt")


def test_matches_reference_every_layer(ref):
    predictor, inter, out = ref
    x0 = inter["pixel_decoder_multi_scale_features_0"]  # (T=3, 64, 3, 4)
    layers = [out, *out["aux_outputs"]]
    # all 10 layers in one batched call: layer i is clip i, every clip sees the same x[0]
    masks = torch.cat([layer["pred_masks"] for layer in layers])  # (10, Q=10, T=3, 24, 32)
    expected = torch.cat([layer["pred_maskiou"][..., 0] for layer in layers])  # (10, 10, 3)
    with torch.no_grad():
        got = predictor(x0.repeat(len(layers), 1, 1, 1), masks)
        single = predictor(x0, out["pred_masks"][0])  # the one-clip form: (Q, T)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)
    assert single.shape == (10, 3)
    torch.testing.assert_close(single, out["pred_maskiou"][0, :, :, 0], atol=2e-4, rtol=0)
    assert single.min() < 0 and single.max() > 1  # raw: no clamp inside the predictor


def test_matches_reference_intermediates(ref):
    predictor, inter, out = ref
    x0, masks = inter["pixel_decoder_multi_scale_features_0"], out["pred_masks"][0]
    torch.testing.assert_close(resize_features(x0), inter["predictor_feature_14x14"], atol=1e-4, rtol=0)
    torch.testing.assert_close(resize_mask_logits(masks), inter["predictor_mask_28x28"], atol=1e-4, rtol=0)
    pooled = pool_mask_logits(masks[None])[0, :, :, 0]
    torch.testing.assert_close(pooled, inter["predictor_mask_pool_14x14"], atol=1e-4, rtol=0)
    seen = {}
    hooks = [
        predictor.maskiou_fcn4.register_forward_hook(lambda m, i, o: seen.__setitem__("fcn4", o.relu())),
        predictor.maskiou_fc3.register_forward_pre_hook(lambda m, i: seen.__setitem__("fc3_in", i[0])),
    ]
    with torch.no_grad():
        predictor(x0, masks)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["fcn4"].view(10, 3, 64, 7, 7), inter["predictor_fcn4_output_relu"], atol=1e-4, rtol=0)
    torch.testing.assert_close(seen["fc3_in"].view(10, 3, 256), inter["predictor_fc3_input"], atol=1e-4, rtol=0)


def test_state_dict_names_and_r50_shapes(reference_dir):
    expected = {}
    for line in (reference_dir / "autoqvis_tiny" / "keys_r50.tsv").read_text().splitlines():
        key, shape, _ = line.split("\t")
        if key.startswith(PREFIX):
            expected[key[len(PREFIX):]] = shape
    got = {k: "x".join(map(str, v.shape)) for k, v in QualityPredictor(256, 256, 1024).state_dict().items()}
    assert len(got) == 14
    assert got == expected and list(got) == list(expected)  # same names, order and shapes as the R50 release
    assert got["maskiou_fcn1.weight"] == "256x257x3x3" and got["maskiou_fc1.weight"] == "1024x12544"


def test_init_and_batched_shapes():
    torch.manual_seed(0)
    predictor = QualityPredictor(16, 8, 32)
    assert all(not getattr(predictor, f"maskiou_fcn{i}").bias.detach().any() for i in range(1, 5))
    assert 0.005 < float(predictor.maskiou_fc3.weight.detach().std()) < 0.015
    feats = torch.randn(2 * 3, 16, 5, 7)  # B=2 clips of T=3 frames, detectron2's (B*T, C, h, w) layout
    masks = torch.randn(2, 4, 3, 20, 28, requires_grad=True)
    out = predictor(feats, masks)
    assert out.shape == (2, 4, 3)
    assert float(out.detach().abs().max()) < 0.5  # small output init: predictions start near 0
    # clip b of the batch equals the clip alone: rows are ordered (b, q, t)
    torch.testing.assert_close(out[1], predictor(feats[3:], masks[1]), atol=1e-6, rtol=0)
    out.sum().backward()  # the raw logits are an input, not detached: the quality loss reaches the mask branch
    assert float(masks.grad.abs().sum()) > 0


def test_bad_shapes_raise():
    predictor = QualityPredictor(16, 8, 32)
    with pytest.raises(AutoQVISError, match="features"):
        predictor(torch.randn(4, 16, 3, 4), torch.randn(2, 3, 8, 8))  # 4 feature maps for T=3
    with pytest.raises(AutoQVISError, match="channels"):
        predictor(torch.randn(3, 15, 3, 4), torch.randn(2, 3, 8, 8))


def _train(model, optimizer, steps, batch):
    for _ in range(steps):
        loss = sum(model.forward_train(batch).values())  # weighted losses
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_freezing_really_freezes():
    from autoqvis import build_model, load_config

    cfg = load_config("toy", ["model.num_queries=4", "model.dec_layers=2", "model.pixel_decoder.enc_layers=1",
                              "loss.num_points=256"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    predictor = model.sem_seg_head.predictor.maskiou_feature_extractor
    masks = torch.zeros(1, 2, 64, 64, dtype=torch.bool)
    masks[0, :, 10:40, 12:44] = True
    batch = [{"frames": torch.rand(2, 3, 64, 64) * 255, "masks": masks, "labels": torch.zeros(1, dtype=torch.int64)}]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    before = _snapshot(predictor)
    _train(model, optimizer, 1, batch)  # unfrozen: the predictor learns (so the test can fail)
    assert any(not torch.equal(before[k], v) for k, v in predictor.state_dict().items())

    assert freeze_quality_predictor(model) == 14
    assert all(p.grad is None and not p.requires_grad for p in predictor.parameters())
    model.criterion = build_criterion(cfg.loss, 1, cfg.model.dec_layers, quality=False)
    frozen, others = _snapshot(predictor), _snapshot(model.sem_seg_head.predictor.mask_embed)
    # the optimizer still holds the predictor, with Adam momentum and weight decay: it must skip it
    _train(model, optimizer, 2, batch)
    assert all(torch.equal(frozen[k], v) for k, v in predictor.state_dict().items())
    assert any(not torch.equal(others[k], v) for k, v in model.sem_seg_head.predictor.mask_embed.state_dict().items())


def test_freeze_without_predictor_raises():
    with pytest.raises(AutoQVISError, match="no quality predictor"):
        freeze_quality_predictor(nn.Linear(2, 2))
