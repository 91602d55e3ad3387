from __future__ import annotations

import pytest

from autoqvis.core.config import Config, load_config
from autoqvis.core.errors import AutoQVISError


def test_defaults_are_paper_values():
    cfg = Config()
    assert cfg.model.num_queries == 100
    assert cfg.model.dec_layers == 9
    assert cfg.selftrain.tau == 0.75
    assert cfg.selftrain.score_threshold == 0.25
    assert cfg.loss.drop_loss_iou == 0.01
    assert cfg.train.max_iter == 8000 and cfg.selftrain.max_iter == 10000


def test_yaml_base_and_overrides(repo_root):
    cfg = load_config(repo_root / "configs" / "reference_autoqvis_tiny.yaml", overrides=["model.num_queries=20"])
    assert cfg.model.num_queries == 20
    assert cfg.model.hidden_dim == 64
    assert cfg.model.quality.enabled and cfg.model.quality.conv_dim == 64
    assert cfg.selftrain.tau == 0.75  # inherited from ytvis19_r50.yaml
    uvo = load_config(repo_root / "configs" / "uvo_dense_r50.yaml")
    assert uvo.selftrain.tau == 0.3


def test_packaged_name_lookup():
    assert load_config("toy").name == "toy"


def test_unknown_key_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  num_querys: 3\n")
    with pytest.raises(AutoQVISError, match=r"model\.num_querys"):
        load_config(p)


def test_wrong_type_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  max_iter: lots\n")
    with pytest.raises(AutoQVISError, match=r"train\.max_iter.*integer"):
        load_config(p)
    with pytest.raises(AutoQVISError, match=r"selftrain\.fusion.*true/false"):
        load_config(None, overrides=["selftrain.fusion=3"])


def test_int_promotes_to_float():
    cfg = load_config(None, overrides=["selftrain.tau=1"])
    assert isinstance(cfg.selftrain.tau, float) and cfg.selftrain.tau == 1.0


def test_exponent_without_dot_is_a_number():
    # YAML 1.1 reads "1e-3" as a string; a user typing train.lr=1e-3 means the number
    assert load_config("toy", overrides=["train.lr=1e-3"]).train.lr == 1e-3
    with pytest.raises(AutoQVISError, match="train.lr: expected a number"):
        load_config("toy", overrides=["train.lr=nan"])
