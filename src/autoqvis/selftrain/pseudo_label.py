"""Pseudo-labelling: model tracks -> spatiotemporal NMS (eq. 17-18) -> score filter (eq. 16).

The order is the official code's (``apply_nmsV2`` on the model's list, then the score filter): a high-score
track still suppresses its near-duplicates even when the quality rules drop it later. The paper filters
first; on the model's score-sorted list both orders keep the same tracks.

A *detection* is one predicted track of one video (supplement 6.1): a confidence score and a mask per
frame, plus the frozen quality predictor's per-frame IoU. Masks are COCO compressed RLE dicts
(``{"size": [h, w], "counts": str}``); a frame where the track is absent holds ``None``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..core.errors import AutoQVISError
from ..core.tracks import Detection, encode_track, frame_ious, rle_areas, rle_bboxes
from ..data.validate import check_track_masks


# ----------------------------------------------------------------------------------- equations
def filter_by_score(detections: list[Detection], threshold: float = 0.25) -> list[Detection]:
    """Eq. 16: keep detections with s >= threshold (0.25 itself stays)."""
    return [d for d in detections if d.score >= threshold]


def spatiotemporal_nms(detections: list[Detection], iou_threshold: float = 0.5) -> list[Detection]:
    """Eq. 17-18: greedy NMS over tracks of ONE video in LIST order (the model's, score descending).

    The first remaining track is kept and every later one whose mask IoU with it is >= iou_threshold in at
    least one frame is dropped (the track IoU is the maximum over frames; empty-vs-empty frames count 0).
    No re-sorting: the official ``apply_nmsV2`` walks the list as given. Returns the kept tracks in order.
    """
    segs = [d.segmentations for d in detections]
    worst_frame_iou = frame_ious(segs, segs).max(axis=0, initial=0.0)  # (N, N)
    kept: list[int] = []
    for i in range(len(detections)):
        if all(worst_frame_iou[i, j] < iou_threshold for j in kept):
            kept.append(i)
    return [detections[i] for i in kept]


# ----------------------------------------------------------------------------- model -> tracks
def detections_from_prediction(video_id: int, pred: dict[str, Any]) -> list[Detection]:
    """One video's prediction (``autoqvis.engine.inference``) -> detections (all of them, no filtering).

    pred: ``scores`` (k,); ``segmentations`` (k lists of T RLE-or-None) or ``masks`` bool (k, T, H, W) at the
    original size; ``pred_iou`` (k, T) in [0, 1] or None. Returns k detections in the model's order.
    """
    scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1)
    if "segmentations" in pred:
        segs = [list(s) for s in pred["segmentations"]]
    else:
        segs = [encode_track(track) for track in np.asarray(pred["masks"], dtype=bool)]
    pred_iou = pred.get("pred_iou")
    pred_iou = None if pred_iou is None else np.clip(np.asarray(pred_iou, dtype=np.float64), 0.0, 1.0)
    return [
        Detection(
            video_id=int(video_id),
            score=float(scores[i]),
            segmentations=segs[i],
            pred_iou=[] if pred_iou is None else [float(q) for q in pred_iou[i]],
        )
        for i in range(len(scores))
    ]


def suppress_and_filter(dets: list[Detection], score_threshold: float = 0.25, nms_iou: float = 0.5) -> list[Detection]:
    """The raw top-k tracks of one video -> NMS (eq. 17-18, list order) -> score filter (eq. 16)."""
    return filter_by_score(spatiotemporal_nms(dets, nms_iou), score_threshold)


def pseudo_label_video(
    video_id: int, pred: dict[str, Any], score_threshold: float = 0.25, nms_iou: float = 0.5
) -> tuple[list[Detection], int]:
    """Top-k tracks of one video -> (kept detections after NMS and the score filter, number of raw tracks).

    The model's inference already keeps the top-k (cfg.model.test_topk = 10) tracks by score.
    """
    dets = detections_from_prediction(video_id, pred)
    return suppress_and_filter(dets, score_threshold, nms_iou), len(dets)


# -------------------------------------------------------------------------------- serialisation
def detection_to_dict(det: Detection) -> dict[str, Any]:
    return dataclasses.asdict(det)


def detection_from_dict(data: dict[str, Any], where: str = "detection") -> Detection:
    """A dict written by :func:`detection_to_dict`, or a pseudo-label YTVIS annotation dict."""
    try:
        det = Detection(
            video_id=int(data["video_id"]),
            score=float(data["score"]),
            segmentations=list(data["segmentations"]),
            pred_iou=[float(x) for x in data.get("pred_iou") or []],
            quality=[float(x) for x in data.get("quality") or []],
            selected=[int(x) for x in data.get("selected") or []],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise AutoQVISError(f"{where}: not a valid detection ({type(e).__name__}: {e})") from None
    for name in ("pred_iou", "quality", "selected"):
        n = len(getattr(det, name))
        if n not in (0, det.num_frames):
            raise AutoQVISError(f"{where}: {name} has {n} entries, segmentations has {det.num_frames}")
    return det


def detection_from_annotation(ann: Any) -> Detection:
    """An ``autoqvis.data.ytvis.Annotation`` of a pseudo-label file -> Detection (score/Q/S from extra)."""
    extra = dict(getattr(ann, "extra", {}) or {})
    data = {"video_id": ann.video_id, "segmentations": ann.segmentations, "score": extra.get("score", 1.0)}
    for key in ("pred_iou", "quality", "selected"):
        data[key] = extra.get(key)
    return detection_from_dict(data, where=f"annotation {ann.id} (video {ann.video_id})")


def detection_to_annotation(det: Detection, ann_id: int) -> dict[str, Any]:
    """A detection as a YTVIS annotation dict; score, pred_iou, Q^t and S^t ride along as extra keys."""
    return {
        "id": int(ann_id),
        "video_id": det.video_id,
        "category_id": 1,
        "segmentations": det.segmentations,
        "areas": rle_areas(det.segmentations),
        "bboxes": rle_bboxes(det.segmentations),
        "iscrowd": 0,
        "score": det.score,
        # per-frame extras only when present: YTVIS readers check that a per-frame list has T entries
        **{k: v for k, v in (("pred_iou", det.pred_iou), ("quality", det.quality), ("selected", det.selected)) if v},
    }


# ------------------------------------------------------------------------- streaming to disk
class DetectionWriter:
    """Append one video's raw detections per line to ``<path>.partial``; ``close()`` renames it to ``path``.

    A killed run leaves the ``.partial`` file: :func:`read_partial` returns the videos finished there
    so pseudo-labelling resumes at the next video. Lines are the DET.jsonl form:
    ``{"video_id", "detections": [{"score", "segmentations", "pred_iou"}]}``.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        done = read_partial(self.partial) if resume else []
        # rewrite the complete lines only: a line cut by the kill is dropped and redone.
        with open(self.partial, "w") as f:
            for rec in done:
                f.write(json.dumps(rec) + "\n")
        self.done_videos = {rec["video_id"] for rec in done}
        self._file = open(self.partial, "a")

    def write(self, video_id: int, detections: list[Detection]) -> None:
        rec = {"video_id": int(video_id),
               "detections": [{"score": d.score, "segmentations": d.segmentations, "pred_iou": d.pred_iou}
                              for d in detections]}
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Finish: the ``.partial`` file becomes ``path`` (atomic rename)."""
        self._file.close()
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        """Stop without finishing; the ``.partial`` file stays for a later resume."""
        self._file.close()


def read_partial(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete lines of a detections file being written (a cut last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def iter_detection_file(path: str | os.PathLike, videos: dict[int, Any] | None = None
                        ) -> Iterator[tuple[int, list[Detection]]]:
    """Stream a detections file (DET.jsonl): (video_id, detections in file order) per line.

    A line is ``{"video_id": int, "detections": [{"score", "segmentations": [RLE | null per frame],
    "pred_iou": [per frame]}]}``; extra keys are ignored (a detection's own ``video_id``, if any, must be the
    line's; files of older rounds, with ``before_nms`` and post-NMS tracks, read the same). With ``videos``
    ({id: ytvis Video}) each line's video must be there, appear once, and every track must have one mask of
    the video's size per frame. Errors name the file, the line and the field.
    """
    path = Path(path)
    try:
        f = open(path)
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot read detections ({e.strerror or e})") from None
    seen: set[int] = set()
    with f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}: line {lineno}"
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                video_id = rec["video_id"]
                raw = rec["detections"]
            except json.JSONDecodeError as e:
                raise AutoQVISError(f"{where}: not JSON ({e.msg})") from None
            except (KeyError, TypeError) as e:
                raise AutoQVISError(f"{where}: not a detections record (missing {e})") from None
            if not isinstance(video_id, int) or isinstance(video_id, bool) or not isinstance(raw, list):
                raise AutoQVISError(f"{where}: 'video_id' must be an integer and 'detections' a list")
            dets = []
            for k, d in enumerate(raw):
                if not isinstance(d, dict):
                    raise AutoQVISError(f"{where}: detections[{k}] must be an object")
                if d.get("video_id", video_id) != video_id:
                    raise AutoQVISError(f"{where}: detections[{k}]: video_id {d['video_id']} is not the line's {video_id}")
                dets.append(detection_from_dict({**d, "video_id": video_id}, f"{where}: detections[{k}]"))
            if videos is not None:
                _check_against_video(dets, videos, video_id, where)
                if video_id in seen:
                    raise AutoQVISError(f"{where}: video {video_id} appears a second time")
                seen.add(video_id)
            yield video_id, dets


def _check_against_video(dets: list[Detection], videos: dict[int, Any], video_id: int, where: str) -> None:
    if video_id not in videos:
        raise AutoQVISError(f"{where}: video_id {video_id} is not a video of the unlabeled set")
    video = videos[video_id]
    for k, d in enumerate(dets):
        loc = f"{where}: detections[{k}]"
        if d.num_frames != video.length:
            raise AutoQVISError(f"{loc}: segmentations has {d.num_frames} entries, video {video_id} has "
                                f"{video.length} frames")
        d.segmentations = check_track_masks(d.segmentations, [video.height, video.width], loc)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in d.pred_iou):
            raise AutoQVISError(f"{loc}: pred_iou must hold finite numbers")
        if not (isinstance(d.score, float) and np.isfinite(d.score)):
            raise AutoQVISError(f"{loc}: score must be a finite number")
