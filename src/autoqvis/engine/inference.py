"""Inference over videos and datasets: test-time resize, ``model.inference``, masks back at the original size.

The test-time resize is the training one (``autoqvis.data.dataset``): shortest edge
``cfg.input.min_size_test``, longest at most ``cfg.input.max_size_test``, bilinear with antialiasing.
A video runs in one pass, or, with ``cfg.input.test_window = N > 0``, in windows of N frames linked by
``autoqvis.engine.windows`` (long videos in bounded memory).

Two forms of a video's prediction:
- dense (``predict_video``): {"scores": (k,), "masks": bool (k, T, H, W), "quality": (k, T) or None};
- RLE (``predict_video_rle``, what ``predict_dataset`` streams): {"scores": (k,), "segmentations": k lists of T
  RLE-or-None, "quality": (k, T) or None}. Only one video's dense masks are ever held at a time.

Under torchrun, ``predict_dataset`` splits the videos over the ranks and gathers their RLE predictions on
rank 0 in the dataset's order (``engine.dist.ordered_map``): rank 0 sees the same stream as one process.
The fast-path switches of ``cfg.train`` apply (``engine.fast_path``): bf16 autocast with ``amp_inference``
on GPU, channels-last backbone, torch.compile.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import Config
from ..data.dataset import shortest_edge_size
from ..data.ytvis import YTVISDataset, encode_masks
from ..errors import AutoQVISError
from . import dist, fast_path

RLE = dict[str, Any]


def resize_for_test(frames: np.ndarray, cfg: Config) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB -> float32 (T, 3, h, w) in 0..255 with the test-time shortest-edge size."""
    t, h, w, _ = frames.shape
    size = shortest_edge_size(h, w, cfg.input.min_size_test, cfg.input.max_size_test)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 255)
    return x


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_clip(model: torch.nn.Module, frames: np.ndarray, cfg: Config) -> dict[str, Any]:
    """One pass of the model over a clip uint8 (T, H, W, 3).

    Returns {"scores": float (k,), "masks": bool (k, T, H, W) at the input size, "quality": float (k, T) in [0, 1]
    or None without a quality predictor}, k = cfg.model.test_topk, scores descending (numpy arrays).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise AutoQVISError(f"inference: expected frames (T, H, W, 3) with T >= 1, got {tuple(frames.shape)}")
    device = _device(model)
    fast_path.prepare(model, cfg.train)
    clip = resize_for_test(frames, cfg).to(device)
    with fast_path.autocast(device, cfg.train.amp_inference):
        out = model.inference(clip, out_size=tuple(frames.shape[1:3]))
    quality = out.get("quality")
    return {
        "scores": out["scores"].float().cpu().numpy(),
        "masks": out["masks"].cpu().numpy().astype(bool),
        "quality": None if quality is None else quality.float().cpu().numpy(),
    }


def _stack(frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    arr = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
    return np.asarray(arr, dtype=np.uint8)


def predict_video(model: torch.nn.Module, frames: np.ndarray | Iterable[np.ndarray], cfg: Config) -> dict[str, Any]:
    """A whole video (uint8 (T, H, W, 3) or an iterator of (H, W, 3) frames) -> the dense prediction
    {"scores" (k,), "masks" bool (k, T, H, W), "quality" (k, T) | None} (one pass; see module doc)."""
    was_training = model.training
    model.eval()
    try:
        return predict_clip(model, _stack(frames), cfg)
    finally:
        model.train(was_training)


def _none_if_empty(rles: list[RLE | None]) -> list[RLE | None]:
    """YTVIS writes an absent object as null: empty RLEs become None."""
    return [None if r is None or mask_utils.area(r) == 0 else r for r in rles]


def predict_video_rle(model: torch.nn.Module, frames: np.ndarray | Iterable[np.ndarray], cfg: Config,
                      on_frames=None) -> dict[str, Any]:
    """A video -> the RLE prediction {"scores" (k,), "segmentations" k x T RLE-or-None, "quality" (k, T) | None},
    windowed when ``cfg.input.test_window > 0``. on_frames(n): progress callback (windowed mode)."""
    window = cfg.input.test_window
    if window <= 0:
        pred = predict_video(model, frames, cfg)
        segs = [_none_if_empty(encode_masks(m)) for m in pred["masks"]]
        return {"scores": pred["scores"], "segmentations": segs, "quality": pred["quality"]}
    from .windows import predict_windowed

    was_training = model.training
    model.eval()
    has_quality = bool(getattr(model, "has_quality", True))
    try:
        tracks, num_frames = predict_windowed(
            (np.asarray(f, dtype=np.uint8) for f in frames),
            lambda clip: _drop_none(predict_clip(model, clip, cfg)),
            window, cfg.input.test_window_overlap, on_frames=on_frames,
        )
    finally:
        model.train(was_training)
    tracks = sorted(tracks, key=lambda tr: -tr.score)[: cfg.model.test_topk]
    segs = [_none_if_empty(tr.segmentations) for tr in tracks]
    quality = None
    if has_quality:
        quality = np.array([[0.0 if q is None else q for q in tr.quality] for tr in tracks]).reshape(len(tracks), num_frames)
    return {"scores": np.array([tr.score for tr in tracks]), "segmentations": segs, "quality": quality}


def _drop_none(pred: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pred.items() if v is not None}


def predict_dataset(model: torch.nn.Module, dataset: YTVISDataset, cfg: Config, *, progress: bool = True,
                    video_ids: Iterable[int] | None = None, desc: str = "predict") -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream (video_id, RLE prediction) over the videos of ``dataset`` (all, or ``video_ids`` in that order).

    Frames are read one by one from disk; only the current video is in memory. Under torchrun every rank
    must call this with the same ``video_ids`` and run the iterator to its end: the videos are split over
    the ranks, and rank 0 yields every (video_id, prediction) in order while the other ranks yield nothing.
    """
    ids = [v.id for v in dataset.videos] if video_ids is None else list(video_ids)

    def predict_one(video_id: int) -> dict[str, Any]:
        video = dataset.video(video_id)
        frames = (dataset.read_frame(video, t) for t in range(video.length))
        return predict_video_rle(model, frames, cfg)

    bar = tqdm(total=len(ids), desc=desc, disable=not (progress and dist.is_main_process()), unit="video",
               mininterval=1.0)
    try:
        yield from dist.ordered_map(predict_one, ids, on_item=lambda: bar.update(1))
    finally:
        bar.close()


def results_from_prediction(video_id: int, pred: dict[str, Any]) -> list[dict[str, Any]]:
    """One video's prediction (dense or RLE form) -> YTVIS result dicts, best score first.

    Each: {"video_id", "score", "category_id": 1, "segmentations": [RLE | None per frame], "quality": [per frame]}
    (``quality`` only when the model has a quality predictor). Tracks empty in every frame are dropped.
    """
    if "segmentations" in pred:
        segs = pred["segmentations"]
    else:
        segs = [_none_if_empty(encode_masks(m)) for m in np.asarray(pred["masks"], dtype=bool)]
    quality = pred.get("quality")
    out = []
    for i in np.argsort(-np.asarray(pred["scores"]), kind="stable"):
        if all(s is None for s in segs[i]):
            continue
        rec = {"video_id": int(video_id), "score": float(pred["scores"][i]), "category_id": 1,
               "segmentations": list(segs[i])}
        if quality is not None:
            rec["quality"] = [float(q) for q in np.clip(quality[i], 0.0, 1.0)]
        out.append(rec)
    return out


__all__ = ["predict_clip", "predict_dataset", "predict_video", "predict_video_rle", "resize_for_test",
           "results_from_prediction"]
