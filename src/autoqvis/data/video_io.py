"""Video input and output: mp4/webm files (PyAV) and frame folders (jpg/png), streamed.

``VideoReader`` yields uint8 (H, W, 3) RGB frames one at a time (``iter``) or in overlapping windows
(``windows``), so a long video never has to sit in memory whole. An optional target frame rate picks
frames by timestamp (YouTubeVIS is annotated at 6 fps); a video is never upsampled. Writers produce
h264/yuv420p mp4 and looping gif files, atomically.
"""

from __future__ import annotations

import io
import os
import re
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import AutoQVISError, first_line
from ..core.fileio import atomic_open, atomic_write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


def natural_key(name: str) -> list[object]:
    """Sort key that orders ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder in natural order; anything else in it is an error.

    Hidden files (``.DS_Store``...) are ignored. Raises AutoQVISError for a missing or empty folder and
    for a file or sub-folder that is not a jpg/png image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoQVISError(f"{folder}: frame folder not found")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    strays = sorted((p for p in entries if not (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)),
                    key=lambda p: natural_key(p.name))
    if strays:
        names = ", ".join(p.name for p in strays[:3]) + (" ..." if len(strays) > 3 else "")
        raise AutoQVISError(f"{folder}: frame folder holds {len(strays)} entries that are not jpg/png images ({names})")
    if not entries:
        raise AutoQVISError(f"{folder}: frame folder holds no jpg/png frames")
    return sorted(entries, key=lambda p: (natural_key(p.name), p.name))


# ------------------------------------------------------------------------------------- resampling
def resample_indices(times: Sequence[float], fps: float | None) -> list[int]:
    """Indices of the frames to keep so that the kept frames run at about ``fps``.

    Args:
        times: presentation time of every source frame in seconds, increasing, (n,).
        fps: target rate; None or a rate at or above the source's keeps every frame.
    Returns:
        Increasing indices into ``times``: for each tick ``t0 + k / fps`` the first frame no earlier than
        half a source frame before it (the nearest frame on a regular grid), each frame at most once.
    """
    n = len(times)
    if fps is None or n < 2:
        return list(range(n))
    times = np.asarray(times, dtype=np.float64)
    half_step = 0.5 * float(np.median(np.diff(times)))
    period = 1.0 / fps
    keep, tick = [], times[0]
    for i, t in enumerate(times):
        if t >= tick - half_step - 1e-9:
            keep.append(i)
            while tick - half_step - 1e-9 <= t:
                tick += period
    return keep


# ----------------------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class VideoInfo:
    """What a reader will yield: ``num_frames`` frames of ``height`` x ``width`` at ``fps``
    (None for a frame folder with no known rate). ``source_*`` describe the input before resampling."""

    path: Path
    num_frames: int
    height: int
    width: int
    fps: float | None
    source_num_frames: int
    source_fps: float | None


class VideoReader:
    """Streamed frames of a video file, a frame folder or an explicit list of frame files.

    Args:
        source: an mp4/webm/... file, a folder of jpg/png frames, or a list of frame image paths.
        fps: optional target rate (frames picked by timestamp, see ``resample_indices``).
        folder_fps: the rate of a frame folder / frame list (needed to resample one; ignored for files).
    Frames are uint8 (H, W, 3) RGB. Corrupt, empty or zero-frame inputs, frame folders with mixed sizes,
    stray files or missing frames raise AutoQVISError naming the path.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], fps: float | None = None,
                 folder_fps: float | None = None) -> None:
        for name, rate in (("fps", fps), ("folder_fps", folder_fps)):
            if rate is not None and not rate > 0:
                raise AutoQVISError(f"{source}: {name} must be a positive number, got {rate}")
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_dir():
            self.path = Path(source)
            self.frame_files: list[Path] | None = None
            times, (h, w), source_fps = _probe_container(self.path)
        else:
            if isinstance(source, (str, os.PathLike)):
                self.path = Path(source)
                self.frame_files = list_frame_files(self.path)
            else:
                self.frame_files = [Path(p) for p in source]
                if not self.frame_files:
                    raise AutoQVISError("frame list: no frames given")
                self.path = self.frame_files[0].parent
            h, w = _check_frame_files(self.frame_files, self.path)
            source_fps = folder_fps
            if fps is not None and folder_fps is None:
                raise AutoQVISError(
                    f"{self.path}: frames carry no timestamps; give their rate to resample to {fps} fps")
            step = 1.0 / folder_fps if folder_fps else 1.0
            times = [i * step for i in range(len(self.frame_files))]
        self._times = times
        self.indices = resample_indices(times, fps)  # a rate above the source's keeps every frame
        out_fps = fps if source_fps is None else (source_fps if fps is None else min(fps, source_fps))
        self.info = VideoInfo(self.path, len(self.indices), h, w, out_fps, len(times), source_fps)

    def __len__(self) -> int:
        return self.info.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the selected frames in order, decoding one at a time."""
        wanted = iter(self.indices)
        nxt = next(wanted, None)
        for i, frame in enumerate(self._all_frames()):
            if nxt is None:
                return
            if i == nxt:
                yield frame
                nxt = next(wanted, None)
        if nxt is not None:
            raise AutoQVISError(f"{self.path}: video ended early: frame {nxt} of {len(self._times)} does not decode")

    def windows(self, size: int, overlap: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, frames (t, H, W, 3))`` windows of ``size`` frames overlapping by ``overlap``.

        Consecutive windows start ``size - overlap`` frames apart; the last one ends at the last frame
        (it may overlap its predecessor more). At most ``size`` frames are held at a time.
        """
        if size < 1 or not 0 <= overlap < size:
            raise AutoQVISError(f"window size {size} / overlap {overlap}: need size >= 1 and 0 <= overlap < size")
        n, stride = len(self), size - overlap
        starts = list(range(0, max(n - size, 0) + 1, stride))
        if starts[-1] + size < n:
            starts.append(n - size)
        ends = {min(s + size, n) - 1: s for s in starts}  # last frame index -> window start
        buf: deque[tuple[int, np.ndarray]] = deque(maxlen=size)
        for i, frame in enumerate(self):
            buf.append((i, frame))
            if i in ends:
                yield ends[i], np.stack([f for j, f in buf if j >= ends[i]])

    def read(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames ``start .. start + count - 1`` (all remaining when ``count`` is None): (t, H, W, 3)."""
        stop = len(self) if count is None else min(len(self), start + count)
        frames = [f for i, f in zip(range(stop), self) if i >= start]
        if not frames:
            raise AutoQVISError(f"{self.path}: no frames in range {start}..{stop - 1} (video has {len(self)})")
        return np.stack(frames)

    def _all_frames(self) -> Iterator[np.ndarray]:
        if self.frame_files is not None:
            for p in self.frame_files:
                yield _read_frame_file(p, (self.info.height, self.info.width))
        else:
            yield from _decode_container(self.path)


def read_video(source: str | os.PathLike | Sequence[str | os.PathLike], fps: float | None = None) -> np.ndarray:
    """All (selected) frames at once: uint8 (T, H, W, 3). Prefer ``VideoReader`` for long videos."""
    return VideoReader(source, fps=fps).read()


def _open_container(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise AutoQVISError(f"{path}: not found (neither a video file nor a frame folder)")
    if path.stat().st_size == 0:
        raise AutoQVISError(f"{path}: video file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise AutoQVISError(f"{path}: not a readable video ({first_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise AutoQVISError(f"{path}: holds no video stream")
    return container


def _probe_container(path: Path) -> tuple[list[float], tuple[int, int], float | None]:
    """Frame times (seconds from the first frame), (height, width) and the stream's rate, without decoding."""
    with _open_container(path) as container:
        stream = container.streams.video[0]
        try:
            pts = [p.pts for p in container.demux(stream) if p.size]
        except av.FFmpegError as e:
            raise AutoQVISError(f"{path}: corrupt video ({first_line(e)})") from None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if not pts:
            raise AutoQVISError(f"{path}: video has zero frames")
        if any(p is None for p in pts) or stream.time_base is None:
            step = 1.0 / fps if fps else 1.0
            times = [i * step for i in range(len(pts))]
        else:
            ordered = sorted(pts)
            times = [float((p - ordered[0]) * stream.time_base) for p in ordered]
        h, w = stream.codec_context.height, stream.codec_context.width
        if not h or not w:
            raise AutoQVISError(f"{path}: video stream reports no frame size")
        return times, (h, w), fps


def _decode_container(path: Path) -> Iterator[np.ndarray]:
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                i += 1
        except av.FFmpegError as e:
            raise AutoQVISError(f"{path}: corrupt video: decoding failed after {i} frames ({first_line(e)})") from None


def _check_frame_files(files: list[Path], where: Path) -> tuple[int, int]:
    """Every frame exists, is an image, and all share one size; returns (height, width)."""
    size = None
    for p in files:
        try:
            with Image.open(p) as im:
                wh = im.size
        except FileNotFoundError:
            raise AutoQVISError(f"{p}: frame file not found") from None
        except (UnidentifiedImageError, OSError) as e:
            raise AutoQVISError(f"{p}: not a readable image ({first_line(e)})") from None
        if size is None:
            size, first = wh, p
        elif wh != size:
            raise AutoQVISError(
                f"{where}: frames differ in size: {first.name} is {size[1]}x{size[0]}, "
                f"{p.name} is {wh[1]}x{wh[0]} (HxW)"
            )
    assert size is not None
    return size[1], size[0]


def _read_frame_file(path: Path, hw: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            frame = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise AutoQVISError(f"{path}: frame file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise AutoQVISError(f"{path}: not a readable image ({first_line(e)})") from None
    if frame.shape[:2] != hw:
        raise AutoQVISError(f"{path}: frame is {frame.shape[0]}x{frame.shape[1]}, the video is {hw[0]}x{hw[1]} (HxW)")
    return frame


# ---------------------------------------------------------------------------------------- writers
def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None, path: Path, index: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise AutoQVISError(f"{path}: frame {index} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise AutoQVISError(f"{path}: frame {index} is {frame.shape[:2]}, the first frame is {shape[:2]}")
    return frame


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, crf: int = 18) -> int:
    """Encode uint8 (H, W, 3) RGB frames as h264/yuv420p mp4; returns the number of frames written.

    yuv420p needs even sizes: an odd height or width is padded by repeating the last row/column.
    Frames are consumed one at a time (a generator works); the file appears only when complete.
    """
    path = Path(path)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise AutoQVISError(f"{path}: no frames to write")
    first = _check_frame(first, None, path, 0)
    h, w = first.shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    count = 0
    with atomic_open(path, "wb") as f:
        with av.open(f, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            stream.options = {"crf": str(crf)}
            for count, frame in enumerate(chain([first], it)):
                frame = np.pad(_check_frame(frame, first.shape, path, count), pad, mode="edge")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
    return count + 1


def write_gif(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write uint8 (H, W, 3) RGB frames as a looping gif (Pillow); returns the number of frames."""
    path = Path(path)
    # fast octree palettes: Pillow's default median cut costs ~40x more CPU for the same picture
    images = [Image.fromarray(_check_frame(f, None, path, i)).quantize(256, method=Image.Quantize.FASTOCTREE)
              for i, f in enumerate(frames)]
    if not images:
        raise AutoQVISError(f"{path}: no frames to write")
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000.0 / fps)), loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return len(images)


def write_image(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """Write one uint8 (H, W, 3) RGB frame as jpg or png (by suffix), atomically."""
    path = Path(path)
    frame = _check_frame(frame, None, path, 0)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoReader",
    "is_video_file",
    "list_frame_files",
    "natural_key",
    "read_video",
    "resample_indices",
    "write_gif",
    "write_image",
    "write_mp4",
]
