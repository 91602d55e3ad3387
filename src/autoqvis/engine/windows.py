"""Long videos in bounded memory: run the VIS model on windows of N frames that overlap by O frames, and link the
tracks of consecutive windows by their mask IoU on the shared frames (Hungarian matching).

VideoMask2Former segments a whole video in one pass, which runs out of memory past ~100 frames. Here only the
current window's frames and masks are dense; every finished frame is stored as RLE at once.

Rules (documented here because they decide the output):
- Overlap frames take a linked track's mask and predicted IoU from the later window (it saw those frames with what
  follows); a track that ends at the overlap keeps the earlier window's masks there.
- A track of the new window without a partner (IoU < ``min_iou``) starts a new identity.
- A track's score is the MEAN of its window scores (max would let one confident window carry a track that is
  wrong elsewhere); the predicted IoU of a frame comes from the window that produced that frame's mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..core.errors import AutoQVISError
from ..core.tracks import RLE, encode_masks, video_iou

# frames uint8 (n, H, W, 3) -> {"scores": (k,), "masks": bool (k, n, H, W), "pred_iou": (k, n) in [0, 1]}
ClipPredictor = Callable[[np.ndarray], dict[str, Any]]

DEFAULT_LINK_IOU = 0.5


@dataclass
class Track:
    """One identity over the whole video. ``segmentations``/``pred_iou`` grow frame by frame; None where the track
    was not predicted (frames outside its windows)."""

    track_id: int
    window_scores: list[float] = field(default_factory=list)
    segmentations: list[RLE | None] = field(default_factory=list)
    pred_iou: list[float | None] = field(default_factory=list)

    @property
    def score(self) -> float:
        return float(np.mean(self.window_scores)) if self.window_scores else 0.0

    def put(self, t: int, rle: RLE, pred_iou: float) -> None:
        """Set frame ``t`` (frames before it that this track never saw stay None)."""
        while len(self.segmentations) <= t:
            self.segmentations.append(None)
            self.pred_iou.append(None)
        self.segmentations[t] = rle
        self.pred_iou[t] = pred_iou


def check_window(window: int | None, overlap: int) -> None:
    """Raise AutoQVISError unless ``window`` is None (whole video) or ``window > overlap >= 1``."""
    if window is None:
        return
    if window < 2:
        raise AutoQVISError(f"--window {window}: a window needs at least 2 frames (0 = whole video in one pass)")
    if not 1 <= overlap < window:
        raise AutoQVISError(
            f"--overlap {overlap}: must be at least 1 (tracks are linked on shared frames) and less than "
            f"--window {window}"
        )


def iter_windows(frames: Iterable[np.ndarray], window: int | None, overlap: int) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of frames uint8 (H, W, 3) into windows.

    Yields (start, clip uint8 (n, H, W, 3)): windows of ``window`` frames, each sharing its first ``overlap`` frames
    with the previous one; the last one may be shorter but always holds a frame no earlier window had. With
    ``window=None`` the whole video is one window. Only the current window is held in memory.
    """
    buffer: list[np.ndarray] = []
    start, fresh = 0, 0  # fresh: frames in the buffer that no window has covered yet
    for frame in frames:
        buffer.append(frame)
        fresh += 1
        if window is not None and len(buffer) == window:
            yield start, np.stack(buffer)
            buffer = buffer[len(buffer) - overlap :]
            start += window - overlap
            fresh = 0
    if fresh:
        yield start, np.stack(buffer)


def link_tracks(iou: np.ndarray, min_iou: float = DEFAULT_LINK_IOU) -> list[tuple[int, int]]:
    """One-to-one links (i, j) between A earlier and B later tracks: Hungarian matching on ``iou`` (A, B) that
    maximises the total IoU, keeping pairs with IoU >= ``min_iou`` (and > 0). Sorted by i."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= min_iou and iou[i, j] > 0]


def as_numpy(x: Any) -> np.ndarray:
    """Tensor or array-like -> numpy (for predictors that return torch tensors)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass
class WindowTracks:
    """A window's tracks as RLE: ``rles[k][f]`` and ``pred_iou[k][f]`` for local frame f; ``scores[k]``."""

    start: int
    scores: list[float]
    rles: list[list[RLE]]
    pred_iou: list[list[float]]

    @classmethod
    def encode(cls, start: int, pred: dict[str, Any], num_frames: int) -> "WindowTracks":
        """From a predictor's output (masks bool (k, n, H, W)); the dense masks are dropped right after."""
        masks = as_numpy(pred["masks"]).astype(bool)
        scores = as_numpy(pred["scores"]).astype(np.float64).reshape(-1)
        k = len(scores)
        pred_iou = as_numpy(pred.get("pred_iou", np.ones((k, num_frames)))).astype(np.float64).reshape(k, -1)
        if masks.shape[:2] != (k, num_frames) or pred_iou.shape[1] != num_frames:
            raise AutoQVISError(
                f"window at frame {start}: the model returned masks {tuple(masks.shape)} and pred_iou "
                f"{tuple(pred_iou.shape)} for {k} scores and {num_frames} frames"
            )
        rles = [encode_masks(masks[i]) for i in range(k)]
        return cls(start, scores.tolist(), rles, pred_iou.clip(0.0, 1.0).tolist())


class WindowLinker:
    """Accumulates consecutive windows into identities. Call ``add`` per window in order, then ``finish``."""

    def __init__(self, overlap: int, min_iou: float = DEFAULT_LINK_IOU):
        self.overlap = overlap
        self.min_iou = min_iou
        self.tracks: list[Track] = []
        self.pending: WindowTracks | None = None  # the last window; its shared tail is not written yet
        self.pending_ids: list[int] = []
        self.pending_len = 0
        self.num_frames = 0

    def add(self, win: WindowTracks, num_frames: int) -> None:
        """Link ``win`` (frames [win.start, win.start + num_frames), its first ``overlap`` shared with the previous
        window) to the previous window, and write every frame that no later window can change."""
        ids = self.assign_ids(win)
        if self.pending is not None:
            self.flush_ended(set(ids))
        for i, tid in enumerate(ids):
            self.tracks[tid].window_scores.append(win.scores[i])
        # the last `overlap` frames wait for the next window (or finish())
        self.write(win, ids, 0, max(0, num_frames - self.overlap))
        self.pending, self.pending_ids, self.pending_len = win, ids, num_frames
        self.num_frames = win.start + num_frames

    def assign_ids(self, win: WindowTracks) -> list[int]:
        """Identity (index into ``self.tracks``) of each track of ``win``: its linked predecessor's, else a new one."""
        ids: list[int | None] = [None] * len(win.scores)
        if self.pending is not None:
            tail = [r[self.pending_len - self.overlap :] for r in self.pending.rles]
            head = [r[: self.overlap] for r in win.rles]
            for i, j in link_tracks(video_iou(tail, head)[0], self.min_iou):
                ids[j] = self.pending_ids[i]
        for j, tid in enumerate(ids):
            if tid is None:
                ids[j] = len(self.tracks)
                self.tracks.append(Track(track_id=len(self.tracks) + 1))
        return [int(t) for t in ids if t is not None]

    def flush_ended(self, continuing: set[int]) -> None:
        """Write the previous window's shared frames for its tracks that the new window does not continue."""
        assert self.pending is not None
        lo = max(0, self.pending_len - self.overlap)
        for i, tid in enumerate(self.pending_ids):
            if tid not in continuing:
                self.write_one(self.pending, i, tid, lo, self.pending_len)

    def write(self, win: WindowTracks, ids: list[int], lo: int, hi: int) -> None:
        for i, tid in enumerate(ids):
            self.write_one(win, i, tid, lo, hi)

    def write_one(self, win: WindowTracks, i: int, tid: int, lo: int, hi: int) -> None:
        for f in range(lo, hi):
            self.tracks[tid].put(win.start + f, win.rles[i][f], win.pred_iou[i][f])

    def finish(self) -> list[Track]:
        """Write the last window's tail; every track gets exactly ``num_frames`` entries (None outside its windows)."""
        if self.pending is not None:
            n = self.pending_len
            self.write(self.pending, self.pending_ids, max(0, n - self.overlap), n)
            self.pending = None
        for tr in self.tracks:
            tr.segmentations.extend([None] * (self.num_frames - len(tr.segmentations)))
            tr.pred_iou.extend([None] * (self.num_frames - len(tr.pred_iou)))
        return self.tracks


def predict_windowed(
    frames: Iterable[np.ndarray],
    predict_clip: ClipPredictor,
    window: int | None,
    overlap: int,
    *,
    min_iou: float = DEFAULT_LINK_IOU,
    on_frames: Callable[[int], None] | None = None,
) -> tuple[list[Track], int]:
    """Segment and track a video of any length.

    Args:
        frames: iterable of uint8 (H, W, 3) RGB frames (streamed; e.g. a video_io reader).
        predict_clip: the model on one window, see ``ClipPredictor``.
        window: frames per window, or None for the whole video in one pass.
        overlap: frames shared by consecutive windows (>= 1 when ``window`` is set).
        min_iou: IoU on the shared frames needed to link two tracks.
        on_frames: called with the number of new frames after each window (progress bars).
    Returns:
        (tracks, T): identities with T segmentations (RLE or None) and qualities each, and the frame count T.
    """
    check_window(window, overlap)
    linker = WindowLinker(overlap if window is not None else 0, min_iou)
    done = 0
    for start, clip in iter_windows(frames, window, overlap):
        n = len(clip)
        pred = predict_clip(clip)
        del clip
        linker.add(WindowTracks.encode(start, pred, n), n)
        del pred
        if on_frames is not None:
            on_frames(start + n - done)
        done = start + n
    return linker.finish(), done
