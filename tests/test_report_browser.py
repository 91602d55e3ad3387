"""``autoqvis report``: the page is self-contained, and in a real headless browser (Debian's ``chromium``) it loads
without a console error, shows the right numbers of videos and rounds, and its tau slider gives the counts of the
PL.json that ``autoqvis select --detections round_k/detections.jsonl --tau T`` (no ``--previous``) writes.

The run folder is written by the real self-training loop (``run_selftrain``) on the small toy world, with the
model's predictions (ground-truth tracks with random per-frame predicted IoU, plus a duplicate for NMS and a
low-score track) and the training replaced by stubs, so it takes seconds. The browser is driven with
``chromium --headless --dump-dom``: the page's script writes its computed state (and any error caught by
``window.onerror`` / ``console.error``) into ``#report-state``. Skipped where no chromium is installed
(``.ci/run`` installs it); AUTOQVIS_CHROMIUM names another binary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from _selftrain_cases import TINY_OVERRIDES
from autoqvis import load_config
from autoqvis.cli import main
from autoqvis.data.ytvis import load_ytvis
from autoqvis.selftrain.curate import SelectionRule
from autoqvis.viz.report_html import round_selection, slider_counts
from _helpers import save_random_checkpoint

TAU = 0.7
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]


def chromium() -> str | None:
    for name in (os.environ.get("AUTOQVIS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


needs_browser = pytest.mark.skipif(chromium() is None, reason="no headless browser: install Debian's `chromium` "
                                   "(apt-get install chromium; .ci/run does) or set AUTOQVIS_CHROMIUM")


def browse(page: Path, fragment: str, tmp: Path, screenshot: Path | None = None) -> dict:
    """Load ``page#fragment`` in headless chromium; the page's computed state (or take a screenshot)."""
    profile = tmp / f"chrome-profile-{len(list(tmp.glob('chrome-profile-*')))}"
    url = page.resolve().as_uri() + "#" + fragment
    mode = [f"--screenshot={screenshot}", "--window-size=1280,1600"] if screenshot else ["--dump-dom"]
    out = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    if screenshot:
        return {}
    found = re.search(r'<pre id="report-state"[^>]*>(.*?)</pre>', out.stdout, re.S)
    assert found, "the page wrote no state (its script did not run)"
    return json.loads(html.unescape(found.group(1)))


# ------------------------------------------------------------------------------------------ the run
def _stub_predictions(gt: dict, seed: int = 0):
    rng = np.random.default_rng(seed)

    def predict_dataset(model, dataset, cfg, *, progress=True, video_ids=None, desc=""):
        truth = gt.get(str(dataset.path), dataset)
        ids = [v.id for v in dataset.videos] if video_ids is None else list(video_ids)
        for vid in ids:
            tracks = [list(a.segmentations) for a in truth.annotations_of(vid)]
            for track in tracks[1::2]:  # every second object missing in a middle frame: empty masks count as marked
                track[len(track) // 2] = None
            segs = tracks + tracks[:1] + tracks[:1]  # a duplicate (NMS drops it) and a low-score copy
            scores = [0.97 - 0.04 * i for i in range(len(tracks))] + ([0.3, 0.1] if tracks else [])
            base = rng.uniform(0.7, 1.0, (len(segs), 1))  # a track's level, then per-frame wobble
            q = np.clip(base + rng.uniform(-0.2, 0.1, (len(segs), dataset.video(vid).length)), 0.0, 1.0)
            yield vid, {"scores": np.array(scores), "segmentations": segs, "pred_iou": q}

    return predict_dataset


def _stub_train_loop(model, batches, cfg, out_dir, *, max_iter, resume=False, init_state=None, desc="",
                     val_fn=None, checkpoint_meta=None, progress=True, runtime=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": {}, "iteration": max_iter}, out_dir / "model_final.pt")
    return out_dir / "model_final.pt"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    import autoqvis.engine.inference as inference
    import autoqvis.engine.trainer as trainer
    from autoqvis.data.toyworld import write_toyworld
    from autoqvis.selftrain.loop import SelfTrainInputs, run_selftrain

    root = tmp_path_factory.mktemp("report")
    write_toyworld(root / "world", size="small", seed=0)
    unlabeled = load_ytvis(root / "world" / "train.json")
    train_gt = load_ytvis(root / "world" / "train_gt.json")
    val = load_ytvis(root / "world" / "val.json")
    mp = pytest.MonkeyPatch()
    mp.setattr(inference, "predict_dataset", _stub_predictions({str(unlabeled.path): train_gt,
                                                                str(val.path): val}))
    mp.setattr(trainer, "train_loop", _stub_train_loop)
    try:
        cfg = load_config("toy", TINY_OVERRIDES + [f"selftrain.tau={TAU}", "selftrain.rounds=1"])
        run_selftrain(cfg, SelfTrainInputs(root / "world" / "source.json", unlabeled, val=val,
                                           unlabeled_gt=train_gt), root / "run", progress=False)
    finally:
        mp.undo()
    assert main(["report", str(root / "run"), "--unlabeled", str(root / "world" / "train.json")]) == 0
    return root / "run"


def python_counts(run: Path, k: int, tau: float) -> dict:
    """What the report computes in Python for round k at ``tau`` (the run's other selection numbers)."""
    rule = dataclasses.replace(SelectionRule.from_config(load_config(run / "config.yaml")), tau=tau)
    return slider_counts(round_selection(run / f"round_{k}" / "detections.jsonl", rule), rule)


SELECT_CASES = ((0, 0.5), (0, 0.83), (1, 0.62))  # (round, tau)


@pytest.fixture(scope="module")
def select_counts(run_dir, tmp_path_factory) -> dict[tuple[int, float], dict]:
    """{(round, tau): the counts of the PL.json that the real ``autoqvis select`` writes for the round's
    detections at tau without --previous}, read from the raw json (and the candidates from its report line)."""
    out = tmp_path_factory.mktemp("select")
    found = {}
    for k, tau in SELECT_CASES:
        pl = out / f"pl_r{k}_{tau}.json"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["select", "--detections", str(run_dir / f"round_{k}" / "detections.jsonl"),
                         "--unlabeled", str(run_dir.parent / "world" / "train.json"), "--out", str(pl),
                         "--tau", str(tau), "--config", str(run_dir / "config.yaml")]) == 0
        data = json.loads(pl.read_text())
        assert data["info"]["selection"]["tau"] == tau
        candidates = re.search(r"(\d+) with score >= ", printed.getvalue())
        found[k, tau] = {
            "tau": tau, "candidates": int(candidates.group(1)),
            "retained": len(data["annotations"]),
            "selected_frames": sum(1 for a in data["annotations"]
                                   for s, m in zip(a["selected"], a["segmentations"]) if s and m is not None),
            "eligible_videos": sum(1 for v in data["videos"] if v["eligible_frames"]),
            "eligible_frames": sum(len(v["eligible_frames"]) for v in data["videos"])}
    return found


# ----------------------------------------------------------------------------------- without a browser
def test_page_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    assert "default-src 'none'" in page  # the page's own CSP forbids any load but inline code and data: images
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page) and "@import" not in page
    assert page.count("data:image/jpeg;base64,") == sum(v.length for v in load_ytvis(run_dir.parent / "world" /
                                                                                      "train.json").videos)


def test_report_without_unlabeled_names_and_draws_every_video(run_dir, tmp_path):
    """The run keeps its unlabeled videos' index: a report made from the run folder alone names and draws every
    video, also those that never reach a pseudo-label file."""
    from autoqvis.viz.report_html import ReportOptions, selftrain_data

    videos = load_ytvis(run_dir.parent / "world" / "train.json").videos
    data = selftrain_data(run_dir, ReportOptions())
    drawn = {v["id"]: v for v in data["videos"]}
    assert {v.id for v in videos} >= set(drawn)
    for v in videos:
        if v.id in drawn:
            assert drawn[v.id]["name"] == Path(v.file_names[0]).parent.name
            assert len(drawn[v.id]["frames"]) == v.length


def test_slider_rule_at_the_run_tau_is_round_0s_training_set(run_dir):
    """Round 0 fuses with nothing: the slider's rule at the run's tau must give the stored training set."""
    stats = json.loads((run_dir / "round_0" / "stats.json").read_text())
    c = python_counts(run_dir, 0, TAU)
    assert c["retained"] == stats["retained"] == stats["training_set"]["tracks"]
    assert c["selected_frames"] == stats["selected_frames"]
    assert c["eligible_videos"] == stats["training_set"]["eligible_videos"]
    assert c["eligible_frames"] == stats["training_set"]["eligible_frames"]
    # the data must make tau matter (eligible frames need not be monotone in tau: dropping a track can make
    # more frames eligible; here 17 at 0.5, 14 at 0.7, 4 at 0.9)
    lo, hi = python_counts(run_dir, 0, 0.5), python_counts(run_dir, 0, 0.9)
    assert lo["eligible_frames"] > c["eligible_frames"] > hi["eligible_frames"]


def test_python_slider_counts_are_autoqvis_selects(run_dir, select_counts):
    """The report's Python counts (checked by the page on load) = the PL.json of `autoqvis select --tau T`."""
    for (k, tau), expected in select_counts.items():
        assert python_counts(run_dir, k, tau) == expected, (k, tau)
    # tau matters in the cases compared (else the comparison could not tell one tau from another)
    assert select_counts[0, 0.5]["retained"] > select_counts[0, 0.83]["retained"]
    assert select_counts[0, 0.5]["eligible_frames"] != select_counts[0, 0.83]["eligible_frames"]


# ------------------------------------------------------------------------------------------ in a browser
@needs_browser
def test_page_in_headless_chromium(run_dir, tmp_path):
    videos = len(round_selection(run_dir / "round_0" / "detections.jsonl", SelectionRule()).candidates)
    state = browse(run_dir / "report.html", "", tmp_path)
    assert state["errors"] == []
    assert state["kind"] == "selftrain" and state["videos"] == videos and state["rounds"] == 2
    assert state["round"] == 1 and state["tau"] == TAU  # opens on the last round at the run's tau
    assert state["self_check"] == [True, True]  # the page's counts at the run's tau = Python's, every round
    for k, tau in ((0, 0.5), (0, 0.83), (1, 0.62)):
        state = browse(run_dir / "report.html", f"round={k}&tau={tau}&open=2", tmp_path)
        assert state["errors"] == [] and state["round"] == k and state["tau"] == tau
        expected = python_counts(run_dir, k, tau)
        assert state["counts"] == expected, (k, tau)
    assert python_counts(run_dir, 0, 0.5)["eligible_frames"] != python_counts(run_dir, 0, 0.83)["eligible_frames"]


@needs_browser
def test_slider_in_headless_chromium_equals_autoqvis_select(run_dir, select_counts, tmp_path):
    """Issue 18: the slider's numbers at tau (kept tracks, selected frames, eligible videos and frames) are
    the PL.json's of the real `autoqvis select --detections round_k/detections.jsonl --tau T`."""
    for (k, tau), expected in select_counts.items():
        state = browse(run_dir / "report.html", f"round={k}&tau={tau}", tmp_path)
        assert state["errors"] == [] and state["round"] == k and state["tau"] == tau
        assert state["counts"] == expected, (k, tau)


@needs_browser
def test_screenshot_shows_a_drawn_page(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    browse(run_dir / "report.html", "round=0&open=1", tmp_path, screenshot=shot)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 1600)
        pixels = np.asarray(im.convert("RGB"))
    # not a blank page: many distinct colours (frames, masks, plots), and the page background at the top left
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    assert tuple(pixels[2, 2]) == (250, 250, 250)


@needs_browser
def test_predict_report_in_headless_chromium(tmp_path):
    from autoqvis.data.video_io import write_mp4

    ckpt = save_random_checkpoint(tmp_path / "toy.pt")
    frames = np.full((5, 48, 64, 3), 90, np.uint8)
    for t in range(5):
        frames[t, 10:30, 4 + 5 * t:24 + 5 * t] = (220, 40, 40)
    for name in ("a", "b"):
        write_mp4(tmp_path / "in" / f"{name}.mp4", frames, fps=5)
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out",
                 str(tmp_path / "pred"), "--no-overlays", "--overlay-threshold", "0", "--device", "cpu"]) == 0
    page = tmp_path / "pred" / "report.html"
    assert page.exists() and "predictions pred" in page.read_text()[:2000]
    state = browse(page, "open=2", tmp_path)
    assert state == {"kind": "predict", "videos": 2, "rounds": 0, "round": None, "tau": None, "errors": []}
