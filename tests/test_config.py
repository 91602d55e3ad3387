from __future__ import annotations

import pytest

from autoqvis.core.config import Config, load_config, packaged_config_dir
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


@pytest.mark.parametrize("old,new,value", [
    ("train.compile", "runtime.compile", True),
    ("train.channels_last", "runtime.channels_last", True),
    ("train.amp_inference", "inference.amp_dtype", "bfloat16"),
])
def test_runtime_switches_read_in_both_spellings(tmp_path, old, new, value):
    """The switches that moved out of train.* are read under their old names too, with a deprecation note."""
    section, key = new.split(".")
    as_new = load_config("toy", [f"{new}={str(value).lower()}"])
    with pytest.warns(FutureWarning, match=rf"{old} is deprecated: read as {new}"):
        as_override = load_config("toy", [f"{old}=true"])
    yaml_file = tmp_path / "old.yaml"
    yaml_file.write_text(f"_base_: {packaged_config_dir() / 'toy.yaml'}\n"
                         f"train:\n  {old.split('.')[1]}: true\n")
    with pytest.warns(FutureWarning, match=old):
        from_yaml = load_config(yaml_file)
    for cfg in (as_new, as_override, from_yaml):
        assert getattr(getattr(cfg, section), key) == value
        assert old.split(".")[1] not in cfg.to_dict()["train"]  # written back under the new name only
    off = load_config("toy", [f"{old}=false"])  # a false old switch changes nothing
    assert getattr(getattr(off, section), key) == getattr(getattr(load_config("toy"), section), key)
    with pytest.raises(AutoQVISError, match=old.replace(".", r"\.")):
        load_config("toy", [f"{old}=3"])


def test_stored_configs_map_old_switches_silently():
    import warnings

    from autoqvis.core.config import config_from_dict

    stored = load_config("toy").to_dict()
    del stored["runtime"]
    stored["train"].update(amp_inference=False, channels_last=True, compile=False)  # a checkpoint of before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = config_from_dict(stored, legacy_note=False)
    assert cfg.runtime.channels_last and not cfg.runtime.compile and cfg.inference.amp_dtype == "none"


def test_a_run_saved_with_the_old_switches_resumes(tmp_path):
    """A selftrain run whose config.yaml still has train.compile / train.amp_inference resumes under the new
    names: the speed-only switches may change, the test-pass precision may not."""
    import yaml

    from autoqvis.selftrain.loop import _check_resume_config

    old = load_config("toy").to_dict()
    del old["runtime"]
    old["train"].update(amp_inference=False, channels_last=False, compile=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    _check_resume_config(load_config("toy"), tmp_path)  # compile off now: allowed
    old["train"]["amp_inference"] = True  # it ran its test passes in bf16
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(AutoQVISError, match=r"inference\.amp_dtype: run has 'bfloat16', now 'none'"):
        _check_resume_config(load_config("toy"), tmp_path)
    _check_resume_config(load_config("toy", ["inference.amp_dtype=bfloat16"]), tmp_path)


def test_a_key_given_twice_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a config that says a thing twice is refused instead,
    naming the file, the key and its line; every packaged config reads without such a key."""
    p = tmp_path / "twice.yaml"
    p.write_text("train:\n  lr: 1.0e-3\nmodel:\n  num_queries: 10\ntrain:\n  max_iter: 5\n")
    with pytest.raises(AutoQVISError, match=r"twice\.yaml: not valid YAML \(key 'train' given twice \(line 5\)\)"):
        load_config(p)
    p.write_text("train:\n  lr: 1.0e-3\n  lr: 2.0e-3\n")
    with pytest.raises(AutoQVISError, match=r"key 'lr' given twice \(line 3\)"):
        load_config(p)
    for path in sorted(packaged_config_dir().glob("*.yaml")):
        load_config(path)


def test_selftrain_tau_help_says_the_configs_own_values():
    """`autoqvis selftrain --help` names each preset's tau; it must move with the configs (the toy preset's went
    0.7 -> 0.8), so the help is checked against them rather than trusted."""
    from autoqvis.cli import build_parser

    sub = next(a for a in build_parser("selftrain")._actions if a.dest == "command").choices["selftrain"]
    tau_help = next(a.help for a in sub._actions if "--tau" in a.option_strings)
    for name in ("ytvis19_r50", "toy"):
        st = load_config(name).selftrain
        assert f"{st.tau:g} in {name}" in tau_help, (name, st.tau, tau_help)
    assert f"{load_config('toy').selftrain.tau_without_quality:g} with --no-quality-predictor" in tau_help
