"""`autoqvis selftrain` end to end on a tiny toy world with the real (tiny) model; a run SIGKILLed during
round 1's training and resumed writes the same round-1 files as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _selftrain_cases import TINY_OVERRIDES

pytestmark = pytest.mark.slow


def _cmd(world: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autoqvis", "selftrain", "--config", "toy",
            "--synthetic", str(world / "source.json"), "--unlabeled", str(world / "train.json"),
            "--out", str(out), "--rounds", "1", "--max-iters", "4", "--no-progress", *extra,
            *TINY_OVERRIDES, "train.checkpoint_period=2", "selftrain.score_threshold=0.0", "selftrain.tau=0.0",
            "selftrain.min_selected_frames=1"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_sigkill_in_round1_training_then_resume_gives_the_same_labels(tmp_path):
    from autoqvis.data.toyworld import write_toyworld

    world = tmp_path / "toy"
    write_toyworld(world, size="small", seed=0)
    a, b = tmp_path / "a", tmp_path / "b"

    done = subprocess.run(_cmd(world, a), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "final model" in done.stdout
    for name in ("pseudo_labels.json", "stats.json", "model.pt", "detections.jsonl"):
        assert (a / "round_1" / name).exists()

    # B starts from A's initial stage, so round 0 is the same; it is killed once round 1 has a checkpoint
    cmd = _cmd(world, b, "--init", str(a / "init" / "model_final.pt"))
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = b / "round_1" / "train" / "model_0000002.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), "round 1 never wrote its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (b / "round_1" / "model.pt").exists()  # killed mid-training, not after

    resumed = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = [json.loads(line) for line in (b / "round_1" / "train" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["iteration"] == 4

    for name in ("round_0/pseudo_labels.json", "round_1/detections.jsonl", "round_1/pseudo_labels.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    dets = [json.loads(line) for line in (a / "round_1" / "detections.jsonl").read_text().splitlines()]
    assert sum(len(r["detections"]) for r in dets) > 0  # the comparison is about real tracks

    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already holds a run" in again.stderr
