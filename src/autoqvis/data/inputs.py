"""Input discovery: the videos named by a path (a video file, a folder of frames, a folder of videos and/or frame
folders, or a YouTubeVIS json), each probed, and the YouTubeVIS record describing them (predict, visualize); a folder
of unlabeled videos as a YouTubeVIS set (selftrain)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json
from .video_io import IMAGE_EXTENSIONS, VideoReader, is_video_file, list_frame_files, natural_key, write_image
from .ytvis import Video, YTVISDataset, load_ytvis

DEFAULT_FPS = 6.0  # overlay rate of frame folders without a known rate (YouTubeVIS's annotation rate)


@dataclass
class InputVideo:
    """One input video as it will be read: ``reader`` streams its (resampled) frames; ``file_names`` are the
    frame paths relative to the image root (virtual for a video file, whose frames are decoded from
    ``container``)."""

    video_id: int
    name: str
    reader: VideoReader
    file_names: list[str]
    container: Path | None = None
    target_fps: float | None = None  # the --fps asked for (None: every frame)

    def record(self) -> dict[str, Any]:
        """The YouTubeVIS video record of ``videos.json`` (``source``/``fps`` say how to decode a video file)."""
        info = self.reader.info
        rec: dict[str, Any] = {"id": self.video_id, "name": self.name, "width": info.width, "height": info.height,
                               "length": len(self.file_names), "file_names": self.file_names}
        if self.container is not None:
            rec["source"] = str(self.container.resolve())
            rec["fps"] = self.target_fps
        return rec

    @property
    def fps(self) -> float:
        return self.reader.info.fps or DEFAULT_FPS


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "video"


def video_file_input(video_id: int, path: Path, fps: float | None) -> InputVideo:
    reader = VideoReader(path, fps=fps)
    name = safe_name(path.stem)
    return InputVideo(video_id, name, reader, [f"{name}/{t:05d}.jpg" for t in range(len(reader))], path, fps)


def frame_folder_input(video_id: int, folder: Path, root: Path, fps: float | None,
                       frames_fps: float | None) -> InputVideo:
    files = list_frame_files(folder)
    reader = VideoReader(files, fps=fps, folder_fps=frames_fps)
    names = [files[i].relative_to(root).as_posix() for i in reader.indices]
    return InputVideo(video_id, safe_name(folder.name), reader, names)


def discover_inputs(path: str | os.PathLike, fps: float | None = None,
                    frames_fps: float | None = None) -> tuple[list[InputVideo], Path]:
    """The videos named by ``path`` (VIDEO | FRAMES_DIR | VIDEOS_DIR | YTVIS.json), each probed (so a bad one fails
    here, before anything is written), with the image root their ``file_names`` are relative to."""
    path = Path(path)
    if not path.exists():
        raise AutoQVISError(f"{path}: input not found")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return ytvis_inputs(path, fps, frames_fps)
        if not is_video_file(path):
            raise AutoQVISError(f"{path}: not a video (mp4, webm, mkv, mov, avi, m4v), a frame folder or a YTVIS json")
        return [video_file_input(1, path, fps)], path.parent
    entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    if any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        return [frame_folder_input(1, path, path.parent, fps, frames_fps)], path.parent
    videos = [p for p in entries if (p.is_file() and is_video_file(p)) or p.is_dir()]
    if not videos:
        raise AutoQVISError(f"{path}: folder holds no frames (jpg/png), videos or frame folders")
    out, used = [], set()
    for k, p in enumerate(videos, start=1):
        item = frame_folder_input(k, p, path, fps, frames_fps) if p.is_dir() else video_file_input(k, p, fps)
        if item.name in used:  # a.mp4 and a.webm
            item.name = f"{item.name}_{k}"
            if item.container is not None:
                item.file_names = [f"{item.name}/{t:05d}.jpg" for t in range(len(item.file_names))]
        used.add(item.name)
        out.append(item)
    return out, path


def ytvis_inputs(path: Path, fps: float | None, frames_fps: float | None) -> tuple[list[InputVideo], Path]:
    """The videos of a YouTubeVIS json (its own ids), frames from its image root."""
    dataset = load_ytvis(path)
    if not dataset.videos:
        raise AutoQVISError(f"{path}: holds no videos")
    root = Path(dataset.image_root or path.parent)
    out = []
    for v in dataset.videos:
        reader = VideoReader([dataset.frame_path(v, t) for t in range(v.length)], fps=fps, folder_fps=frames_fps)
        first = Path(v.file_names[0]).parent.name
        out.append(InputVideo(v.id, safe_name(first or f"video_{v.id}"), reader,
                              [v.file_names[i] for i in reader.indices]))
    return out, root


def videos_json(inputs: list[InputVideo], image_root: Path) -> dict[str, Any]:
    """A YouTubeVIS json (no annotations) describing ``inputs``; ``image_root`` (absolute) is kept as an extra key
    so that the frames can be found from wherever the file is read."""
    return {"info": {"description": "inputs of autoqvis predict"}, "image_root": str(image_root.resolve()),
            "videos": [v.record() for v in inputs], "annotations": [],
            "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}


def unlabeled_from_folder(folder: Path, dest: Path, fps: float | None) -> YTVISDataset:
    """A folder of video files and/or frame folders -> a YTVIS dataset (no annotations).

    Frame folders alone are used in place; otherwise every video is written as jpg frames under
    ``dest/JPEGImages/<name>/`` (once: ``dest/unlabeled.json`` is reused on resume).
    """
    index = dest / "unlabeled.json"
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".") and (p.is_dir() or is_video_file(p))),
                     key=lambda p: natural_key(p.name))
    if not entries:
        raise AutoQVISError(f"{folder}: holds no video file and no frame folder")
    in_place = all(p.is_dir() for p in entries)
    root = folder if in_place else dest / "JPEGImages"
    if index.exists():
        return load_ytvis(index, image_root=root)
    readers = [VideoReader(path, fps=None if path.is_dir() else fps) for path in entries]  # probe all first
    videos = []
    for vid, (path, reader) in enumerate(zip(entries, readers), 1):
        if in_place:
            names = [f"{path.name}/{f.name}" for f in reader.frame_files or []]
        else:
            names = []
            for t, frame in enumerate(reader):
                names.append(f"{path.stem}/{t:05d}.jpg")
                write_image(root / names[-1], frame)
        videos.append(Video(vid, names, reader.info.height, reader.info.width))
    ds = YTVISDataset(videos, [], [{"id": 1, "name": "object", "supercategory": "object"}], root)
    atomic_write_json(index, ds.to_dict())
    return load_ytvis(index, image_root=root)
