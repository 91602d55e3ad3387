"""The model against the official code's numbers (tests/reference/tiny and autoqvis_tiny)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autoqvis import load_checkpoint, load_config
from autoqvis.model.vis_model import build_model, postprocess_video

ATOL = RTOL = 1e-4


def _load(ref, name):
    return torch.load(ref / name, weights_only=True)


def _keys(path):
    return [line.split("\t")[0] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(reference_dir, repo_root):
    model = build_model(load_config(repo_root / "configs" / "reference_tiny.yaml")).eval()
    report = load_checkpoint(model, reference_dir / "tiny" / "state_dict.pt", strict=True)
    assert len(report.loaded) == 557 and report.ignored == ["criterion.empty_weight"]
    return model


@pytest.fixture(scope="module")
def autoqvis_tiny(reference_dir, repo_root, tmp_path_factory):
    model = build_model(load_config(repo_root / "configs" / "reference_autoqvis_tiny.yaml")).eval()
    ref = reference_dir / "autoqvis_tiny"
    state = {**_load(reference_dir, "tiny/state_dict.pt"), **_load(ref, "predictor_state_dict.pt")}
    order = _keys(ref / "keys.tsv")
    path = tmp_path_factory.mktemp("aq") / "state_dict.pt"
    torch.save({k: state[k] for k in order}, path)
    load_checkpoint(model, path, strict=True)
    return model


def _close(ours, theirs, what):
    assert ours.shape == theirs.shape, what
    diff = (ours - theirs).abs().max().item()
    assert torch.allclose(ours, theirs, atol=ATOL, rtol=RTOL), f"{what}: max abs diff {diff}"


def _by_query(result_indices, *tensors):
    order = torch.argsort(result_indices)
    return [t[order] for t in tensors]


def _assert_masks_match(ours, theirs, logits, what):
    """Equal except where our own upsampled logit is within 1e-4 of 0 (README tolerance)."""
    unsure = logits.abs() < 1e-4
    differ = ours != theirs
    assert not (differ & ~unsure).any(), f"{what}: {int((differ & ~unsure).sum())} confident pixels differ"
    assert differ.float().mean() < 1e-3


def _final_logits(model_out, queries, padded, image, out_size):
    m = F.interpolate(model_out["pred_masks"][queries], size=padded, mode="bilinear", align_corners=False)
    m = m[:, :, : image[0], : image[1]]
    return F.interpolate(m, size=out_size, mode="bilinear", align_corners=False)


def test_state_dict_names_and_order_are_detectrons(tiny, autoqvis_tiny, reference_dir):
    assert list(tiny.state_dict()) == _keys(reference_dir / "tiny" / "keys.tsv")
    assert list(autoqvis_tiny.state_dict()) == _keys(reference_dir / "autoqvis_tiny" / "keys.tsv")
    shapes = {k: "x".join(map(str, v.shape)) for k, v in tiny.state_dict().items()}
    for line in (reference_dir / "tiny" / "keys.tsv").read_text().splitlines():
        key, shape, _ = line.split("\t")
        assert shapes[key] == shape, key


def test_intermediates_match(tiny, reference_dir):
    inp, inter = _load(reference_dir, "tiny/input.pt"), _load(reference_dir, "tiny/intermediates.pt")
    with torch.no_grad():
        images, padded = tiny.preprocess([inp["frames"]])
        feats = tiny.backbone(images)
        mask_features, multi_scale = tiny.sem_seg_head.pixel_decoder(feats)
    assert padded == (96, 128)
    _close(images, inter["images_normalized_padded"], "normalised input")
    for k in ("res2", "res3", "res4", "res5"):
        _close(feats[k], inter["backbone"][k], k)
    _close(mask_features, inter["pixel_decoder_mask_features"], "mask_features")
    for i, (a, b) in enumerate(zip(multi_scale, inter["pixel_decoder_multi_scale_features"])):
        _close(a, b, f"multi-scale {i}")


def test_raw_outputs_and_all_aux_outputs_match(tiny, reference_dir):
    inp, ref = _load(reference_dir, "tiny/input.pt"), _load(reference_dir, "tiny/outputs.pt")
    with torch.no_grad():
        out = tiny.forward_raw(inp["frames"], with_aux=True)
    _close(out["pred_logits"], ref["pred_logits"][0], "pred_logits")
    _close(out["pred_masks"], ref["pred_masks"][0], "pred_masks")
    assert len(out["aux_outputs"]) == len(ref["aux_outputs"]) == 9
    for i, (a, b) in enumerate(zip(out["aux_outputs"], ref["aux_outputs"])):
        _close(a["pred_logits"], b["pred_logits"][0], f"aux {i} logits")
        _close(a["pred_masks"], b["pred_masks"][0], f"aux {i} masks")
    assert "pred_maskiou" not in out


@pytest.mark.parametrize("clip", ["input", "input_pad"])
def test_inference_matches_per_query(tiny, reference_dir, clip):
    inp = _load(reference_dir, f"tiny/{clip}.pt")
    ref = _load(reference_dir, f"tiny/{clip.replace('input', 'outputs')}.pt")
    out_size = (inp["height"], inp["width"])
    with torch.no_grad():
        raw = tiny.forward_raw(inp["frames"])
        res = tiny.inference(inp["frames"], out_size=out_size)
    _close(raw["pred_logits"], ref["pred_logits"][0], "pred_logits")
    _close(raw["pred_masks"], ref["pred_masks"][0], "pred_masks")
    assert res["masks"].shape == ref["inference"]["pred_masks"].shape
    assert torch.all(res["scores"][:-1] >= res["scores"][1:])  # our order: descending
    ours = _by_query(res["query_indices"], res["query_indices"], res["scores"], res["masks"])
    theirs = _by_query(ref["inference"]["query_indices"], ref["inference"]["query_indices"],
                       ref["inference"]["pred_scores"], ref["inference"]["pred_masks"])
    assert torch.equal(ours[0], theirs[0])
    assert torch.allclose(ours[1], theirs[1], atol=1e-5)
    logits = _final_logits(raw, ours[0], tuple(ref["padded_input_size"]), tuple(ref["image_size"]), out_size)
    _assert_masks_match(ours[2], theirs[2], logits, clip)


def test_postprocessing_alone_selects_the_official_top10(reference_dir):
    q = _load(reference_dir, "tiny/inference_video_q20.pt")
    out_size = (q["output_height"], q["output_width"])
    res = postprocess_video(q["pred_cls"], q["pred_masks"], tuple(q["img_size"]), out_size, topk=10)
    ref = q["result"]
    ours = _by_query(res["query_indices"], res["query_indices"], res["scores"], res["masks"], res["labels"])
    theirs = _by_query(ref["query_indices"], ref["query_indices"], ref["pred_scores"], ref["pred_masks"],
                       ref["pred_labels"])
    assert torch.equal(ours[0], theirs[0])
    assert torch.allclose(ours[1], theirs[1], atol=1e-6)
    assert torch.equal(ours[2], theirs[2])
    assert torch.equal(ours[3], theirs[3])
    assert res["masks"].shape == (10, 2, 28, 42) and res["pred_iou"] is None


def test_autoqvis_quality_predictions_match(autoqvis_tiny, reference_dir):
    inp, ref = _load(reference_dir, "autoqvis_tiny/input.pt"), _load(reference_dir, "autoqvis_tiny/outputs.pt")
    with torch.no_grad():
        out = autoqvis_tiny.forward_raw(inp["frames"])
    _close(out["pred_logits"], ref["pred_logits"][0], "pred_logits")
    _close(out["pred_masks"], ref["pred_masks"][0], "pred_masks")
    assert torch.allclose(out["pred_maskiou"], ref["pred_maskiou"][0, :, :, 0], atol=2e-4, rtol=1e-4)


def test_autoqvis_aux_quality_in_training_mode(autoqvis_tiny, reference_dir):
    """Training mode scores every prediction (reference: decoder in training mode, dropout irrelevant)."""
    inp, ref = _load(reference_dir, "autoqvis_tiny/input.pt"), _load(reference_dir, "autoqvis_tiny/outputs.pt")
    autoqvis_tiny.sem_seg_head.predictor.train()
    try:
        with torch.no_grad():
            out = autoqvis_tiny.forward_raw(inp["frames"], with_aux=True)
    finally:
        autoqvis_tiny.eval()
    assert len(out["aux_outputs"]) == 9
    for i, (a, b) in enumerate(zip(out["aux_outputs"], ref["aux_outputs"])):
        _close(a["pred_masks"], b["pred_masks"][0], f"aux {i} masks")
        assert torch.allclose(a["pred_maskiou"], b["pred_maskiou"][0, :, :, 0], atol=2e-4, rtol=1e-4), i


def test_autoqvis_inference_order_and_clamped_quality(autoqvis_tiny, reference_dir):
    inp, ref = _load(reference_dir, "autoqvis_tiny/input.pt"), _load(reference_dir, "autoqvis_tiny/outputs.pt")
    res = autoqvis_tiny.inference(inp["frames"], out_size=(inp["height"], inp["width"]))
    inf = ref["inference"]
    assert res["query_indices"].tolist() == inf["query_indices"].tolist() == [9, 3, 1, 0, 4, 8, 7, 6, 2, 5]
    assert torch.allclose(res["scores"], inf["pred_scores"], atol=1e-5)
    assert torch.allclose(res["pred_iou"], inf["pred_ious"][:, :, 0], atol=2e-4)
    assert res["pred_iou"].min() == 0.0 and res["pred_iou"].max() == 1.0  # the clamp is exercised
    assert (res["masks"] != inf["pred_masks"]).float().mean() < 1e-3
