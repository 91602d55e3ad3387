"""A model's class-agnostic YouTubeVIS metrics on a labelled set: predict every video, write the results, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..core import dist
from ..core.config import Config
from ..data.ytvis import YTVISDataset, save_results
from ..engine import inference
from .ytvis_eval import evaluate


def evaluate_model(model: torch.nn.Module, val: YTVISDataset, cfg: Config, results_path: Path | None = None, *,
                   progress: bool = True, desc: str = "predict") -> dict[str, float]:
    """Predict every video of ``val``, write the results json (when ``results_path``), return the class-agnostic
    metrics.

    Under torchrun every rank predicts a share of the videos; rank 0 writes and evaluates, the others get {}."""
    results: list[dict[str, Any]] = []
    for video_id, pred in inference.predict_dataset(model, val, cfg, progress=progress, desc=desc):
        results.extend(inference.results_from_prediction(video_id, pred, cfg.inference.keep_empty_tracks))
    if not dist.is_main_process():
        return {}
    if results_path is not None:
        save_results(results, results_path)
    return evaluate(val, results)
