"""``report.html``: one self-contained static page to browse a self-training run, a demo or a predict folder.

Everything is inline (CSS, JS, frames as downscaled base64 JPEGs, masks as tiny palette PNGs, plots as PNGs):
the page opens from disk and loads nothing from the network.

Self-training run (``autoqvis.selftrain.loop`` layout): val metrics and pseudo-label counts per round, the
plots, and per unlabeled video the frames with each candidate pseudo-label track of the chosen round drawn,
every (track, frame) marked selected or rejected with its Q, each track's Q over time, and a tau slider.

The slider re-selects the round's own detections (``round_k/detections.jsonl``) WITHOUT fusion with the
previous round: what ``autoqvis select --detections round_k/detections.jsonl --tau T`` (no ``--previous``)
writes. The Python side is that command's code, ``selftrain.curate.select_round`` with an empty previous state:
it runs spatiotemporal NMS in list order and then the score filter (neither depends on tau) and computes
Q = s * IoU; the page gets those candidate tracks with their Q. The script then applies the tau-dependent
rest of the chain: a frame is marked where the mask is empty or Q >= tau (the stored float64 values, exact), a
track is retained with >= ``min_selected_frames`` marked non-empty frames, a frame is eligible where every
retained track is marked, a video trains with >= ``min_eligible_frames`` eligible frames. Rounds >= 1 of the
run did fuse with round k-1's labels; the page shows that stored, fused training set at the run's tau beside
the slider. Round 0 fuses with nothing, so there the slider at the run's tau equals the stored training set.
On load the page checks its own counts at the run's tau against ``slider_counts`` (Python) for every round.

Predict folder (``results.json`` + ``videos.json``): each video scrubbable frame by frame with its tracks and
every track's predicted mask IoU (``pred_iou``, labelled IoU^) over time.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from ..core.config import config_from_dict, load_config
from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_text, read_json
from ..core.tracks import decode_rle
from ..data.video_io import VideoReader
from ..data.ytvis import YTVISDataset, load_results, load_ytvis
from ..selftrain.curate import RoundLabels, SelectionRule, select_round, training_set_counts
from ..selftrain.loop import UNLABELED_INDEX
from ..selftrain.pseudo_label import iter_detection_file
from .overlay import instance_color, label_anchor

METRIC_KEYS = ("AP", "AP50", "AP75", "AR1", "AR10")
MAX_SIDE = 320  # display size of frames (longest side, pixels); smaller frames are kept as they are
JPEG_QUALITY = 80


@dataclass
class ReportOptions:
    max_side: int = MAX_SIDE
    max_videos: int = 60  # videos drawn (the slider's counts always cover every video)
    max_frames: int = 120  # predict: frames shown per video (evenly spaced beyond this)
    score_threshold: float = 0.5  # predict: tracks shown


# ------------------------------------------------------------------------------------ the selection rule
def round_selection(det_path: Path, rule: SelectionRule) -> RoundLabels:
    """A round's raw detections selected at ``rule.tau`` on their own (an empty previous state): exactly what
    ``autoqvis select --detections det_path --tau T`` computes without ``--previous``. Its ``candidates``
    (after NMS and the score filter, with Q) are what the page's slider re-selects."""
    return select_round(iter_detection_file(det_path), {}, rule)


def slider_counts(labels: RoundLabels, rule: SelectionRule) -> dict[str, Any]:
    """The slider's numbers for a :func:`round_selection`: candidate tracks, retained tracks, their selected
    non-empty frames, the videos that train and their eligible frames (as the PL.json of ``autoqvis select``)."""
    ts = training_set_counts(labels.state, rule.min_eligible_frames)
    return {"tau": rule.tau, "candidates": labels.counts["tracks_after_score_filter"], "retained": ts["tracks"],
            "selected_frames": ts["selected_frames"], "eligible_videos": ts["eligible_videos"],
            "eligible_frames": ts["eligible_frames"]}


# ---------------------------------------------------------------------------------------- pictures
def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def display_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled down so the longest side is at most ``max_side`` (never up)."""
    s = min(1.0, max_side / max(height, width))
    return max(1, round(height * s)), max(1, round(width * s))


def jpeg_url(frame: np.ndarray, size: tuple[int, int]) -> str:
    image = Image.fromarray(np.asarray(frame, np.uint8))
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return _data_url(buf.getvalue(), "image/jpeg")


def mask_url(mask: np.ndarray, size: tuple[int, int], color: tuple[int, int, int]) -> tuple[str, list[int] | None]:
    """A bool (H, W) mask as a 2-colour PNG (transparent / ``color``) of display ``size``, and its label anchor."""
    image = Image.fromarray(mask.astype(np.uint8), mode="L")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.NEAREST)
    small = np.asarray(image) > 0
    pal = Image.fromarray(small.astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, *color])
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0, optimize=True)
    anchor = label_anchor(small)
    return _data_url(buf.getvalue(), "image/png"), (list(anchor) if anchor else None)


def png_url(path: Path) -> str:
    return _data_url(path.read_bytes(), "image/png")


def _hex(color: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % color


def track_view(segmentations: Sequence[Any], size: tuple[int, int], track_id: int,
               frames: Sequence[int]) -> dict[str, Any]:
    """Masks (data URLs) and label anchors of one track at the shown ``frames``."""
    color = instance_color(track_id)
    masks, anchors = [], []
    for t in frames:
        rle = segmentations[t]
        if rle is None:
            masks.append(None)
            anchors.append(None)
            continue
        url, anchor = mask_url(decode_rle(rle), size, color)
        masks.append(url)
        anchors.append(anchor)
    return {"color": _hex(color), "masks": masks, "anchors": anchors}


def video_frames(dataset: YTVISDataset, video: Any, size: tuple[int, int], frames: Sequence[int]) -> list[str | None]:
    """The shown frames of a video as JPEG data URLs (None where a frame cannot be read)."""
    out = []
    for t in frames:
        try:
            out.append(jpeg_url(dataset.read_frame(video, t), size))
        except AutoQVISError:
            out.append(None)
    return out


# ------------------------------------------------------------------------------------ self-training
def _round_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in run_dir.glob("round_*"):
        if p.is_dir() and p.name[6:].isdigit() and (p / "detections.jsonl").exists():
            found.append((int(p.name[6:]), p))
    return sorted(found)


def find_unlabeled(run_dir: Path, unlabeled: str | Path | None) -> YTVISDataset | None:
    """The unlabeled videos of a run: ``unlabeled`` if given, else the run's own index of a folder input
    (``unlabeled/unlabeled.json``), else the videos its pseudo-label files describe."""
    if unlabeled is not None:
        return load_ytvis(unlabeled)
    index = run_dir / "unlabeled" / "unlabeled.json"
    if index.exists():
        return load_ytvis(index, image_root=index.parent / "JPEGImages")
    saved = run_dir / UNLABELED_INDEX
    if saved.exists():
        raw = read_json(saved, "unlabeled video index")
        root = (raw.get("info") or {}).get("image_root")
        if root and Path(root).is_dir():
            return load_ytvis(raw, image_root=root)
    videos: dict[int, Any] = {}
    root = None
    for _, rdir in _round_dirs(run_dir):
        if (rdir / "pseudo_labels.json").exists():
            raw = read_json(rdir / "pseudo_labels.json", "pseudo-labels")
            root = root or (raw.get("info") or {}).get("image_root")
            for v in raw.get("videos", []):
                videos.setdefault(v["id"], v)
    if not videos:
        return None
    data = {"videos": sorted(videos.values(), key=lambda v: v["id"]), "annotations": [],
            "categories": [{"id": 1, "name": "object"}]}
    return load_ytvis(data, image_root=root or ".")


def selftrain_data(run_dir: Path, opts: ReportOptions, unlabeled: str | Path | None = None,
                   extra_plots: Iterable[tuple[str, Path]] = (), title: str | None = None) -> dict[str, Any]:
    """Everything the page shows of a self-training run, as json-ready data."""
    rounds_found = _round_dirs(run_dir)
    if not rounds_found:
        raise AutoQVISError(f"{run_dir}: no round_k/detections.jsonl (not a self-training run folder?)")
    cfg_path = run_dir / "config.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else config_from_dict({})
    sel = SelectionRule.from_config(cfg)
    rule = {"tau": sel.tau, "min_selected_frames": sel.min_selected_frames,
            "min_eligible_frames": sel.min_eligible_frames,
            "quality": "predictor" if sel.use_quality_predictor else "score (no quality predictor)",
            "score_threshold": sel.score_threshold, "nms_iou": sel.nms_iou}
    dataset = find_unlabeled(run_dir, unlabeled)
    rounds, all_ids = [], set()
    per_round = [round_selection(rdir / "detections.jsonl", sel) for _, rdir in rounds_found]
    for labels in per_round:
        all_ids.update(labels.candidates)
    shown_ids = sorted(all_ids)[: opts.max_videos]
    videos, sizes = [], {}
    for vid in sorted(all_ids):
        rec: dict[str, Any] = {"id": vid, "name": f"video {vid}", "shown": vid in shown_ids}
        length = max((d.num_frames for r in per_round for d in r.candidates.get(vid, [])), default=0)
        if dataset is not None and vid in {v.id for v in dataset.videos}:
            v = dataset.video(vid)
            length = v.length
            rec["name"] = str(v.extra.get("name") or Path(v.file_names[0]).parent.name or rec["name"])
            if rec["shown"]:
                size = display_size(v.height, v.width, opts.max_side)
                sizes[vid] = size
                rec.update(w=size[1], h=size[0], frames=video_frames(dataset, v, size, range(v.length)))
        rec["length"] = length
        videos.append(rec)
    for (k, rdir), labels in zip(rounds_found, per_round):
        rnd: dict[str, Any] = {"round": k, "python": slider_counts(labels, sel), "tracks": {}}
        for name in ("metrics", "stats"):
            if (rdir / f"{name}.json").exists():
                rnd[name] = read_json(rdir / f"{name}.json", f"round {k} {name}")
        rnd["plots"] = [{"title": f"round {k}: {t}", "src": png_url(rdir / f)}
                        for f, t in (("quality_vs_iou.png", "Q and s vs true IoU (Fig. 5)"),
                                     ("size_buckets.png", "IoU vs Q per mask size (Fig. 6)")) if (rdir / f).exists()]
        for vid, dets in labels.candidates.items():
            tracks = []
            for i, d in enumerate(dets):
                tr = {"id": i + 1, "score": d.score, "v": [float(x) for x in d.quality],
                      "empty": [int(s is None) for s in d.segmentations]}
                if vid in sizes:
                    tr.update(track_view(d.segmentations, sizes[vid], i + 1, range(d.num_frames)))
                tracks.append(tr)
            rnd["tracks"][str(vid)] = tracks
        rounds.append(rnd)
    plots = [{"title": t, "src": png_url(p)} for t, p in extra_plots if p.exists()]
    if (run_dir / "area_distribution.png").exists():
        plots.append({"title": "pseudo-label areas per round (Fig. 7)",
                      "src": png_url(run_dir / "area_distribution.png")})
    return {"kind": "selftrain", "title": title or f"self-training run {run_dir.name}", "source": str(run_dir),
            "value_name": "Q",  # each track's "v": Q = s * IoU^ per frame
            "rule": rule, "videos": videos, "rounds": rounds, "plots": plots, "metric_keys": list(METRIC_KEYS),
            "notes": [f"{len(shown_ids)} of {len(all_ids)} videos drawn (--max-videos); the counts cover all."]
            if len(shown_ids) < len(all_ids) else []}


# ------------------------------------------------------------------------------------------ predict
def predict_data(pred_dir: Path, opts: ReportOptions, title: str | None = None) -> dict[str, Any]:
    """Videos of a predict folder with their tracks scoring >= ``opts.score_threshold``, frames subsampled to
    at most ``opts.max_frames`` per video."""
    videos_json = pred_dir / "videos.json"
    raw = read_json(videos_json, "predict videos.json")
    dataset = load_ytvis(videos_json, image_root=raw.get("image_root") or pred_dir)
    results = load_results(pred_dir / "results.json", dataset)
    by_video: dict[int, list[dict]] = {}
    for r in sorted(results, key=lambda r: -r["score"]):
        if r["score"] >= opts.score_threshold:
            by_video.setdefault(r["video_id"], []).append(r)
    records = {v["id"]: v for v in raw["videos"]}
    videos, tracks = [], {}
    for v in dataset.videos[: opts.max_videos]:
        size = display_size(v.height, v.width, opts.max_side)
        step = max(1, -(-v.length // opts.max_frames))
        shown = list(range(0, v.length, step))
        rec = records[v.id]
        if rec.get("source"):  # a video file: decode it again at the rate predict used
            try:
                reader = VideoReader(rec["source"], fps=rec.get("fps"))
                frames = [jpeg_url(f, size) for t, f in enumerate(reader) if t % step == 0][: len(shown)]
            except AutoQVISError:  # moved or deleted since: the page still shows the tracks' numbers
                frames = None
        else:
            frames = video_frames(dataset, v, size, shown)
        videos.append({"id": v.id, "name": str(rec.get("name") or v.id), "w": size[1], "h": size[0],
                       "length": len(shown),
                       "frame_numbers": shown, "frames": frames, "shown": True})
        tracks[str(v.id)] = []
        for i, r in enumerate(by_video.get(v.id, [])):
            p = r.get("pred_iou")
            tr = {"id": i + 1, "score": r["score"], "v": [float(p[t]) for t in shown] if p else None,
                  "empty": [int(r["segmentations"][t] is None) for t in shown]}
            tr.update(track_view(r["segmentations"], size, i + 1, shown))
            tracks[str(v.id)].append(tr)
    notes = [f"tracks scoring >= {opts.score_threshold} (ids as in the overlays with the same threshold)"]
    if len(dataset.videos) > opts.max_videos:
        notes.append(f"{opts.max_videos} of {len(dataset.videos)} videos shown (--max-videos)")
    return {"kind": "predict", "title": title or f"predictions {pred_dir.name}", "source": str(pred_dir),
            "value_name": "IoU^",  # each track's "v": the predicted mask IoU per frame
            "videos": videos, "tracks": tracks, "rounds": [], "plots": [], "notes": notes,
            "metric_keys": list(METRIC_KEYS)}


# --------------------------------------------------------------------------------------------- page
def render_html(data: dict[str, Any]) -> str:
    """The page: data as inline json (``</`` escaped), CSS and JS inline."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (_PAGE.replace("@@TITLE@@", html.escape(data["title"]))
            .replace("@@STAMP@@", stamp)
            .replace("@@CSS@@", _CSS)
            .replace("@@JS@@", _JS)
            .replace("@@DATA@@", payload))


def detect_kind(folder: Path) -> str:
    """'demo' (demo.json + run/), 'selftrain' (round_k/), 'predict' (results.json + videos.json)."""
    if (folder / "run").is_dir() and _round_dirs(folder / "run"):
        return "demo"
    if _round_dirs(folder):
        return "selftrain"
    if (folder / "results.json").exists() and (folder / "videos.json").exists():
        return "predict"
    raise AutoQVISError(f"{folder}: neither a self-training run (round_k/detections.jsonl), a demo folder (run/) "
                        "nor a predict folder (results.json + videos.json)")


def write_report(folder: str | Path, opts: ReportOptions | None = None, unlabeled: str | Path | None = None,
                 out: str | Path | None = None, shown_as: str | Path | None = None,
                 notes: list[str] | None = None) -> Path:
    """Write ``folder/report.html`` (or ``out``) for a self-training run, a demo or a predict folder; returns it.
    ``shown_as``: the folder's name on the page (when ``folder`` is a staging folder that will be renamed);
    ``notes``: sentences shown first under the controls (the demo's gain and what to look at)."""
    folder = Path(folder)
    opts = opts or ReportOptions()
    if not folder.is_dir():
        raise AutoQVISError(f"{folder}: not a folder")
    kind = detect_kind(folder)
    if kind == "predict":
        data = predict_data(folder, opts)
        if shown_as is not None:
            data.update(title=f"predictions {Path(shown_as).name}", source=str(shown_as))
    elif kind == "demo":
        world = folder / "world" / "train.json"
        plots = [(f"val metrics per round", folder / "plots" / "metrics_per_round.png")]
        data = selftrain_data(folder / "run", opts, unlabeled or (world if world.exists() else None), plots,
                              title=f"autoqvis demo {folder.name}")
    else:
        data = selftrain_data(folder, opts, unlabeled)
    data["notes"] = [*(notes or []), *data.get("notes", [])]
    path = Path(out) if out is not None else folder / "report.html"
    atomic_write_text(path, render_html(data))
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head><body>
<header><h1>@@TITLE@@</h1><div class="sub">written by autoqvis, @@STAMP@@ &middot; <span id="source"></span></div></header>
<section id="controls"></section>
<section id="metrics"></section>
<section id="plots"></section>
<section id="videos"></section>
<pre id="report-state" hidden></pre>
<script type="application/json" id="report-data">@@DATA@@</script>
<script>@@JS@@</script>
</body></html>
"""

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:8px 16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:8px 0 0}h2{font-size:16px;margin:18px 0 6px}.sub{color:#666;font-size:12px}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#eee}
td.l,th.l{text-align:left}.note{color:#555;font-size:12px;max-width:900px}
#controls{position:sticky;top:0;background:#fafafa;border-bottom:1px solid #ccc;padding:6px 0;z-index:2}
.round-btn{margin-right:4px;padding:2px 10px;border:1px solid #888;background:#fff;border-radius:3px;cursor:pointer}
.round-btn.on{background:#234;color:#fff}
#tau{width:320px;vertical-align:middle}.counts span{margin-right:14px}.counts b{font-variant-numeric:tabular-nums}
.plots img{max-width:360px;margin:4px;border:1px solid #ddd;background:#fff}.plots figure{display:inline-block;margin:0}
.plots figcaption{font-size:12px;color:#555}
details.video{background:#fff;border:1px solid #ddd;border-radius:4px;margin:4px 0;padding:2px 8px}
details.video summary{cursor:pointer}.ok{color:#1a7f37}.no{color:#b42318}
.viewer{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0}.viewer canvas{border:4px solid #999;max-width:420px}
canvas.elig{border-color:#1a7f37}canvas.inel{border-color:#b42318}
.ftable{font-size:11px;overflow-x:auto;max-width:100%}.ftable td{padding:1px 3px;min-width:30px;text-align:center;cursor:pointer}
td.m{background:#c8ecd0}td.r{background:#f6c7c2}td.e{background:#eee;color:#999}td.cur{outline:2px solid #234}
th.cur{background:#234;color:#fff}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:3px}
tr.drop td.name{text-decoration:line-through;color:#999}svg.spark{vertical-align:middle;background:#fff;border:1px solid #eee}
"""

_JS = r"""
"use strict";
const ERRORS = [];
window.addEventListener("error", e => { ERRORS.push(String(e.message || e)); publish(); });
const _cerr = console.error.bind(console);
console.error = (...a) => { ERRORS.push(a.map(String).join(" ")); _cerr(...a); publish(); };
const D = JSON.parse(document.getElementById("report-data").textContent);
const S = {round: D.rounds.length ? D.rounds.length - 1 : -1, tau: D.rule ? D.rule.tau : null, frame: {}, open: {}};
const $ = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v); }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k))); return e; };
const fmt = (x, d = 3) => (x === null || x === undefined) ? "n/a" : (x < 0 ? "-1" : Number(x).toFixed(d));

// ---- the official selection chain on one video's candidate tracks (see viz/report_html.py)
function selectVideo(tracks, tau, rule) {
  const marks = tracks.map(t => t.v.map((q, i) => t.empty[i] === 1 || q >= tau));
  const retained = tracks.map((t, k) => marks[k].filter((m, i) => m && t.empty[i] === 0).length >= rule.min_selected_frames);
  const kept = retained.map((r, k) => r ? k : -1).filter(k => k >= 0);
  const T = tracks.length ? tracks[0].v.length : 0;
  const eligible = [];
  if (kept.length) for (let i = 0; i < T; i++) if (kept.every(k => marks[k][i])) eligible.push(i);
  const selected = kept.reduce((n, k) => n + marks[k].filter((m, i) => m && tracks[k].empty[i] === 0).length, 0);
  return {marks, retained, eligible, selected, inSet: eligible.length >= rule.min_eligible_frames};
}
function roundCounts(r, tau) {
  const c = {tau, candidates: 0, retained: 0, selected_frames: 0, eligible_videos: 0, eligible_frames: 0};
  for (const tracks of Object.values(r.tracks)) {
    const s = selectVideo(tracks, tau, D.rule);
    c.candidates += tracks.length; c.retained += s.retained.filter(Boolean).length; c.selected_frames += s.selected;
    if (s.inSet) { c.eligible_videos += 1; c.eligible_frames += s.eligible.length; }
  }
  return c;
}
const KEYS = ["candidates", "retained", "selected_frames", "eligible_videos", "eligible_frames"];

function publish() {
  const el = document.getElementById("report-state"); if (!el) return;
  const st = {kind: D.kind, videos: document.querySelectorAll("details.video").length, rounds: D.rounds.length,
              round: S.round >= 0 ? D.rounds[S.round].round : null, tau: S.tau, errors: ERRORS};
  if (S.round >= 0) { st.counts = roundCounts(D.rounds[S.round], S.tau);
    st.self_check = D.rounds.map(r => { const c = roundCounts(r, D.rule.tau); return KEYS.every(k => c[k] === r.python[k]); }); }
  el.textContent = JSON.stringify(st);
}

// ---- header: rounds, tau slider, counts
function buildControls() {
  document.getElementById("source").textContent = D.source;
  const box = document.getElementById("controls");
  if (D.kind !== "selftrain") { box.append($("span", {class: "note"}, (D.notes || []).join(" · "))); return; }
  const btns = $("span", {}, "round: ");
  D.rounds.forEach((r, i) => btns.append($("button", {class: "round-btn", "data-i": i, onclick: () => { S.round = i; refresh(); }},
                                         r.round === 0 ? "0 (initial model)" : String(r.round))));
  const slider = $("input", {type: "range", id: "tau", min: "0", max: "1", step: "0.01", value: String(D.rule.tau)});
  slider.oninput = () => { S.tau = Number(slider.value); refresh(); };
  box.append(btns, $("span", {}, "  τ ", slider, " ", $("b", {id: "tau-value"}, "")),
    $("div", {class: "counts", id: "counts"}),
    $("div", {class: "note", id: "rule"}, "Slider: this round's own detections re-selected WITHOUT fusion with the previous round's labels (= `autoqvis select --detections round_k/detections.jsonl --tau τ` without --previous). " +
      "Spatiotemporal NMS in list order, then score ≥ " + D.rule.score_threshold + " (both independent of τ); from the stored Q = s·IoU a frame is marked where the mask is empty or Q ≥ τ; a track is retained with ≥ " +
      D.rule.min_selected_frames + " marked non-empty frames; a frame is eligible where every retained track is marked; a video needs ≥ " + D.rule.min_eligible_frames +
      " eligible frames. The run's rounds ≥ 1 did fuse with round k−1: see 'stored training set'. Quality: " + D.rule.quality + "."),
    ...(D.notes || []).map(n => $("div", {class: "note"}, n)));
}
function updateControls() {
  if (D.kind !== "selftrain") return;
  document.querySelectorAll(".round-btn").forEach(b => b.classList.toggle("on", Number(b.dataset.i) === S.round));
  document.getElementById("tau").value = String(S.tau);
  document.getElementById("tau-value").textContent = S.tau.toFixed(2) + (S.tau === D.rule.tau ? " (the run's)" : "");
  const r = D.rounds[S.round], c = roundCounts(r, S.tau), box = document.getElementById("counts");
  box.textContent = "";
  const item = (label, id, v) => box.append($("span", {}, label + " ", $("b", {id}, v)));
  item("retained tracks", "kept-tracks", c.retained + " / " + c.candidates);
  item("selected frames", "selected-frames", c.selected_frames);
  item("eligible videos", "kept-videos", c.eligible_videos);
  item("eligible (kept) frames", "kept-frames", c.eligible_frames);
  const ts = r.stats && r.stats.training_set;
  if (ts) box.append($("span", {class: "note"}, "stored training set (fused, τ " + D.rule.tau + "): " + ts.tracks + " tracks, " +
                      ts.eligible_videos + " eligible videos, " + ts.eligible_frames + " eligible frames"));
}

// ---- metrics per round and plots
function buildMetrics() {
  const box = document.getElementById("metrics");
  if (!D.rounds.length) return;
  box.append($("h2", {}, "Metrics per round"));
  const head = $("tr", {}, $("th", {class: "l"}, "round"), ...D.metric_keys.map(k => $("th", {}, "val " + k)),
    $("th", {}, "tracks after NMS"), $("th", {}, "retained"), $("th", {}, "training-set tracks"), $("th", {}, "eligible videos"), $("th", {}, "eligible frames"));
  const t = $("table", {id: "metrics-table"}, head);
  for (const r of D.rounds) {
    const m = r.metrics || {}, s = r.stats || {}, ts = s.training_set || {};
    t.append($("tr", {class: "round-row"}, $("td", {class: "l"}, r.round === 0 ? "0 (initial model)" : r.round),
      ...D.metric_keys.map(k => $("td", {}, fmt(m[k]))), $("td", {}, s.tracks_after_nms ?? "n/a"), $("td", {}, s.retained ?? "n/a"),
      $("td", {}, ts.tracks ?? "n/a"), $("td", {}, ts.eligible_videos ?? "n/a"), $("td", {}, ts.eligible_frames ?? "n/a")));
  }
  box.append(t, $("div", {class: "note"}, "val metrics: class-agnostic YouTubeVIS AP/AR of each round's model (fractions; -1 undefined). Counts from round_k/stats.json."));
}
function buildPlots() {
  const all = [...D.plots, ...D.rounds.flatMap(r => r.plots || [])];
  if (!all.length) return;
  const box = document.getElementById("plots");
  box.append($("h2", {}, "Plots"));
  const div = $("div", {class: "plots"});
  for (const p of all) div.append($("figure", {}, $("img", {src: p.src, alt: p.title}), $("figcaption", {}, p.title)));
  box.append(div);
}

// ---- videos
function tracksOf(v) { return D.kind === "selftrain" ? (D.rounds[S.round].tracks[String(v.id)] || []) : (D.tracks[String(v.id)] || []); }
function buildVideos() {
  const box = document.getElementById("videos");
  box.append($("h2", {}, D.kind === "selftrain" ? "Unlabeled videos: candidate pseudo-label tracks of the round" : "Videos"));
  for (const v of D.videos) {
    const d = $("details", {class: "video", "data-id": v.id}, $("summary", {}, ""));
    d.ontoggle = () => { if (d.open) renderViewer(d, v); };
    box.append(d);
  }
}
function summaryText(v) {
  const tracks = tracksOf(v);
  if (D.kind !== "selftrain") return [v.name + " — " + tracks.length + " tracks, " + v.length + " frames", ""];
  const s = selectVideo(tracks, S.tau, D.rule);
  return [v.name + " (id " + v.id + ") — " + s.retained.filter(Boolean).length + "/" + tracks.length + " tracks retained, " +
          s.eligible.length + "/" + v.length + " eligible frames ", s.inSet ? "✓ in the training set" : "✗ not in the training set", s.inSet];
}
function updateVideos() {
  document.querySelectorAll("details.video").forEach(d => {
    const v = D.videos.find(x => String(x.id) === d.dataset.id), [text, tag, ok] = summaryText(v), sm = d.querySelector("summary");
    sm.textContent = text; if (tag) sm.append($("span", {class: ok ? "ok" : "no"}, tag));
    if (d.open) renderViewer(d, v);
  });
}
const IMG = new Map();
function img(src, then) { let i = IMG.get(src); if (!i) { i = new Image(); i.src = src; IMG.set(src, i); }
  if (i.complete) then(i); else i.addEventListener("load", () => then(i), {once: true}); }
function spark(q, marks, empty, cur) {
  const W = 160, H = 34, n = q.length, x = i => n > 1 ? 4 + i * (W - 8) / (n - 1) : W / 2, y = v => H - 3 - v * (H - 6);
  const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  const add = (tag, a) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); svg.append(e); };
  if (S.tau !== null) add("line", {x1: 0, x2: W, y1: y(S.tau), y2: y(S.tau), stroke: "#888", "stroke-dasharray": "3 2"});
  const pts = q.map((v, i) => empty[i] ? null : x(i) + "," + y(v)).filter(Boolean).join(" ");
  add("polyline", {points: pts, fill: "none", stroke: "#234", "stroke-width": 1});
  q.forEach((v, i) => { if (!empty[i]) add("circle", {cx: x(i), cy: y(v), r: i === cur ? 3.5 : 2, fill: marks ? (marks[i] ? "#1a7f37" : "#b42318") : "#234"}); });
  return svg;
}
function renderViewer(d, v) {
  const tracks = tracksOf(v), sel = D.kind === "selftrain" ? selectVideo(tracks, S.tau, D.rule) : null;
  let f = Math.min(S.frame[v.id] || 0, Math.max(0, v.length - 1));
  let body = d.querySelector(".viewer"); if (body) body.remove();
  body = $("div", {class: "viewer"}); d.append(body);
  if (!v.frames) { body.append($("div", {class: "note"}, v.shown === false ? "not drawn (--max-videos); its numbers count" : "frames not found (pass --unlabeled VIDEOS.json)")); }
  const sc = Math.max(1, Math.ceil(400 / (v.w || 400)));  // draw big enough for crisp labels
  const canvas = $("canvas", {width: (v.w || 1) * sc, height: (v.h || 1) * sc});
  const eligible = sel ? new Set(sel.eligible) : null;
  const frameLabel = $("div", {class: "note"}, "");
  const range = $("input", {type: "range", min: "0", max: String(Math.max(0, v.length - 1)), step: "1", value: String(f), style: "width:400px"});
  const play = $("button", {}, "▶");
  const draw = () => {
    canvas.className = sel ? (sel.inSet && eligible.has(f) ? "elig" : "inel") : "";
    const label = D.kind === "selftrain" ? ("frame " + f + " — " + (sel.inSet && eligible.has(f) ? "eligible (all retained tracks selected)" : "not eligible"))
                                         : ("frame " + (v.frame_numbers ? v.frame_numbers[f] : f));
    frameLabel.textContent = label;
    if (!v.frames || !v.frames[f]) return;
    img(v.frames[f], fi => { const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
      ctx.imageSmoothingEnabled = true; ctx.globalAlpha = 1; ctx.drawImage(fi, 0, 0, W, H); ctx.imageSmoothingEnabled = false;
      tracks.forEach((t, k) => { const m = t.masks && t.masks[f]; if (!m) return;
        const on = sel ? (sel.retained[k] && sel.marks[k][f]) : true;
        img(m, mi => { ctx.globalAlpha = on ? 0.6 : 0.22; ctx.drawImage(mi, 0, 0, W, H);
          const a = t.anchors[f]; if (a) { ctx.globalAlpha = 1; ctx.font = "bold 13px sans-serif"; ctx.fillStyle = "#000";
            const q = t.v ? " " + D.value_name + " " + t.v[f].toFixed(2) : "", x = a[0] * sc, y = a[1] * sc;
            ctx.fillText("#" + t.id + q, x + 1, y + 1); ctx.fillStyle = "#fff"; ctx.fillText("#" + t.id + q, x, y); } }); }); });
    body.querySelectorAll(".cur").forEach(e => e.classList.remove("cur"));
    body.querySelectorAll('[data-f="' + f + '"]').forEach(e => e.classList.add("cur"));
  };
  const go = t => { f = t; S.frame[v.id] = t; range.value = String(t); draw(); refreshSparks(); };
  range.oninput = () => go(Number(range.value));
  let timer = null;
  play.onclick = () => { if (timer) { clearInterval(timer); timer = null; play.textContent = "▶"; return; }
    play.textContent = "⏸"; timer = setInterval(() => { if (!d.open) { clearInterval(timer); timer = null; return; } go((f + 1) % Math.max(1, v.length)); }, 300); };
  const left = $("div", {}, canvas, $("div", {}, play, " ", range), frameLabel);
  const table = $("table", {class: "ftable"});
  const head = $("tr", {}, $("th", {class: "l"}, "track"), $("th", {}, "score"), $("th", {}, D.value_name + " over time"));
  for (let i = 0; i < v.length; i++) head.append($("th", {"data-f": i, onclick: () => go(i)},
    sel ? (eligible.has(i) ? "✓" : "✗") + i : (v.frame_numbers ? v.frame_numbers[i] : i)));
  table.append(head);
  const sparks = [];
  tracks.forEach((t, k) => {
    const marks = sel ? sel.marks[k] : null;
    const row = $("tr", {class: sel && !sel.retained[k] ? "drop" : ""},
      $("td", {class: "l name"}, $("span", {class: "sw", style: "background:" + t.color}), "#" + t.id + (sel ? (sel.retained[k] ? " retained" : " dropped") : "")),
      $("td", {}, t.score.toFixed(3)));
    const sc = $("td", {}); row.append(sc);
    if (t.v) sparks.push([sc, t.v, marks, t.empty]);
    for (let i = 0; i < v.length; i++) {
      const empty = t.empty[i] === 1, cls = empty ? "e" : (marks ? (marks[i] ? "m" : "r") : "");
      row.append($("td", {class: cls, "data-f": i, onclick: () => go(i), title: empty ? "no mask (counts as selected)" : ""},
        empty ? "–" : (t.v ? t.v[i].toFixed(2) : "•")));
    }
    table.append(row);
  });
  const refreshSparks = () => sparks.forEach(([cell, q, marks, empty]) => { cell.textContent = ""; cell.append(spark(q, marks, empty, f)); });
  const legend = $("div", {class: "note"}, D.kind === "selftrain"
    ? "cells: Q = s·IoU per frame; green = selected (Q ≥ τ), red = rejected, grey = no mask (counts as selected). Header: ✓ eligible frame. Faded masks: rejected frame or dropped track."
    : "cells: IoU^ = the predicted mask IoU per frame (the quality predictor's; not the quality score Q = s·IoU^).");
  body.append(left, $("div", {class: "ftable"}, table, legend));
  refreshSparks(); draw();
}

function refresh() { updateControls(); updateVideos(); publish(); }
function fromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has("round") && D.rounds.length) { const i = D.rounds.findIndex(r => String(r.round) === h.get("round")); if (i >= 0) S.round = i; }
  if (h.has("tau") && S.tau !== null) S.tau = Number(h.get("tau"));
  if (h.has("open")) document.querySelectorAll("details.video").forEach((d, i) => { if (i < Number(h.get("open"))) d.open = true; });
}
buildControls(); buildMetrics(); buildPlots(); buildVideos(); fromHash(); refresh();
window.addEventListener("hashchange", () => { fromHash(); refresh(); });
"""

__all__ = ["ReportOptions", "detect_kind", "predict_data", "render_html", "round_selection", "selftrain_data",
           "slider_counts", "write_report"]
