"""``hf://OWNER/REPO/FILE`` checkpoints: resolved by the real ``huggingface_hub.hf_hub_download`` from a pre-filled hub
cache in offline mode (no network, no mock), and config inference from key shapes for files without a config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoqvis import build_model, load_config
from autoqvis.model.checkpoint import infer_config, resolve_checkpoint
from autoqvis.core.errors import AutoQVISError
from _helpers import save_random_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(cache: Path, repo_id: str, filename: str, payload: bytes) -> Path:
    """The layout huggingface_hub itself writes: models--OWNER--REPO/{refs/main, snapshots/<commit>/FILE}."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    target = root / "snapshots" / COMMIT / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return target


def hub_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(tmp_path / "hub"),
            "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture(scope="module")
def toy_bytes(tmp_path_factory) -> bytes:
    path = save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "toy.pt")
    return path.read_bytes()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoqvis", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_hub_name_resolves_from_the_cache_offline(tmp_path, toy_bytes):
    target = fill_hub_cache(tmp_path / "hub", "someone/autoqvis-toy", "weights/toy.pt", toy_bytes)
    code = ("from autoqvis.model.checkpoint import resolve_checkpoint, read_checkpoint;"
            "p = resolve_checkpoint('hf://someone/autoqvis-toy/weights/toy.pt'); s, m = read_checkpoint(p);"
            "print(p); print(len(s), m['config']['name'])")
    out = subprocess.run([sys.executable, "-c", code], env=hub_env(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    path, counts = out.stdout.split("\n")[:2]
    assert Path(path).resolve() == target.resolve()
    n = len(torch.load(target, weights_only=True)["model"])
    assert counts == f"{n} toy"
    # a revision by commit hash reads the same snapshot
    code2 = code.replace("autoqvis-toy/", f"autoqvis-toy@{COMMIT}/", 1)
    out2 = subprocess.run([sys.executable, "-c", code2], env=hub_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert out2.returncode == 0 and out2.stdout.split("\n")[0] == path, out2.stderr


def test_missing_from_the_cache_offline_is_one_line_naming_it(tmp_path, toy_bytes):
    fill_hub_cache(tmp_path / "hub", "someone/autoqvis-toy", "toy.pt", toy_bytes)
    out = _cli(["convert-checkpoint", "hf://someone/autoqvis-toy/other.pt", str(tmp_path / "x.pt")],
               hub_env(tmp_path), tmp_path)
    assert out.returncode != 0 and not (tmp_path / "x.pt").exists()
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert "someone/autoqvis-toy file other.pt is not in the hub cache" in lines[0]
    assert "HF_HUB_OFFLINE is set" in lines[0] and str(tmp_path / "hub") in lines[0]


def test_malformed_hub_names_are_refused():
    for bad in ("hf://owner/repo", "hf://owner//file.pt", "hf:///repo/file.pt"):
        with pytest.raises(AutoQVISError, match="hf://OWNER/REPO/FILE"):
            resolve_checkpoint(bad)
    assert resolve_checkpoint("some/local.pt") == Path("some/local.pt")


def test_convert_checkpoint_from_the_hub_keeps_every_tensor(tmp_path, toy_bytes):
    target = fill_hub_cache(tmp_path / "hub", "someone/autoqvis-toy", "toy.pt", toy_bytes)
    out = _cli(["convert-checkpoint", "hf://someone/autoqvis-toy/toy.pt", str(tmp_path / "conv.pt")],
               hub_env(tmp_path), tmp_path)
    assert out.returncode == 0, out.stderr
    src = torch.load(target, weights_only=True)["model"]
    dst = torch.load(tmp_path / "conv.pt", weights_only=True)
    assert dst["config"]["name"] == "toy"  # the checkpoint's own config, not the R50 default
    kept = {k for k in src if not k.endswith("num_batches_tracked") and not k.startswith("criterion.")}
    assert set(dst["model"]) == kept and all(torch.equal(src[k], dst["model"][k]) for k in kept)


def _meta_state(tsv: Path) -> dict[str, torch.Tensor]:
    state = {}
    for line in tsv.read_text().splitlines():
        key, shape, _ = line.split("\t")
        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
        state[key] = torch.empty(dims, device="meta")
    return state


def test_config_inferred_from_the_keys_of_the_released_r50_files(reference_dir, repo_root):
    videocutler = _meta_state(reference_dir / "videocutler_r50_keys.tsv")
    autoqvis = _meta_state(reference_dir / "autoqvis_tiny" / "keys_r50.tsv")
    assert infer_config(videocutler) == ("ytvis19_r50", False)
    assert infer_config(autoqvis) == ("ytvis19_r50", True)
    # the inferred architecture has exactly the file's keys and shapes (quality predictor included)
    with torch.device("meta"):
        model = build_model(load_config("ytvis19_r50"))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in autoqvis.items()}
    # a file of another architecture (the tiny reference model) is not guessed
    tiny = torch.load(reference_dir / "tiny" / "state_dict.pt", weights_only=True)
    assert infer_config(tiny) is None


def test_predict_infers_the_config_of_a_bare_detectron2_file(tmp_path, repo_root, monkeypatch):
    """A file without a config whose keys are R50 VideoCutLER loads into ytvis19_r50 without the predictor."""
    from autoqvis.model.checkpoint import load_model
    from autoqvis.model.checkpoint import checkpoint_config

    cfg = load_config("ytvis19_r50", ["model.quality.enabled=false"])
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    path = tmp_path / "videocutler_m2f_rn50.pth"
    torch.save({"model": state}, path)
    inferred = checkpoint_config(path)
    assert inferred.name == "ytvis19_r50" and inferred.model.quality.enabled is False
    model, used = load_model(str(path), None, "cpu")
    assert used.model.quality.enabled is False
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


def test_train_and_selftrain_take_hub_names(tmp_path, toy_bytes):
    """train --init and selftrain --init go through the same resolver: a cached file trains, a missing one is the
    hub's one-line error (not 'file not found' on a mangled path)."""
    from autoqvis.data.toyworld import write_toyworld

    write_toyworld(tmp_path / "world", size="small", seed=0)
    fill_hub_cache(tmp_path / "hub", "someone/autoqvis-toy", "toy.pt", toy_bytes)
    env = hub_env(tmp_path)
    ok = _cli(["train", "--config", "toy", "--synthetic", str(tmp_path / "world" / "source.json"), "--init",
               "hf://someone/autoqvis-toy/toy.pt", "--max-iters", "1", "--out", str(tmp_path / "t"), "--no-progress",
               "--device", "cpu", "train.batch_size=1"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "t" / "model_final.pt").exists()
    for cmd in (["train", "--config", "toy", "--synthetic", str(tmp_path / "world" / "source.json"),
                 "--out", str(tmp_path / "t2")],
                ["selftrain", "--config", "toy", "--synthetic", str(tmp_path / "world" / "source.json"),
                 "--unlabeled", str(tmp_path / "world" / "train.json"), "--out", str(tmp_path / "s")]):
        bad = _cli([*cmd, "--init", "hf://someone/autoqvis-toy/missing.pt"], env, tmp_path)
        assert bad.returncode != 0
        assert "someone/autoqvis-toy file missing.pt is not in the hub cache" in bad.stderr, bad.stderr[-2000:]
        assert not (tmp_path / "t2").exists() and not (tmp_path / "s").exists()
