"""The demo's report: val metrics per round, how well Q and s rank the masks, plots, overlays -> report.md.

Reads a finished self-training run (the ``autoqvis.selftrain.loop`` layout: ``round_k/metrics.json``,
``val_results.json``, ``stats.json``, ``analysis.json`` and its PNGs, ``area_distribution.png``) and the
val split, and writes into the demo folder::

    plots/metrics_per_round.png       val AP / AP50 / AP75 / AR10 of each round's model
    plots/fig5_val_round_k.png        Fig. 5 on the val split: Q^t and s vs the true IoU of each predicted mask
    plots/fig6_val_round_k.png        Fig. 6 on the val split: mean IoU vs mean Q per mask size
    plots/fig5_pseudo_round_k.png     Fig. 5 on round k's pseudo-labels of the unlabeled train videos
    plots/fig6_pseudo_round_k.png     Fig. 6 on those pseudo-labels
    plots/fig7_area_distribution.png  Fig. 7: pseudo-label areas per round vs the ground truth
    overlays/val_NNNN_round_k.gif     Fig. 3-style overlays (prediction | ground truth), + a .png preview strip
    report.md                         all of it, numbers as fractions in [0, 1] (-1: undefined)

Quality numbers follow the paper: Q^t = s * IoU^t (eq. 20), where IoU^t is the quality predictor's output.
"""

from __future__ import annotations

import io
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from ..core.tracks import Detection
from ..data.video_io import write_gif, write_image
from ..data.ytvis import YTVISDataset, load_results
from ..eval.analysis import analyse, gt_tracks
from ..eval.bootstrap import paired_bootstrap, per_video_stat
from ..eval.ytvis_eval import evaluate_detailed
from ..eval.plots import plot_quality_vs_iou, plot_size_buckets
from ..selftrain.selection import score_and_select
from .overlay import QUALITY_LABEL, OverlayTrack, overlay_frames, tracks_from_annotations
from .report_html import write_report as write_html_report

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
OVERLAY_FPS = 6.0  # YouTubeVIS's annotation rate
PREVIEW_FRAMES = 3  # frames of an overlay shown in its .png preview strip
BOOTSTRAP_DRAWS = 1000  # resamplings of the val videos behind the gain's interval (~2-5 s)


@dataclass
class RoundResult:
    """What the report shows of round k (k = 0: the initial model)."""

    round: int
    metrics: dict[str, float]  # class-agnostic val metrics (fractions, -1 undefined)
    val_rho: dict[str, float | None]  # Spearman of Q and of s with the true IoU, val predictions
    val_frames: int  # predicted masks behind val_rho
    pseudo_rho: dict[str, float | None]  # the same on round k's pseudo-labels of the unlabeled videos
    pseudo: dict[str, Any]  # pseudo-label counts (stats.json + analysis.json)
    plots: dict[str, str] = field(default_factory=dict)  # name -> path relative to the demo folder
    overlays: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------- analysis
def val_detections(results: Sequence[dict], score_threshold: float, tau: float) -> dict[int, list]:
    """Val results -> {video_id: Detections with Q^t (eq. 20) and S^t (eq. 21)}, those scoring >= score_threshold
    (eq. 16, as pseudo-labelling keeps them). ``results`` carry ``pred_iou``, the predictor's IoU per frame."""
    out: dict[int, list] = {}
    for r in results:
        if r["score"] < score_threshold or not r.get("pred_iou"):
            continue
        det = Detection(r["video_id"], float(r["score"]), list(r["segmentations"]), pred_iou=list(r["pred_iou"]))
        out.setdefault(det.video_id, []).append(det)
    return {v: score_and_select(d, tau) for v, d in sorted(out.items())}


def val_quality_analysis(val: YTVISDataset, results: Sequence[dict], score_threshold: float,
                         tau: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fig. 5/6 numbers of one round's val predictions against the val ground truth.

    Returns (summary, points) of ``autoqvis.eval.analysis.analyse``: ``summary["spearman"]["frame"]`` holds
    rho(Q, IoU) and rho(s, IoU) over every non-empty predicted mask; points are the per-mask arrays.
    """
    dets = val_detections(results, score_threshold, tau)
    gt = gt_tracks(val, [v.id for v in val.videos])
    return analyse({v: dets.get(v, []) for v in gt}, dets, gt)


def round_result(run_dir: Path, k: int, val: YTVISDataset, score_threshold: float, tau: float,
                 plots_dir: Path) -> tuple[RoundResult, list[dict]]:
    """Round k's numbers and its val plots; returns (RoundResult, the round's val results)."""
    rdir = run_dir / f"round_{k}"
    metrics = read_json(rdir / "metrics.json", "metrics")
    results = load_results(rdir / "val_results.json", val)
    summary, points = val_quality_analysis(val, results, score_threshold, tau)
    name = "initial model" if k == 0 else f"round {k}"
    plot_quality_vs_iou(points, summary["spearman"]["frame"], plots_dir / f"fig5_val_round_{k}.png",
                        f"val split, {name}: predicted masks (score >= {score_threshold})")
    plot_size_buckets(summary["size_buckets"], plots_dir / f"fig6_val_round_{k}.png", f"val split, {name}")
    plots = {"fig5_val": f"plots/fig5_val_round_{k}.png", "fig6_val": f"plots/fig6_val_round_{k}.png"}
    for src, dst in (("quality_vs_iou.png", "fig5_pseudo"), ("size_buckets.png", "fig6_pseudo")):
        if (rdir / src).exists():
            atomic_write_bytes(plots_dir / f"{dst}_round_{k}.png", (rdir / src).read_bytes())
            plots[dst] = f"plots/{dst}_round_{k}.png"
    stats = read_json(rdir / "stats.json", "round stats")
    # the candidates: after NMS and the score filter (runs before issue 14 filtered first and had no separate count)
    candidates = stats.get("tracks_after_score_filter", stats["tracks_after_nms"])
    pseudo: dict[str, Any] = {"tracks_after_nms": candidates, "retained": stats["retained"],
                              "training_set_tracks": stats["training_set"]["tracks"],
                              "eligible_videos": stats["training_set"]["eligible_videos"]}
    pseudo_rho: dict[str, float | None] = {"quality": None, "score": None}
    if (rdir / "analysis.json").exists():
        analysis = read_json(rdir / "analysis.json", "analysis")
        pseudo_rho = {key: analysis["spearman"]["frame"][key] for key in ("quality", "score")}
        pseudo["selected_precision"] = analysis["training_set"]["selected_precision"]
        pseudo["mean_true_iou"] = analysis["training_set"]["mean_true_iou"]
    rho = {key: summary["spearman"]["frame"][key] for key in ("quality", "score")}
    return RoundResult(k, {key: float(metrics[key]) for key in METRIC_KEYS}, rho, summary["num_frames"],
                       pseudo_rho, pseudo, plots), results


# ------------------------------------------------------------------------------------------ plots
def plot_metrics_per_round(rounds: Sequence[RoundResult], path: Path) -> None:
    """AP, AP50, AP75 and AR10 on the val split (y, in %) against the self-training round (x)."""
    fig = Figure(figsize=(6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = [r.round for r in rounds]
    for key, style in (("AP50", "o-"), ("AP", "s-"), ("AP75", "^--"), ("AR10", "d:")):
        ax.plot(xs, [100 * max(r.metrics[key], 0.0) for r in rounds], style, label=key)
    ax.set_xticks(xs, ["initial" if x == 0 else f"round {x}" for x in xs])
    ax.set(ylabel="val, class-agnostic (%)", title="toy world: val metrics per self-training round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------------------- overlays
def pick_videos(val: YTVISDataset, n: int, change: dict[int, float] | None = None) -> list[int]:
    """The ``n`` val videos to draw, in id order. With ``change`` (video id -> AP50 of the last round minus the
    initial model's): those whose AP50 changed most either way, so the overlays show what the rounds did, not
    videos picked by hand; ties and the no-change case: the most ground-truth tracks, then the lower id."""
    change = change or {}
    keys = sorted((-abs(change.get(v.id, 0.0)), -len(val.annotations_of(v.id)), v.id) for v in val.videos)
    return sorted(vid for *_, vid in keys[:n])


def val_gain(val: YTVISDataset, first: Sequence[dict], last: Sequence[dict],
             ) -> tuple[dict[str, float], dict[int, float]]:
    """AP50 gain of the last round over the initial model with its paired-bootstrap spread over the val videos,
    and each video's own AP50 change."""
    before, after = evaluate_detailed(val, list(first), workers=1), evaluate_detailed(val, list(last), workers=1)
    ap_before, ap_after = per_video_stat(before.videos), per_video_stat(after.videos)
    change = {v: ap_after.get(v, 0.0) - ap_before.get(v, 0.0) for v in set(ap_before) | set(ap_after)
              if max(ap_before.get(v, -1.0), ap_after.get(v, -1.0)) >= 0}  # -1: a video without ground truth
    return paired_bootstrap(before.videos, after.videos, "AP50", draws=BOOTSTRAP_DRAWS, seed=0), change


def overlay_tracks(results: Sequence[dict], video_id: int, score_threshold: float) -> list:
    """One video's results scoring >= score_threshold as OverlayTracks #1, #2, ... (best first) whose number is
    Q^t = s * IoU^t (eq. 20) in each frame, labelled ``Q``."""
    mine = sorted((r for r in results if r["video_id"] == video_id and r["score"] >= score_threshold),
                  key=lambda r: -r["score"])
    return [OverlayTrack(i + 1, r["segmentations"],
                         [r["score"] * q for q in r["pred_iou"]] if r.get("pred_iou") else None, QUALITY_LABEL)
            for i, r in enumerate(mine)]


def write_video_overlay(val: YTVISDataset, video_id: int, results: Sequence[dict], score_threshold: float,
                        gif: Path, png: Path) -> int:
    """Prediction | ground truth for every frame of one val video -> ``gif``; first, middle and last frame
    stacked -> ``png``. Returns the number of frames."""
    video = val.video(video_id)
    frames = (val.read_frame(video, t) for t in range(video.length))
    pictures = list(overlay_frames(frames, overlay_tracks(results, video_id, score_threshold),
                                   tracks_from_annotations(val.annotations_of(video_id))))
    write_gif(gif, pictures, OVERLAY_FPS)
    picks = sorted({0, len(pictures) // 2, len(pictures) - 1})[:PREVIEW_FRAMES]
    gap = np.zeros((4, pictures[0].shape[1], 3), np.uint8)
    write_image(png, np.concatenate([x for t in picks for x in (pictures[t], gap)][:-1]))
    return len(pictures)


# ---------------------------------------------------------------------------------------- markdown
def _num(x: float | None) -> str:
    """A metric as a fraction with 3 decimals; -1 (undefined in the official evaluator) stays -1."""
    if x is None:
        return "n/a"
    return "-1" if x < 0 else f"{x:.3f}"


def _rho(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _name(k: int) -> str:
    return "round 0 (initial model)" if k == 0 else f"round {k}"


def metrics_table(rounds: Sequence[RoundResult]) -> list[str]:
    lines = ["| model | " + " | ".join(METRIC_KEYS) + " |", "|---|" + "---:|" * len(METRIC_KEYS)]
    for r in rounds:
        lines.append(f"| {_name(r.round)} | " + " | ".join(_num(r.metrics[k]) for k in METRIC_KEYS) + " |")
    return lines


def quality_table(rounds: Sequence[RoundResult]) -> list[str]:
    lines = ["| model | ρ(Q, IoU) val | ρ(s, IoU) val | val masks | ρ(Q, IoU) pseudo | ρ(s, IoU) pseudo | "
             "pseudo tracks after NMS + score filter | retained | training set tracks | eligible videos | selected precision |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        p = r.pseudo
        lines.append(f"| {_name(r.round)} | {_rho(r.val_rho['quality'])} | {_rho(r.val_rho['score'])} | "
                     f"{r.val_frames} | {_rho(r.pseudo_rho['quality'])} | {_rho(r.pseudo_rho['score'])} | "
                     f"{p['tracks_after_nms']} | {p['retained']} | {p['training_set_tracks']} | "
                     f"{p['eligible_videos']} | {_num(p.get('selected_precision'))} |")
    return lines


def _image(path: str, alt: str) -> str:
    return f"![{alt}]({path})"


def render_report(rounds: Sequence[RoundResult], settings: dict[str, Any], timings: dict[str, float],
                  plots: dict[str, str]) -> str:
    """The whole report.md as text. ``settings``: what ran (seed, size, init, iterations, thresholds, paths);
    ``timings``: seconds per stage; ``plots``: the run-level plots (metrics, fig7)."""
    first, last = rounds[0], rounds[-1]
    delta = last.metrics["AP50"] - first.metrics["AP50"]
    out = [
        "# autoqvis demo: AutoQ-VIS on the toy world",
        "",
        f"Toy world seed {settings['seed']}, size `{settings['size']}`: {settings['world_summary']}. "
        f"Initial model: {settings['init_text']}. Then {len(rounds) - 1} self-training rounds of "
        f"{settings['round_iters']} iterations (config `{settings['config']}`, score threshold "
        f"{settings['score_threshold']}, quality threshold tau {settings['tau']}; the paper uses 0.75 on YouTubeVIS-2019 "
        "and 0.3 on UVO-Dense).",
        "",
        "## Val metrics per round",
        "",
        "Class-agnostic YouTubeVIS metrics on the toy val split (`world/val.json`), fractions in [0, 1]; "
        "-1 where a size range has no ground truth (every toy object is *small* in YTVIS' ranges, so APm/APl are -1).",
        "",
        *metrics_table(rounds),
        "",
        f"AP50 {_num(first.metrics['AP50'])} with the initial model -> {_num(last.metrics['AP50'])} after round "
        f"{last.round} ({'+' if delta >= 0 else ''}{delta:.3f}). {gain_sentence(settings.get('gain'))} "
        "The paper (YouTubeVIS-2019 val): VideoCutLER 0.482 -> AutoQ-VIS 0.526 AP50.",
        "",
        _image(plots["metrics"], "val metrics per round"),
        "",
        "## Does the quality score rank masks better than the confidence score? (Fig. 5)",
        "",
        "Spearman's ρ of the quality score Q^t = s·IoU^t (eq. 20; IoU^t from the quality predictor) and of the "
        "confidence score s with each mask's true IoU against its best-matching ground-truth track. *val*: every "
        f"non-empty predicted mask of a track scoring >= {settings['score_threshold']} on the val split; *pseudo*: "
        "the round's pseudo-labels (after score filter and NMS) on the unlabeled train videos, scored against "
        "their ground truth (`world/train_gt.json`, read for this analysis only, never for training). "
        "*Selected precision*: share of the selected pseudo-label frames (S^t = 1) whose true IoU is >= 0.5.",
        "",
        *quality_table(rounds),
        "",
    ]
    for r in (first, last) if last is not first else (first,):
        out += [f"**{_name(r.round)}** — val: {_image(r.plots['fig5_val'], f'Fig. 5 val {_name(r.round)}')}", ""]
        if "fig5_pseudo" in r.plots:
            out += [f"pseudo-labels: {_image(r.plots['fig5_pseudo'], f'Fig. 5 pseudo {_name(r.round)}')}", ""]
    out += ["## Quality vs IoU per mask size (Fig. 6)", "",
            f"{_name(last.round)}, val split: {_image(last.plots['fig6_val'], 'Fig. 6 val')}", ""]
    if "fig7" in plots:
        out += ["## Pseudo-label areas per round (Fig. 7)", "", _image(plots["fig7"], "Fig. 7"), ""]
    others = [f"[{_name(r.round)} {name}]({path})" for r in rounds for name, path in sorted(r.plots.items())]
    out += ["Every plot: " + ", ".join(others) + ".", ""]
    out += ["## Overlays (Fig. 3)", "",
            "Val videos, prediction (left) beside the ground truth (right). Each instance has its own colour and id; "
            f"the label at a mask's centre, \"#id Q 0.61\", gives its quality score Q^t = s·IoU^t in that frame. Tracks scoring >= "
            f"{settings['overlay_score']} are drawn.", ""]
    if last is not first and last.overlays:
        out += [look_sentence(len(last.overlays), _name(last.round)), ""]
    for o in last.overlays:
        before = next((x for x in first.overlays if x["video_id"] == o["video_id"]), None)
        change = "" if o.get("ap50_change") is None else f", AP50 {o['ap50_change']:+.2f}"
        line = (f"- val video {o['video_id']} ({o['frames']} frames{change}): {_name(last.round)} [GIF]({o['gif']}) · "
                f"[preview]({o['png']})")
        if before is not None and last is not first:
            line += f"; {_name(first.round)} [GIF]({before['gif']}) · [preview]({before['png']})"
        out.append(line)
    if last.overlays:
        o = last.overlays[0]
        out += ["", _image(o["gif"], f"overlay of val video {o['video_id']}")]
    out += ["", "## What ran", "", *[f"- {k}: {v}" for k, v in settings["what_ran"].items()], "",
            "| stage | seconds |", "|---|---:|", *[f"| {k} | {v:.1f} |" for k, v in timings.items()], ""]
    return "\n".join(out)


def look_sentence(n: int, last_name: str) -> str:
    """The one sentence on what to look at in the overlays."""
    return (f"What to look at: the overlays are of the {n} val videos whose AP50 changed most between the initial "
            f"model and {last_name} (chosen by that rule, not by hand); compare each video's two overlays for objects "
            "found, lost, split into several tracks or held through the clip, and whether a mask's Q drops where it "
            "leaves its object.")


def gain_sentence(gain: dict[str, float] | None) -> str:
    """The AP50 gain against the noise of the val split (paired bootstrap over its videos)."""
    if not gain:
        return ""
    verdict = ("above" if gain["low"] > 0 else "below" if gain["high"] < 0 else "not clear of")
    return (f"Noise of the val split: resampling its {gain['videos']} videos ({gain['draws']} paired draws) puts the "
            f"AP50 change at {gain['delta']:+.3f} ± {gain['std']:.3f} (95 % interval {gain['low']:+.3f} to "
            f"{gain['high']:+.3f}): {verdict} zero. That is the noise of which videos are in val; training seeds "
            "add their own (benchmarks/RESULTS.md, \"Demo\").")


def write_report(path: Path, text: str) -> None:
    atomic_write_text(path, text)


__all__ = ["RoundResult", "METRIC_KEYS", "metrics_table", "overlay_tracks", "pick_videos", "plot_metrics_per_round",
           "quality_table", "render_report", "round_result", "val_detections", "val_quality_analysis",
           "write_report", "write_video_overlay", "peak_rss_mb", "write_demo_report", "gain_sentence", "look_sentence",
           "val_gain"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_demo_report(out: Path, cfg: Any, val: YTVISDataset, tau: float, timings: dict[str, float], *, rounds: int,
                      overlays: int, overlay_score: float, seed: int, size: str, config_name: str, init_text: str,
                      command: str, threads: int) -> dict[str, Any]:
    """Plots, overlays, report.md, report.html, then demo.json (its content is returned) from the finished run in
    ``out/run`` of ``autoqvis demo`` (its settings: ``rounds`` ... ``threads``; ``command`` the command line)."""
    start = time.perf_counter()
    run_dir, plots_dir, overlays_dir = out / "run", out / "plots", out / "overlays"
    plots_dir.mkdir(parents=True, exist_ok=True)
    overlays_dir.mkdir(parents=True, exist_ok=True)
    score = cfg.selftrain.score_threshold
    shown = [0, rounds] if rounds > 0 else [0]
    results_per_round, val_results = [], {}
    for k in range(rounds + 1):
        result, results = round_result(run_dir, k, val, score, tau, plots_dir)
        results_per_round.append(result)
        if k in shown:
            val_results[k] = results
    gain, change = val_gain(val, val_results[0], val_results[shown[-1]]) if rounds > 0 else (None, {})
    videos = pick_videos(val, overlays, change)
    for k in shown:
        for vid in videos:
            gif, png = overlays_dir / f"val_{vid:04d}_round_{k}.gif", overlays_dir / f"val_{vid:04d}_round_{k}.png"
            n = write_video_overlay(val, vid, val_results[k], overlay_score, gif, png)
            results_per_round[k].overlays.append({"video_id": vid, "frames": n, "gif": f"overlays/{gif.name}",
                                                  "png": f"overlays/{png.name}", "ap50_change": change.get(vid)})
    plots = {"metrics": "plots/metrics_per_round.png"}
    plot_metrics_per_round(results_per_round, out / plots["metrics"])
    if (run_dir / "area_distribution.png").exists():
        plots["fig7"] = "plots/fig7_area_distribution.png"
        atomic_write_bytes(out / plots["fig7"], (run_dir / "area_distribution.png").read_bytes())
    source = read_json(out / "world" / "source.json", "source.json")
    info = source.get("info", {})
    world_summary = (f"{len(source['images'])} source stills with imperfect pseudo-masks, "
                     f"{len(read_json(out / 'world' / 'train.json', 'train.json')['videos'])} unlabeled train videos, "
                     f"{len(val.videos)} val videos")
    settings = {
        "seed": seed, "size": size, "world_summary": world_summary, "init_text": init_text,
        "round_iters": cfg.selftrain.max_iter, "config": config_name, "tau": tau, "score_threshold": score,
        "overlay_score": overlay_score, "gain": gain,
        "what_ran": {
            "command": f"`{command}`",
            "toy world": f"`world/` (seed {seed}, size {size}; pseudo-mask rates {info.get('pseudo_masks', {}).get('realised')})",
            "self-training run": "`run/` (round_k/model.pt, pseudo_labels.json, stats.json, metrics.json, val_results.json)",
            "torch threads": threads,
            "peak RSS": f"{peak_rss_mb():.0f} MB",
        },
    }
    timings["report"] = time.perf_counter() - start
    write_report(out / "report.md", render_report(results_per_round, settings, timings, plots))
    summary = {
        "settings": {k: v for k, v in settings.items() if k != "what_ran"}, "timings_s": timings,
        "peak_rss_mb": round(peak_rss_mb()),
        "rounds": [{"round": r.round, "val": r.metrics, "val_spearman": r.val_rho, "pseudo_spearman": r.pseudo_rho,
                    "pseudo": r.pseudo, "plots": r.plots, "overlays": r.overlays} for r in results_per_round]}
    notes = [f"AP50 {results_per_round[0].metrics['AP50']:.3f} (initial model) -> "
             f"{results_per_round[-1].metrics['AP50']:.3f} ({_name(rounds)}). {gain_sentence(gain)}"] if gain else []
    if rounds > 0 and videos:
        notes.append(look_sentence(len(videos), _name(rounds)) + " The overlays: report.md, overlays/.")
    write_html_report(out, notes=notes)  # report.html: the same run to browse, with the tau slider
    atomic_write_json(out / "demo.json", summary, indent=1)
    return summary
