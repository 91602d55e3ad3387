"""The README's "Use a released model on your own video" commands run exactly as written (the download aside):
the hub name resolves from a pre-filled huggingface_hub cache in offline mode, holding a tiny checkpoint under the
released file's name, and every file the README promises is there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from autoqvis.data.video_io import write_mp4
from test_hub_checkpoint import fill_hub_cache
from _helpers import save_random_checkpoint

MARKER = "<!-- readme-test: released-model"


def readme_commands(readme: Path) -> list[str]:
    text = readme.read_text()
    start = text.index(MARKER)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "the README's released-model section has no bash block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_released_model_section_runs_as_written(repo_root, tmp_path):
    commands = readme_commands(repo_root / "README.md")
    assert [c.split()[1] for c in commands] == ["predict", "convert-masks", "report"]
    hub = re.search(r"hf://([^/\s]+)/([^/\s]+)/(\S+)", commands[0])
    assert hub, "the predict line names no hub checkpoint"
    # a tiny stand-in for the released file, where huggingface_hub would have put the download
    ckpt = save_random_checkpoint(tmp_path / "tiny.pt")
    fill_hub_cache(tmp_path / "hub", f"{hub.group(1)}/{hub.group(2)}", hub.group(3), ckpt.read_bytes())
    work = tmp_path / "work"
    frames = np.full((8, 60, 80, 3), 100, np.uint8)
    for t in range(8):
        frames[t, 15:40, 5 + 6 * t:30 + 6 * t] = (210, 50, 40)
    write_mp4(work / "my_video.mp4", frames, fps=12)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "autoqvis").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m autoqvis "$@"\n')
    (shim / "autoqvis").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(tmp_path / "hub"), "CUDA_VISIBLE_DEVICES": ""}
    for line in commands:
        out = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{line}\n{out.stderr[-3000:]}"
    pred = work / "pred"
    results = json.loads((pred / "results.json").read_text())
    assert results and all(len(r["segmentations"]) == 4 for r in results)  # 8 frames at 12 fps -> --fps 6
    assert (pred / "overlays" / "my_video.mp4").stat().st_size > 0
    assert sorted(p.name for p in (pred / "Annotations" / "my_video").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert np.load(pred / "masks" / "my_video.npz")["labels"].shape == (4, 60, 80)
    assert json.loads((pred / "masks_ytvis.json").read_text())["videos"][0]["name"] == "my_video"
    assert "my_video" in (pred / "report.html").read_text()
