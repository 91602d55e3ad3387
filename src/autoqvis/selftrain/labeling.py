"""Pseudo-labelling a set of unlabeled videos: run the model on each and stream its raw tracks to a DET.jsonl file.

The step of a self-training round that runs the model; the pure steps on its output (NMS, score filter,
serialisation) are :mod:`autoqvis.selftrain.pseudo_label`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ..core import dist
from ..data.ytvis import YTVISDataset
from ..engine import inference
from .pseudo_label import DetectionWriter, detections_from_prediction


def pseudo_label_dataset(
    model: Any,
    unlabeled: YTVISDataset,
    cfg: Any,
    out_path: str | os.PathLike,
    *,
    video_ids: Iterable[int] | None = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "pseudo-label",
) -> Path:
    """Label every unlabeled video with ``model`` and stream its raw detections to ``out_path`` (jsonl).

    Per video: the model's top-k tracks (cfg.model.test_topk) in the model's order with the predictor's IoU
    per frame, BEFORE NMS and the score filter (the DET.jsonl form that ``autoqvis select`` reads; the
    selection, :mod:`autoqvis.selftrain.curate`, applies both). One line per video is appended and flushed,
    so memory stays flat in the number of videos and a killed run resumes (``resume=True``) at the first
    unfinished video. Returns ``out_path``.

    Under torchrun every rank calls this: the model runs on each rank's share of the videos, rank 0 gathers
    the predictions in video order and alone writes, so the file is the one a single process writes (same
    lines, same order).
    """
    out_path = Path(out_path)
    main = dist.is_main_process()
    if dist.broadcast_object(resume and out_path.exists()):
        return out_path
    ids = [v.id for v in unlabeled.videos] if video_ids is None else list(video_ids)
    writer = DetectionWriter(out_path, resume=resume) if main else None
    todo = dist.broadcast_object([v for v in ids if v not in writer.done_videos] if main else None)
    try:
        for video_id, pred in inference.predict_dataset(model, unlabeled, cfg, video_ids=todo, progress=progress,
                                                        desc=desc):
            writer.write(video_id, detections_from_prediction(video_id, pred))
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        writer.close()
    dist.barrier()  # the file exists for every rank from here on
    return out_path
