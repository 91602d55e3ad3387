"""Model parts on small hand-checked cases: backbone, position encodings, config plumbing, training forward,
inference output format."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autoqvis import load_config
from autoqvis.core.errors import AutoQVISError
from autoqvis.model import vis_model
from autoqvis.model.backbone import FrozenBatchNorm2d, ResNet
from autoqvis.model.position_encoding import sine_position_2d, sine_position_3d
from autoqvis.model.vis_model import build_model

MICRO = [
    "model.backbone.depth=18", "model.backbone.stem_out_channels=32", "model.backbone.res2_out_channels=32",
    "model.pixel_decoder.conv_dim=32", "model.pixel_decoder.mask_dim=32", "model.pixel_decoder.enc_layers=1",
    "model.pixel_decoder.enc_dim_feedforward=64", "model.pixel_decoder.enc_nheads=4", "model.hidden_dim=32",
    "model.nheads=4", "model.dim_feedforward=64", "model.dec_layers=3", "model.num_queries=6",
    "model.quality.conv_dim=8", "model.quality.fc_dim=16", "loss.num_points=64",
]


def micro(*extra: str):
    return build_model(load_config(None, overrides=MICRO + list(extra)))


# ------------------------------------------------------------------------------------ backbone
@pytest.mark.parametrize("depth,channels", [(18, [32, 64, 128, 256]), (50, [64, 128, 256, 512])])
def test_resnet_stages_strides_and_names(depth, channels):
    net = ResNet(depth, stem_out_channels=16, res2_out_channels=channels[0] if depth == 18 else 64,
                 width_per_group=16)
    out = net(torch.randn(1, 3, 64, 96))
    assert [tuple(out[k].shape) for k in ("res2", "res3", "res4", "res5")] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    names = set(net.state_dict())
    if depth == 50:
        assert {"res2.0.shortcut.weight", "res2.0.conv3.norm.running_var", "res5.2.conv3.weight"} <= names
        assert tuple(net.state_dict()["res3.0.conv2.weight"].shape) == (32, 32, 3, 3)  # stride in the 3x3
        assert net.res3[0].conv2.stride == (2, 2) and net.res3[0].conv1.stride == (1, 1)
    else:
        assert "res2.0.shortcut.weight" in names and "res3.1.shortcut.weight" not in names
        assert not any(k.endswith("conv3.weight") for k in names)
    assert not any("num_batches_tracked" in k or k.endswith(".bias") and "conv" in k and "norm" not in k
                   for k in names)


def test_freeze_at_and_norm_choices():
    net = ResNet(18, 32, 32, freeze_at=2)
    frozen = {n.split(".")[0] for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"stem", "res2"} and all(p.requires_grad for p in net.res3.parameters())
    gn = ResNet(18, 32, 32, norm="GN")
    assert isinstance(gn.stem.conv1.norm, torch.nn.GroupNorm)
    with pytest.raises(AutoQVISError, match="model.backbone.norm"):
        ResNet(18, 32, 32, norm="LN")
    with pytest.raises(AutoQVISError, match="model.backbone.depth"):
        ResNet(27)


def test_frozen_bn_paths_agree_and_ignore_num_batches_tracked():
    bn = FrozenBatchNorm2d(4)
    g = torch.Generator().manual_seed(0)
    state = {"weight": torch.randn(4, generator=g), "bias": torch.randn(4, generator=g),
             "running_mean": torch.randn(4, generator=g), "running_var": torch.rand(4, generator=g) + 0.5,
             "num_batches_tracked": torch.tensor(3)}
    bn.load_state_dict(state)
    x = torch.randn(2, 4, 3, 3, generator=g)
    expected = (x - state["running_mean"].view(1, 4, 1, 1)) / torch.sqrt(state["running_var"].view(1, 4, 1, 1) + 1e-5)
    expected = expected * state["weight"].view(1, 4, 1, 1) + state["bias"].view(1, 4, 1, 1)
    assert torch.allclose(bn(x), expected, atol=1e-5)
    assert torch.allclose(bn(x.clone().requires_grad_()), expected, atol=1e-5)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]


# -------------------------------------------------------------------------- position encodings
def test_sine_2d_by_formula():
    pos = sine_position_2d(3, 5, num_pos_feats=4)
    assert pos.shape == (8, 3, 5)
    y, x = 2, 3  # 0-based row / column: normalised coordinates (i+1)/n * 2pi
    yn, xn = (y + 1) / (3 + 1e-6) * 2 * math.pi, (x + 1) / (5 + 1e-6) * 2 * math.pi
    freq = [10000 ** (2 * (i // 2) / 4) for i in range(4)]
    want_y = [math.sin(yn / freq[0]), math.cos(yn / freq[1]), math.sin(yn / freq[2]), math.cos(yn / freq[3])]
    want_x = [math.sin(xn / freq[0]), math.cos(xn / freq[1]), math.sin(xn / freq[2]), math.cos(xn / freq[3])]
    assert torch.allclose(pos[:, y, x], torch.tensor(want_y + want_x), atol=1e-6)


def test_sine_3d_adds_a_frame_code_to_the_2d_one():
    pos3 = sine_position_3d(4, 3, 5, num_pos_feats=4)
    frame_code = pos3 - sine_position_2d(3, 5, num_pos_feats=4)[None]
    assert pos3.shape == (4, 8, 3, 5)
    assert torch.allclose(frame_code, frame_code[:, :, :1, :1].expand_as(frame_code), atol=1e-6)
    zn = 2 / (4 + 1e-6) * 2 * math.pi  # frame 1 of 4
    assert abs(frame_code[1, 0, 0, 0].item() - math.sin(zn)) < 1e-6
    assert abs(frame_code[1, 3, 0, 0].item() - math.cos(zn / 10000 ** (2 / 8))) < 1e-6


# -------------------------------------------------------------------------- config plumbing
def test_build_model_honours_model_config():
    model = micro("model.num_classes=3", "model.test_topk=4", "model.pre_norm=true", "model.size_divisibility=64",
                  "model.pixel_mean=[0,0,0]", "model.pixel_std=[1,1,1]").eval()
    pred = model.sem_seg_head.predictor
    assert pred.class_embed.out_features == 4 and pred.num_layers == 3 and pred.query_feat.weight.shape == (6, 32)
    assert pred.transformer_ffn_layers[0].linear1.out_features == 64 and pred.num_heads == 4
    assert pred.transformer_ffn_layers[0].pre_norm and len(model.sem_seg_head.pixel_decoder.transformer.encoder.layers) == 1
    clip = torch.rand(2, 3, 40, 70, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        out = model.forward_raw(clip)
        res = model.inference(clip, out_size=(20, 35))
    assert out["pred_logits"].shape == (6, 4) and out["pred_masks"].shape == (6, 2, 16, 32)  # 64x128 padded
    assert out["pred_maskiou"].shape == (6, 2)
    assert res["masks"].shape == (4, 2, 20, 35) and res["labels"].max() <= 2
    scores = torch.softmax(out["pred_logits"], -1)[:, :-1].flatten().sort(descending=True).values[:4]
    assert torch.allclose(res["scores"], scores, atol=1e-5)
    assert torch.equal(model.pixel_std, torch.ones(3, 1, 1))
    with pytest.raises(AutoQVISError, match="model.pixel_decoder.conv_dim"):
        micro("model.pixel_decoder.conv_dim=48")
    plain = micro("model.pixel_decoder.norm=''", "model.backbone.norm=GN", "model.quality.enabled=false")
    assert plain.sem_seg_head.pixel_decoder.layer_1.norm is None and plain.sem_seg_head.pixel_decoder.layer_1.bias is not None
    assert isinstance(plain.backbone.res3[0].conv1.norm, torch.nn.GroupNorm) and not plain.has_quality


def test_inference_chunks_frames_without_changing_results(monkeypatch):
    model = micro().eval()
    clip = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        whole = model.forward_raw(clip)
        monkeypatch.setattr(vis_model, "ENCODE_CHUNK", 2)
        monkeypatch.setattr(vis_model, "RESIZE_CHUNK", 2)
        chunked = model.forward_raw(clip)
        res = model.inference(clip)
    assert torch.allclose(whole["pred_masks"], chunked["pred_masks"], atol=1e-5)
    assert torch.allclose(whole["pred_maskiou"], chunked["pred_maskiou"], atol=1e-5)
    expect = F.interpolate(whole["pred_masks"][res["query_indices"]], size=(64, 64), mode="bilinear") > 0
    assert (res["masks"] != expect).float().mean() < 1e-3
    assert res["pred_iou"].min() >= 0 and res["pred_iou"].max() <= 1


# ------------------------------------------------------------------------------- training
def _sample(h, w, boxes, t=3):
    g = torch.Generator().manual_seed(h * w)
    masks = torch.zeros(len(boxes), t, h, w, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        masks[i, :, y0:y1, x0:x1] = True
    return {"frames": torch.rand(t, 3, h, w, generator=g) * 255, "masks": masks,
            "labels": torch.zeros(len(boxes), dtype=torch.int64), "source": "synthetic"}


def test_forward_train_pads_a_mixed_batch_and_backpropagates():
    model = micro().train()
    batch = [_sample(48, 64, [(5, 20, 5, 30), (30, 40, 10, 20)]), _sample(64, 40, []), _sample(40, 40, [(0, 0, 0, 0)])]
    losses = model.forward_train(batch)
    assert set(losses) == set(model.criterion.weight_dict) and len(losses) == 4 * 4  # ce/mask/dice/maskiou x 4
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name in ("backbone.stem.conv1.weight", "sem_seg_head.pixel_decoder.input_proj.0.0.weight",
                 "sem_seg_head.predictor.query_feat.weight",
                 "sem_seg_head.predictor.maskiou_feature_extractor.maskiou_fc3.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # targets: padded to the batch's 64x64, instances without any pixel dropped
    target = vis_model._pad_target(batch[2], (64, 64), model.device)
    assert target["masks"].shape == (0, 3, 64, 64)
    target = vis_model._pad_target(batch[0], (64, 64), model.device)
    assert target["masks"].shape == (2, 3, 64, 64) and target["masks"][0, 0, 5:20, 5:30].all()
    assert target["masks"][:, :, 48:].sum() == 0


def test_frozen_predictor_gets_no_quality_loss():
    model = micro("train.freeze_quality_predictor=true").train()
    losses = model.forward_train([_sample(32, 32, [(4, 20, 4, 20)])])
    assert not any("maskiou" in k for k in losses) and len(losses) == 3 * 4


def test_forward_train_rejects_bad_samples():
    model = micro().train()
    with pytest.raises(AutoQVISError, match="sample 1: frames has 2 frames"):
        model.forward_train([_sample(32, 32, []), _sample(32, 32, [], t=2)])
    bad = _sample(32, 32, [(1, 5, 1, 5)])
    bad["masks"] = bad["masks"][:, :, :16]
    with pytest.raises(AutoQVISError, match=r"sample 0: masks \(1, 3, 16, 32\)"):
        model.forward_train([bad])
    with pytest.raises(AutoQVISError, match=r"expected a clip \(T, 3, H, W\)"):
        model.forward_raw(torch.zeros(3, 32, 32))
