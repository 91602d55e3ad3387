"""Loading detectron2 checkpoints (real R50 key lists) and our own files; convert-checkpoint."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from autoqvis import load_checkpoint, load_config
from autoqvis.cli import main as cli_main
from autoqvis.core.errors import AutoQVISError
from autoqvis.core.torch_io import atomic_torch_save
from autoqvis.model.checkpoint import read_checkpoint
from autoqvis.model.vis_model import build_model

PREDICTOR = "sem_seg_head.predictor.maskiou_feature_extractor."


def _key_list(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(k, tuple(int(s) for s in shape.split("x")), dtype) for k, shape, dtype in rows]


def _random_state(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape, _ in keys}


@pytest.fixture(scope="module")
def r50(repo_root):
    """The paper's model (with the quality predictor), ~60 M parameters."""
    return build_model(load_config(repo_root / "configs" / "ytvis19_r50.yaml"))


def test_videocutler_r50_checkpoint_lands_intact(r50, reference_dir, tmp_path):
    keys = _key_list(reference_dir / "videocutler_r50_keys.tsv")
    assert len(keys) == 558 and all(d == "float32" for *_, d in keys)
    state = _random_state(keys)
    path = tmp_path / "videocutler_m2f_rn50.pth"
    torch.save({"model": state, "iteration": 79999}, path)
    report = load_checkpoint(r50, path)
    own = r50.state_dict()
    assert report.ignored == ["criterion.empty_weight"] and report.unexpected == []
    assert len(report.loaded) == 557
    for k, v in state.items():
        if k != "criterion.empty_weight":
            assert torch.equal(own[k], v), k
    # what we have beyond VideoCutLER: exactly the 14 tensors of the quality predictor
    assert len(report.missing) == 14 and all(k.startswith(PREDICTOR) for k in report.missing)
    assert report.meta == {"iteration": 79999}


def test_autoqvis_r50_checkpoint_bare_dict_loads_every_tensor(r50, reference_dir, tmp_path):
    keys = _key_list(reference_dir / "autoqvis_tiny" / "keys_r50.tsv")
    assert len(keys) == 572
    state = _random_state(keys, seed=1)
    path = tmp_path / "autoqvis_r50.pth"
    torch.save(state, path)  # bare state dict
    report = load_checkpoint(r50, path, strict=True)
    assert len(report.loaded) == 571 and report.missing == [] and report.unexpected == []
    own = r50.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in report.loaded)
    # same names in the same order as the official model (criterion.empty_weight included)
    assert list(own) == [k for k, *_ in keys]


def test_without_predictor_the_model_is_videocutler_key_for_key(reference_dir, repo_root):
    cfg = load_config(repo_root / "configs" / "ytvis19_r50.yaml", overrides=["model.quality.enabled=false"])
    model = build_model(cfg)
    keys = _key_list(reference_dir / "videocutler_r50_keys.tsv")
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [(k, s) for k, s, _ in keys]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 43_949_954  # videocutler_r50_summary.json


def _tiny_model(repo_root, *overrides):
    return build_model(load_config(repo_root / "configs" / "reference_tiny.yaml", overrides=list(overrides)))


def test_shape_mismatch_is_refused_with_the_keys(repo_root, reference_dir, tmp_path):
    model = _tiny_model(repo_root, "model.num_queries=12")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AutoQVISError, match=r"2 tensors do not fit.*query_feat\.weight \(file \(10, 64\), model \(12, 64\)\)"):
        load_checkpoint(model, reference_dir / "tiny" / "state_dict.pt")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded


def test_wrong_or_unreadable_files_are_clear_errors(repo_root, tmp_path):
    model = _tiny_model(repo_root)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(AutoQVISError, match="empty"):
        load_checkpoint(model, tmp_path / "empty.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(AutoQVISError, match="no entry matches the model"):
        load_checkpoint(model, tmp_path / "other.pth")
    with pytest.raises(AutoQVISError, match="not found"):
        load_checkpoint(model, tmp_path / "missing.pth")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"x": print}}, f)
    with pytest.raises(AutoQVISError, match="refus"):
        load_checkpoint(model, tmp_path / "evil.pkl")


def test_detectron2_pkl_with_numpy_arrays_and_ddp_prefix(repo_root, reference_dir, tmp_path):
    state = torch.load(reference_dir / "tiny" / "state_dict.pt", weights_only=True)
    payload = {"model": {f"module.{k}": v.numpy() for k, v in state.items()}, "__author__": "d2"}
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    model = _tiny_model(repo_root)
    report = load_checkpoint(model, tmp_path / "m.pkl", strict=True)
    assert len(report.loaded) == 557
    w = "sem_seg_head.predictor.query_feat.weight"
    assert np.array_equal(model.state_dict()[w].numpy(), state[w].numpy())


def test_backbone_only_pkl_gets_the_backbone_prefix(repo_root, reference_dir, tmp_path):
    state = torch.load(reference_dir / "tiny" / "state_dict.pt", weights_only=True)
    backbone = {k[len("backbone."):]: v.numpy() for k, v in state.items() if k.startswith("backbone.")}
    backbone["stem.conv1.norm.num_batches_tracked"] = np.array(0)
    with open(tmp_path / "dino_d2.pkl", "wb") as f:
        pickle.dump({"model": backbone, "matching_heuristics": True}, f)
    report = load_checkpoint(_tiny_model(repo_root), tmp_path / "dino_d2.pkl")
    assert len(report.loaded) == 265 and all(k.startswith("backbone.") for k in report.loaded)
    assert report.ignored == ["stem.conv1.norm.num_batches_tracked"]
    assert all(k.startswith("sem_seg_head.") for k in report.missing)


def test_our_checkpoint_round_trip(repo_root, tmp_path):
    a = _tiny_model(repo_root)
    torch.manual_seed(5)
    b = _tiny_model(repo_root)
    atomic_torch_save({"model": a.state_dict(), "optimizer": None, "iteration": 7, "round": 1,
                       "config": {"name": "x"}}, tmp_path / "ours.pt")
    report = load_checkpoint(b, tmp_path / "ours.pt", strict=True)
    assert report.meta == {"iteration": 7, "round": 1, "config": {"name": "x"}}
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_convert_checkpoint_cli(repo_root, reference_dir, tmp_path, capsys):
    src = reference_dir / "tiny" / "state_dict.pt"
    out = tmp_path / "conv.pt"
    cfg = str(repo_root / "configs" / "reference_tiny.yaml")
    assert cli_main(["convert-checkpoint", str(src), str(out), "--config", cfg]) == 0
    assert "loaded 557 tensors" in capsys.readouterr().out
    state, meta = read_checkpoint(out)
    assert len(state) == 557 and "criterion.empty_weight" not in state
    assert meta["iteration"] == 0 and meta["config"]["name"] == "reference_tiny"
    # a config that does not fit: one line, exit code 2, no output file
    bad = tmp_path / "bad.pt"
    assert cli_main(["convert-checkpoint", str(src), str(bad), "model.hidden_dim=32", "--config", cfg]) == 2
    assert "do not fit the model" in capsys.readouterr().err and not bad.exists()
