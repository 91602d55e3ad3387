"""What caps the toy model? Evaluation-only diagnosis of one checkpoint on the toy world (issue 16, step 1).

    .venv/bin/python benchmarks/diagnose_toy.py [--checkpoint src/autoqvis/assets/toy_init.pt] [--config toy]
        [--work /tmp/diagnose_toy] [--world-args num_train_videos=96 num_val_videos=96] [--threads 2]

On the same predictions of the model it reports, class-agnostic, x100:
- video AP50 / AP on the target val split (what every table of RESULTS.md reports);
- frame AP50 / AP: every (video, frame) scored as a one-frame video, the predicted tracks cut into their frames
  (is it association across frames that costs AP, or finding the objects in a frame?);
- the same model on the val videos cut into 3-frame clips (the training clip length; 8-16 at test time);
- AP on held-out *source-domain* clips: stills of another world seed with their TRUE masks, through the same
  ImageCut2Video as training (domain gap vs model: a model that is good on its own domain but bad on the target is
  held back by the gap; one that is bad on both is held back by itself);
- the same held-out stills as one-frame videos, no augmentation.
Writes a json of all numbers in --work; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from autoqvis.model.checkpoint import load_model
from autoqvis.data.ytvis import Annotation, Video, YTVISDataset, load_ytvis
from autoqvis.engine.inference import predict_dataset, results_from_prediction
from autoqvis.eval.ytvis_eval import evaluate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def autoqvis(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "autoqvis", *args], check=True, stdout=subprocess.DEVNULL)


def per_frame(gt: YTVISDataset, results: list[dict]) -> tuple[YTVISDataset, list[dict]]:
    """Every (video, frame) as a one-frame video; tracks cut into their frames (empty frames dropped)."""
    videos, anns, res = [], [], []
    for v in gt.videos:
        for t in range(v.length):
            vid = v.id * 1000 + t
            videos.append(Video(id=vid, width=v.width, height=v.height, file_names=[v.file_names[t]]))
    for a in gt.annotations:
        for t, seg in enumerate(a.segmentations):
            if seg is not None:
                anns.append(Annotation(id=len(anns) + 1, video_id=a.video_id * 1000 + t, category_id=1,
                                       segmentations=[seg], areas=[a.areas[t]], bboxes=[a.bboxes[t]],
                                       iscrowd=a.iscrowd))
    for r in results:
        for t, seg in enumerate(r["segmentations"]):
            if seg is not None:
                res.append({"video_id": r["video_id"] * 1000 + t, "score": r["score"], "category_id": 1,
                            "segmentations": [seg]})
    return YTVISDataset(videos=videos, annotations=anns, categories=gt.categories, image_root=gt.image_root), res


def clips(gt: YTVISDataset, length: int = 3) -> YTVISDataset:
    """The val videos cut into consecutive clips of ``length`` frames (the model is run on each clip anew)."""
    videos, anns = [], []
    starts = {v.id: list(range(0, v.length - length + 1, length)) for v in gt.videos}
    for v in gt.videos:
        for s in starts[v.id]:
            videos.append(Video(id=v.id * 1000 + s, width=v.width, height=v.height,
                                file_names=v.file_names[s:s + length]))
    for a in gt.annotations:
        for s in starts[a.video_id]:
            segs = a.segmentations[s:s + length]
            if any(x is not None for x in segs):
                anns.append(Annotation(id=len(anns) + 1, video_id=a.video_id * 1000 + s, category_id=1,
                                       segmentations=segs, areas=a.areas[s:s + length],
                                       bboxes=a.bboxes[s:s + length], iscrowd=a.iscrowd))
    return YTVISDataset(videos=videos, annotations=anns, categories=gt.categories, image_root=gt.image_root)


def predict(model, cfg, data: YTVISDataset) -> list[dict]:
    results: list[dict] = []
    for vid, pred in predict_dataset(model, data, cfg, progress=False):
        results.extend(results_from_prediction(vid, pred, cfg.inference.keep_empty_tracks))
    return results


def scores(gt: YTVISDataset, results: list[dict]) -> dict[str, float]:
    m = evaluate(gt, results)
    return {k: round(100 * m[k], 1) for k in ("AP50", "AP", "AR10")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "src/autoqvis/assets/toy_init.pt"))
    ap.add_argument("--config", default=None, help="config (default: the checkpoint's)")
    ap.add_argument("--work", default="/tmp/diagnose_toy")
    ap.add_argument("--world-args", nargs="*", default=["num_train_videos=96", "num_val_videos=96"])
    ap.add_argument("--heldout-stills", type=int, default=200, help="held-out source stills (world seed 1)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    world, held = work / "world", work / "heldout"
    if not (world / "val.json").exists():
        autoqvis("toyworld", "--out", str(world), "--seed", "0", *args.world_args)
    if not (held / "source_gt.json").exists():
        autoqvis("toyworld", "--out", str(held), "--seed", "1", f"num_stills={args.heldout_stills}",
                 "num_train_videos=1", "num_val_videos=1")
    model, cfg = load_model(args.checkpoint, args.config, "cpu")
    if not (held / "clips" / "synthetic.json").exists():
        # the training augmentation of the checkpoint's config, on the TRUE masks of unseen stills
        autoqvis("synth", "--images", str(held / "images"), "--annotations", str(held / "source_gt.json"),
                 "--out", str(held / "clips"), "--seed", "1", "--config", "toy", "--no-progress")
    t0 = time.perf_counter()
    val = load_ytvis(world / "val.json")
    rows: dict[str, dict[str, float]] = {}
    res = predict(model, cfg, val)
    rows["target val, video (8-16 frames)"] = scores(val, res)
    fgt, fres = per_frame(val, res)
    rows["target val, frames of the same predictions"] = scores(fgt, fres)
    cval = clips(val, 3)
    rows["target val, cut into 3-frame clips, run anew"] = scores(cval, predict(model, cfg, cval))
    src = load_ytvis(held / "clips" / "synthetic.json")
    rows["held-out source clips (true masks, training augmentation)"] = scores(src, predict(model, cfg, src))
    fsrc, _ = per_frame(src, [])
    still_ids = sorted({v.id // 1000 for v in fsrc.videos})
    first = YTVISDataset(videos=[v for v in fsrc.videos if v.id % 1000 == 0],
                         annotations=[a for a in fsrc.annotations if a.video_id % 1000 == 0],
                         categories=src.categories, image_root=src.image_root)
    rows["held-out source, first frame alone"] = scores(first, predict(model, cfg, first))
    out = {"checkpoint": args.checkpoint, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
           "num_source_clips": len(still_ids)}
    (work / "diagnosis.json").write_text(json.dumps(out, indent=1))
    print(f"| data | AP50 | AP | AR10 |\n|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['AP50']} | {m['AP']} | {m['AR10']} |")


if __name__ == "__main__":
    main()
