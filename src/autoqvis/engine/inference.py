"""Inference over videos and datasets: test-time resize, ``model.inference``, masks back at the original size.

The test-time resize is the training one (``autoqvis.data.dataset``): shortest edge
``cfg.input.min_size_test``, longest at most ``cfg.input.max_size_test``, bilinear with antialiasing.
A video runs in one pass, or, with ``cfg.input.test_window = N > 0``, in windows of N frames linked by
``autoqvis.engine.windows`` (long videos in bounded memory).

Two forms of a video's prediction:
- dense (``predict_video``): {"scores": (k,), "masks": bool (k, T, H, W), "pred_iou": (k, T) or None};
- RLE (``predict_video_rle``, what ``predict_dataset`` streams): {"scores": (k,), "segmentations": k lists of T
  RLE-or-None, "pred_iou": (k, T) or None}. Only one video's dense masks are ever held at a time.

Under torchrun, ``predict_dataset`` splits the videos over the ranks and gathers their RLE predictions on
rank 0 in the dataset's order (``core.dist.ordered_map``): rank 0 sees the same stream as one process.
The fast-path switches of ``cfg.runtime`` apply (``engine.fast_path``): autocast with ``inference.amp_dtype``
on GPU, channels-last backbone, torch.compile.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..core import dist
from ..core.config import Config
from ..core.errors import AutoQVISError
from ..core.tracks import RLE, encode_masks
from ..data.geometry import shortest_edge_size
from ..data.ytvis import YTVISDataset
from . import fast_path
from .windows import predict_windowed


def resize_for_test(frames: np.ndarray, cfg: Config, device: torch.device | None = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB -> float32 (T, 3, h, w) in 0..255 with the test-time shortest-edge size, on ``device``
    (default CPU; on a GPU the uint8 frames cross the bus and the resize runs there)."""
    t, h, w, _ = frames.shape
    size = shortest_edge_size(h, w, cfg.input.min_size_test, cfg.input.max_size_test)
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device or "cpu").permute(0, 3, 1, 2).float()
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 255)
    return x


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _run_model(model: torch.nn.Module, frames: np.ndarray, cfg: Config) -> dict[str, Any]:
    """``model.inference`` on uint8 frames (T, H, W, 3), masks at (H, W); tensors stay on the model's device."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise AutoQVISError(f"inference: expected frames (T, H, W, 3) with T >= 1, got {tuple(frames.shape)}")
    device = _device(model)
    fast_path.prepare(model, cfg.runtime)
    clip = resize_for_test(frames, cfg, device)
    dtype = inference_amp_dtype(cfg)
    with fast_path.autocast(device, dtype is not None, dtype or torch.float32):
        return model.inference(clip, out_size=tuple(frames.shape[1:3]))


def inference_amp_dtype(cfg: Config) -> torch.dtype | None:
    """The autocast dtype of the test passes (``inference.amp_dtype``), None for float32."""
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "none": None}[cfg.inference.amp_dtype]


def _scores_and_pred_iou(out: dict[str, Any]) -> dict[str, Any]:
    pred_iou = out.get("pred_iou")
    return {"scores": out["scores"].float().cpu().numpy(),
            "pred_iou": None if pred_iou is None else pred_iou.float().cpu().numpy()}


def predict_clip(model: torch.nn.Module, frames: np.ndarray, cfg: Config) -> dict[str, Any]:
    """One pass of the model over a clip uint8 (T, H, W, 3).

    Returns {"scores": float (k,), "masks": bool (k, T, H, W) at the input size, "pred_iou": float (k, T) in
    [0, 1] (the predicted mask IoU) or None without a quality predictor}, k = cfg.model.test_topk, scores descending (numpy arrays).
    """
    out = _run_model(model, frames, cfg)
    return {**_scores_and_pred_iou(out), "masks": out["masks"].cpu().numpy().astype(bool)}


def predict_clip_rle(model: torch.nn.Module, frames: np.ndarray, cfg: Config) -> dict[str, Any]:
    """``predict_clip`` with the masks as RLE: {"scores" (k,), "segmentations": k lists of T RLEs, "pred_iou"}.

    The RLEs are those of ``tracks.encode_masks`` (empty masks included), made by :func:`encode_masks_on_device`.
    """
    out = _run_model(model, frames, cfg)
    return {**_scores_and_pred_iou(out), "segmentations": encode_masks_on_device(out["masks"])}


def encode_masks_on_device(masks: torch.Tensor) -> list[list[RLE]]:
    """bool (k, T, H, W) where the model made them -> k lists of T compressed RLEs.

    RLE runs go down the columns, so every frame must be read column-major; that transposing copy, not
    pycocotools, is most of the cost of encoding (benchmarks/RESULTS.md, "Scale-out"). On the CPU each track is
    transposed once, as bool (``tracks.encode_masks`` first copies to uint8, then to Fortran order: ~1.5x slower);
    on a GPU the run lengths themselves are found there and only they cross to the host (:func:`run_length_rles`),
    so the host's share shrinks from a pass over every pixel to packing a few thousand numbers.
    """
    if masks.device.type != "cpu":
        return run_length_rles(masks)
    return [encode_column_major(np.ascontiguousarray(track.transpose(0, 2, 1))) for track in masks.numpy()]


def run_length_rles(masks: torch.Tensor) -> list[list[RLE]]:
    """bool (k, T, H, W) on any device -> k lists of T compressed RLEs, the run lengths computed on the device."""
    k, t, h, w = masks.shape
    if k * t == 0:
        return [[] for _ in range(k)]
    return pack_runs(*run_boundaries(masks), k, t, h, w)


def run_boundaries(masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """bool (k, T, H, W) -> (changes int64 (M, 2): [frame index, position] where a column-major frame changes
    value, sorted; starts_inside bool (k*T,): the frame's first pixel is in the mask). The device does the work."""
    k, t, h, w = masks.shape
    flat = masks.transpose(-1, -2).reshape(k * t, h * w)
    return (flat[:, 1:] != flat[:, :-1]).nonzero().cpu().numpy(), flat[:, 0].cpu().numpy()


def pack_runs(changes: np.ndarray, starts_inside: np.ndarray, k: int, t: int, h: int, w: int) -> list[list[RLE]]:
    """The host half of :func:`run_length_rles`: run lengths (the first counts zeros, 0 when the frame starts inside
    the mask; the last ends at H * W) packed by pycocotools into its compressed strings."""
    per_frame = np.bincount(changes[:, 0], minlength=k * t)
    ends = np.split(changes[:, 1] + 1, np.cumsum(per_frame)[:-1])
    objects = []
    for inside, frame_ends in zip(starts_inside, ends):
        runs = np.diff(np.concatenate(([0], frame_ends, [h * w])))
        if inside:
            runs = np.concatenate(([0], runs))
        objects.append({"size": [h, w], "counts": runs.tolist()})
    rles = [{"size": [h, w], "counts": r["counts"].decode("ascii")} for r in mask_utils.frPyObjects(objects, h, w)]
    return [rles[i * t:(i + 1) * t] for i in range(k)]


def encode_column_major(masks: np.ndarray) -> list[RLE]:
    """uint8/bool (N, W, H) C-ordered, i.e. N frames stored column by column -> N compressed RLEs of the
    (H, W) masks (the same dicts as ``tracks.encode_masks(masks.transpose(0, 2, 1))``, without its copy)."""
    if len(masks) == 0:
        return []
    fortran = np.ascontiguousarray(masks).view(np.uint8).transpose(2, 1, 0)  # (H, W, N), Fortran order: a view
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            for r in mask_utils.encode(fortran)]


def _stack(frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    arr = frames if isinstance(frames, np.ndarray) else np.stack(list(frames))
    return np.asarray(arr, dtype=np.uint8)


def predict_video(model: torch.nn.Module, frames: np.ndarray | Iterable[np.ndarray], cfg: Config) -> dict[str, Any]:
    """A whole video (uint8 (T, H, W, 3) or an iterator of (H, W, 3) frames) -> the dense prediction
    {"scores" (k,), "masks" bool (k, T, H, W), "pred_iou" (k, T) | None} (one pass; see module doc)."""
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
    """A video -> the RLE prediction {"scores" (k,), "segmentations" k x T RLE-or-None, "pred_iou" (k, T) | None},
    windowed when ``cfg.input.test_window > 0``. on_frames(n): progress callback (windowed mode)."""
    window = cfg.input.test_window
    if window <= 0:
        was_training = model.training
        model.eval()
        try:
            pred = predict_clip_rle(model, _stack(frames), cfg)
        finally:
            model.train(was_training)
        pred["segmentations"] = [_none_if_empty(segs) for segs in pred["segmentations"]]
        return pred
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
    pred_iou = None
    if has_quality:
        pred_iou = np.array([[0.0 if q is None else q for q in tr.pred_iou] for tr in tracks]).reshape(len(tracks), num_frames)
    return {"scores": np.array([tr.score for tr in tracks]), "segmentations": segs, "pred_iou": pred_iou}


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


def results_from_prediction(video_id: int, pred: dict[str, Any], keep_empty_tracks: bool) -> list[dict[str, Any]]:
    """One video's prediction (dense or RLE form) -> YTVIS result dicts, best score first.

    Each: {"video_id", "score", "category_id": 1, "segmentations": [RLE | None per frame], "pred_iou": [per frame]}
    (``pred_iou``, the predicted mask IoU, only when the model has a quality predictor). Tracks empty in every frame are kept (all
    null; ``inference.keep_empty_tracks``, as the official output lists every top-k track) or dropped.
    """
    if "segmentations" in pred:
        segs = pred["segmentations"]
    else:
        segs = [_none_if_empty(encode_masks(m)) for m in np.asarray(pred["masks"], dtype=bool)]
    pred_iou = pred.get("pred_iou")
    out = []
    for i in np.argsort(-np.asarray(pred["scores"]), kind="stable"):
        if not keep_empty_tracks and all(s is None for s in segs[i]):
            continue
        rec = {"video_id": int(video_id), "score": float(pred["scores"][i]), "category_id": 1,
               "segmentations": list(segs[i])}
        if pred_iou is not None:
            rec["pred_iou"] = [float(q) for q in np.clip(pred_iou[i], 0.0, 1.0)]
        out.append(rec)
    return out


__all__ = ["inference_amp_dtype", "encode_column_major", "encode_masks_on_device", "run_length_rles", "predict_clip", "predict_clip_rle", "predict_dataset", "predict_video",
           "predict_video_rle", "resize_for_test", "results_from_prediction"]
