"""The paper's analysis figures as PNGs: Fig. 5 (Q and s vs true IoU), Fig. 6 (size buckets),
Fig. 7 (log-area distribution per round vs ground truth).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so no global backend state is
touched, and written atomically.
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.fileio import atomic_write_bytes


def _save(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _rho(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plot_quality_vs_iou(points: Mapping[str, np.ndarray], rho: Mapping[str, Any], path: str | os.PathLike,
                        title: str = "") -> None:
    """Fig. 5: (a) Q^t vs true IoU, (b) score s vs true IoU, one dot per non-empty pseudo frame.

    points: arrays ``quality``, ``score``, ``iou`` (n,); rho: {"quality": rho, "score": rho}.
    """
    fig = Figure(figsize=(9, 4))
    for ax, key, label in zip(fig.subplots(1, 2), ("quality", "score"), ("quality score $Q$", "confidence score $s$")):
        ax.scatter(points[key], points["iou"], s=6, alpha=0.4, linewidths=0)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=label, ylabel="IoU with ground truth")
        ax.set_title(f"{label}: $\\rho_s$ = {_rho(rho.get(key))}")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_size_buckets(buckets: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Fig. 6: mean true IoU vs mean Q for small / medium / large masks, COCO and relative buckets."""
    fig = Figure(figsize=(9, 3.8))
    names = ["small", "medium", "large"]
    x = np.arange(len(names))
    for ax, kind, label in zip(fig.subplots(1, 2), ("coco", "relative"), ("COCO area buckets", "relative area buckets")):
        b = buckets[kind]
        iou = [b[n]["mean_iou"] or 0.0 for n in names]
        q = [b[n]["mean_quality"] or 0.0 for n in names]
        ax.bar(x - 0.2, iou, 0.4, label="IoU (vs ground truth)")
        ax.bar(x + 0.2, q, 0.4, label="quality score $Q$")
        ax.set_xticks(x, [f"{n}\n(n={b[n]['count']})" for n in names])
        ax.set(ylim=(0, 1), title=label)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_area_distribution(histograms: Mapping[str, list[int]], edges: list[float], path: str | os.PathLike,
                           title: str = "") -> None:
    """Fig. 7: normalised histograms of ln(area / image area), one line per label set (rounds, ground truth)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    edges_a = np.asarray(edges)
    width = np.diff(edges_a)
    for name, counts in histograms.items():
        c = np.asarray(counts, dtype=np.float64)
        density = c / (c.sum() * width) if c.sum() else c
        ax.stairs(density, edges_a, label=f"{name} (n={int(c.sum())})", lw=2 if name == "ground truth" else 1.2)
    for bound in (32.0**2, 96.0**2):  # COCO small/medium bounds at 640x480, for orientation
        ax.axvline(np.log(bound / (640 * 480)), color="grey", lw=0.6, ls=":")
    ax.set(xlabel="log area (ln of mask area / image area)", ylabel="density", title=title or "area distribution")
    ax.legend(fontsize=8)
    _save(fig, path)
