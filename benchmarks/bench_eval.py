"""Speed, memory and agreement of ``autoqvis evaluate`` against the official YouTubeVIS evaluator.

Generates YouTubeVIS-val-sized sets (302 videos, 36 frames at 360x640, 100 predictions per video;
~2.3 and 10 GT objects per video: moving, growing/shrinking ellipses that enter and leave; noisy
tracked copies of each GT plus false-positive tracks), then times load + evaluate of

* ours: ``autoqvis.eval.ytvis_eval.evaluate`` (validation included, 2 worker processes), and
* the official ``ytvoseval`` code (the copy in the PyPI package ``mmdet``, ``useCats = 0``, as
  VideoCutLER's ``eval_ytvis.py``), one core,

each in a fresh subprocess (so peak RSS is its own), checks that the 12 numbers are identical and
writes a table under ``## Evaluator`` in ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/bench_eval.py [--videos 302] [--skip-official] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from results_md import cpu_name, replace_section  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

HERE = Path(__file__).resolve().parent
H, W, T = 360, 640, 36
SETS = {"gt2.3": 2.3, "gt10": 10.0}


# ------------------------------------------------------------------------------------ generation
def ellipse_rles(cy: np.ndarray, cx: np.ndarray, ry: np.ndarray, rx: np.ndarray) -> list[dict | None]:
    """Axis-aligned filled ellipses, (N,) centres/radii in pixels -> N compressed RLEs (None if empty).

    Each column of an ellipse is one vertical interval, so the column-major runs come straight from
    the interval ends (all masks at once); pycocotools turns them into compressed RLE.
    """
    x = np.arange(W)[None, :] + 0.5
    half = ry[:, None] * np.sqrt(np.clip(1 - ((x - cx[:, None]) / rx[:, None]) ** 2, 0, None))  # (N, W)
    top = np.clip(np.ceil(cy[:, None] - half - 0.5), 0, H).astype(np.int64)
    bot = np.clip(np.floor(cy[:, None] + half - 0.5) + 1, 0, H).astype(np.int64)
    filled = (bot > top) & (half > 0)
    cols = np.broadcast_to(np.arange(W), filled.shape)
    edges = np.stack([cols * H + top, cols * H + bot], -1)[filled]  # (K, 2) interval ends, mask by mask
    per_mask = filled.sum(1)
    out: list[dict | None] = []
    offset = 0
    for n in range(len(cy)):
        if per_mask[n] == 0:
            out.append(None)
            continue
        e = edges[offset:offset + per_mask[n]].ravel()
        offset += per_mask[n]
        touching = np.flatnonzero(e[1:-1:2] == e[2::2])  # interval ends where the next column starts
        if len(touching):
            e = np.delete(e, np.r_[2 * touching + 1, 2 * touching + 2])
        counts = np.diff(e, prepend=0, append=H * W).astype(np.uint64)
        rle = mask_utils.frPyObjects({"size": [H, W], "counts": counts}, H, W)
        out.append({"size": [H, W], "counts": rle["counts"].decode("ascii")})
    return out


def track(rng: np.random.Generator, radius: float, start: int, end: int, jitter: float = 0.0,
          base: tuple | None = None) -> tuple[list[dict | None], tuple]:
    """One object over T frames (None outside [start, end)): returns per-frame RLEs and its path."""
    if base is None:
        c0 = rng.uniform([0.1 * H, 0.1 * W], [0.9 * H, 0.9 * W])
        vel = rng.normal(0, 3.0, 2)
        growth = rng.uniform(-0.01, 0.01)
        aspect = rng.uniform(0.6, 1.6)
        t = np.arange(T)
        cy, cx = c0[0] + vel[0] * t, c0[1] + vel[1] * t
        r = radius * np.exp(growth * t)
        base = (cy, cx, r, r * aspect)
    cy, cx, ry, rx = (np.asarray(v, dtype=np.float64).copy() for v in base)
    if jitter:
        cy += rng.normal(0, jitter * 0.2 * ry)
        cx += rng.normal(0, jitter * 0.2 * rx)
        ry *= np.exp(rng.normal(0, jitter * 0.15, T))
        rx *= np.exp(rng.normal(0, jitter * 0.15, T))
    rles = ellipse_rles(cy, cx, ry, rx)
    return [r if start <= t < end else None for t, r in enumerate(rles)], base


def make_video(args: tuple[int, int, float, int]) -> tuple[dict, list[dict], list[dict]]:
    """One video: (video record, GT annotations without ids, 100 predictions)."""
    seed, vid, mean_gt, n_pred = args
    rng = np.random.default_rng([seed, vid])
    n_gt = max(1, rng.poisson(mean_gt - 1) + 1) if mean_gt < 5 else int(mean_gt)
    anns, preds = [], []
    for _ in range(n_gt):
        start, end = int(rng.integers(0, 8)), int(rng.integers(28, T + 1))
        radius = float(np.exp(rng.uniform(np.log(12), np.log(170))))
        segs, base = track(rng, radius, start, end)
        areas = [int(a) if a is not None else None for a in _areas(segs)]
        anns.append({"video_id": vid, "category_id": int(rng.integers(1, 41)), "iscrowd": 0,
                     "segmentations": segs, "areas": areas,
                     "bboxes": [b for b in _bboxes(segs)], "height": H, "width": W, "length": 1})
        for k in range(int(rng.integers(1, 4))):  # tracked copies: one good, others worse
            jitter = 0.3 if k == 0 else rng.uniform(0.5, 2.0)
            psegs, _ = track(rng, radius, max(0, start - int(rng.integers(0, 3))),
                             min(T, end + int(rng.integers(0, 3))), jitter=jitter, base=base)
            preds.append({"video_id": vid, "score": float(rng.uniform(0.4, 1.0) / (1 + k)), "category_id": 1,
                          "segmentations": psegs})
    while len(preds) < n_pred:  # false positives: small-to-medium random tracks
        radius = float(np.exp(rng.uniform(np.log(6), np.log(90))))
        psegs, _ = track(rng, radius, int(rng.integers(0, 10)), int(rng.integers(26, T + 1)))
        preds.append({"video_id": vid, "score": float(rng.uniform(0.0, 0.5)), "category_id": 1,
                      "segmentations": psegs})
    rng.shuffle(preds)
    video = {"id": vid, "width": W, "height": H, "length": T,
             "file_names": [f"{vid:05d}/{t:05d}.jpg" for t in range(T)]}
    return video, anns, preds[:n_pred]


def _areas(segs: list[dict | None]) -> list[int | None]:
    present = [s for s in segs if s is not None]
    it = iter(mask_utils.area(present).tolist() if present else [])
    return [next(it) if s is not None else None for s in segs]


def _bboxes(segs: list[dict | None]) -> list[list[float] | None]:
    present = [s for s in segs if s is not None]
    it = iter(mask_utils.toBbox(present).tolist() if present else [])
    return [next(it) if s is not None else None for s in segs]


def make_set(out: Path, mean_gt: float, n_videos: int, seed: int = 0, n_pred: int = 100) -> tuple[Path, Path]:
    """Write ``out/gt.json`` and ``out/results.json`` (cached: reused when present)."""
    gt_path, res_path = out / "gt.json", out / "results.json"
    if gt_path.is_file() and res_path.is_file():
        return gt_path, res_path
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, vid, mean_gt, n_pred) for vid in range(1, n_videos + 1)]
    with get_context("fork").Pool(min(2, os.cpu_count() or 1)) as pool:
        parts = pool.map(make_video, jobs, chunksize=8)
    videos, anns, preds = [], [], []
    for video, a, p in parts:
        videos.append(video)
        anns.extend(a)
        preds.extend(p)
    for k, a in enumerate(anns):
        a["id"] = k + 1
    cats = [{"id": i, "name": f"class{i}", "supercategory": "object"} for i in range(1, 41)]
    gt_path.write_text(json.dumps({"info": {"description": "bench_eval synthetic"}, "licenses": [],
                                   "videos": videos, "categories": cats, "annotations": anns}))
    res_path.write_text(json.dumps(preds))
    return gt_path, res_path


# ------------------------------------------------------------------------------------ runners
def run_ours(gt: str, res: str, workers: int) -> dict:
    from autoqvis.eval.ytvis_eval import evaluate

    t0 = time.perf_counter()
    stats = evaluate(gt, res, workers=workers)
    return {"seconds": time.perf_counter() - t0, "stats": stats}


def run_stages(gt: str, res: str) -> dict:
    """CPU seconds of each stage of ours in one process (the work of all parts done as one part)."""
    from autoqvis.data.ytvis import load_ytvis, parse_result
    from autoqvis.eval import ytvis_eval, ytvis_parts

    stages: dict[str, float] = {}
    clock = [time.process_time()]

    def done(name: str) -> None:
        now = time.process_time()
        stages[name] = stages.get(name, 0.0) + now - clock[0]
        clock[0] = now

    gt_ds = load_ytvis(gt, workers=1)
    cat_rank = {c["id"]: k for k, c in enumerate(sorted(gt_ds.categories, key=lambda c: c["id"]))} or None
    gt_videos = ytvis_eval.ground_truth_videos(gt_ds, cat_rank)
    videos = {v.id: v for v in gt_ds.videos}
    position = {v.video_id: i for i, v in enumerate(gt_videos)}
    done("ground truth: load and check")
    source = ytvis_parts.ResultsSource.from_file(Path(res), workers=1)
    records = source.part(0)
    done("results: json parse")
    results = [parse_result(r, res, k, videos) for k, r in enumerate(records)]
    tracks = [r["segmentations"] for r in results]
    sizes = [[videos[r["video_id"]].height, videos[r["video_id"]].width] for r in results]
    video = np.array([position[r["video_id"]] for r in results])
    score = np.array([r["score"] for r in results])
    rank = np.array([(cat_rank or {}).get(r["category_id"], 0 if cat_rank is None else -1) for r in results])
    kept = ytvis_parts.first_per_video(video, score, rank, 100)
    done("results: fields, order")
    assert ytvis_parts._first_bad_masks(tracks, sizes, np.concatenate(list(kept.values()))) is None
    done("results: masks (structure, size, runs)")
    rows = {}
    for v, index in kept.items():
        dts = [tracks[k] for k in index.tolist()]
        ytvis_parts._track_areas(dts, len(dts[0]))
        done("pycocotools: detection areas (area)")
        iou, areas = ytvis_parts.video_iou(dts, gt_videos[v].segmentations)
        rows[v] = ytvis_parts.VideoRows(index, iou, ytvis_parts.truthy_mean(areas))
        done("pycocotools: per-frame iou (+ areas again)")
    stages["pycocotools: per-frame iou (+ areas again)"] -= stages["pycocotools: detection areas (area)"]
    _, _, evals = ytvis_eval.evaluate_videos(gt_videos, ytvis_parts.Scored(video, score, rank, rows))
    ytvis_eval.accumulate(evals)
    done("order, match, accumulate")
    return {"stages": stages}


def load_official():
    """The official YTVIS / YTVISeval classes from mmdet's copy, without importing mmdet."""
    import importlib.util

    np.float = float  # the copy still uses np.float, removed in numpy 1.24
    spec = importlib.util.find_spec("mmdet")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mmdet is not installed: .venv/bin/pip install --no-deps mmdet==3.3.0")
    folder = Path(spec.submodule_search_locations[0]) / "evaluation" / "functional"
    mods = {}
    for name in ("ytvis", "ytviseval"):
        s = importlib.util.spec_from_file_location(f"_official_{name}", folder / f"{name}.py")
        mods[name] = importlib.util.module_from_spec(s)
        s.loader.exec_module(mods[name])
    return mods["ytvis"].YTVIS, mods["ytviseval"].YTVISeval


def run_official(gt: str, res: str, official: tuple) -> dict:
    import contextlib
    import io

    ytvis_cls, eval_cls = official
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = ytvis_cls(gt)
        dt_api = gt_api.loadRes(json.load(open(res)))
        ev = eval_cls(gt_api, dt_api, "segm")
        ev.params.useCats = 0
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return {"seconds": time.perf_counter() - t0, "stats": dict(zip(keys, map(float, ev.stats)))}


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child_main(argv: list[str]) -> None:
    which, gt, res, workers = argv[0], argv[1], argv[2], int(argv[3])
    import autoqvis.eval.ytvis_eval  # noqa: F401  (imports stay out of the measured CPU time, for both)
    from autoqvis.data.rle_batch import gc_paused

    official = load_official() if which == "official" else None
    cpu0 = _cpu_seconds()
    out = {"ours": lambda: run_ours(gt, res, workers), "official": lambda: run_official(gt, res, official),
           "stages": lambda: gc_paused(run_stages)(gt, res)}[which]()  # gc paused, as evaluate() pauses it
    out["cpu_seconds"] = _cpu_seconds() - cpu0  # this process and its workers, user + system
    out["loadavg"] = os.getloadavg()[0]
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["peak_rss_mb"] = self_kb / 1024
    out["peak_rss_worker_mb"] = child_kb / 1024
    print("@@" + json.dumps(out))


def measure(which: str, gt: Path, res: Path, workers: int = 2) -> dict:
    cmd = [sys.executable, __file__, "--child", which, str(gt), str(res), str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{which} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(line[2:])


# ------------------------------------------------------------------------------------ report
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=302)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "autoqvis_bench_eval")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--repeats", type=int, default=2, help="runs of ours, around the official run (best reported)")
    ap.add_argument("--no-stages", action="store_true", help="skip the one-process CPU breakdown of ours")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args()
    rows, breakdowns = [], []
    for name in args.sets:
        mean_gt = SETS[name]
        t0 = time.perf_counter()
        gt, res = make_set(args.data / f"{name}_v{args.videos}", mean_gt, args.videos)
        gen_s = time.perf_counter() - t0
        n_gt = len(json.loads(gt.read_text())["annotations"])
        size_mb = (gt.stat().st_size + res.stat().st_size) / 2**20
        runs = [measure("ours", gt, res, args.workers)]
        official = None if args.skip_official else measure("official", gt, res)
        runs += [measure("ours", gt, res, args.workers) for _ in range(args.repeats - 1)]
        ours = min(runs, key=lambda r: r["seconds"])
        same = official is not None and all(r["stats"] == official["stats"] for r in runs)
        maxdiff = (max(abs(r["stats"][k] - official["stats"][k]) for r in runs for k in STAT_KEYS) if official else None)
        rows.append((name, n_gt, size_mb, runs, ours, official, same, maxdiff))
        print(f"{name}: {args.videos} videos, {n_gt} GT, {size_mb:.0f} MB json (generated/cached in {gen_s:.1f} s)")
        for r in runs:
            print(f"  ours     {r['seconds']:7.2f} s (CPU {r['cpu_seconds']:.1f} s, load {r['loadavg']:.1f})  peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB (+ worker {r['peak_rss_worker_mb']:.0f} MB)  AP={r['stats']['AP']:.6f}")
        if official:
            print(f"  official {official['seconds']:7.2f} s (CPU {official['cpu_seconds']:.1f} s, load {official['loadavg']:.1f})  peak RSS {official['peak_rss_mb']:.0f} MB  "
                  f"AP={official['stats']['AP']:.6f}  speed-up {official['seconds'] / ours['seconds']:.1f}x  "
                  f"identical numbers: {same} (max |diff| {maxdiff:.1e})")
        if not args.no_stages:
            stages = measure("stages", gt, res)
            breakdowns.append((name, stages))
            print("  ours, one process, CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in stages["stages"].items()))
    print("\n".join(section_lines(args, rows, breakdowns)))
    if not args.no_write:
        replace_section("Evaluator", "\n".join(section_lines(args, rows, breakdowns)) + "\n")


STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def section_lines(args: argparse.Namespace, rows: list, breakdowns: list) -> list[str]:
    """The ``## Evaluator`` section of RESULTS.md."""
    import importlib.util

    json_lib = "orjson" if importlib.util.find_spec("orjson") else "json"
    lines = ["## Evaluator", "",
             f"`benchmarks/bench_eval.py` ({time.strftime('%Y-%m-%d %H:%M')}), machine: {os.cpu_count()}-core CPU "
             f"({cpu_name()}), Python {platform.python_version()}, numpy {np.__version__}, results parsed with "
             f"{json_lib}. {args.videos} videos x {T} frames at {H}x{W}, 100 predictions per video. Time = load + "
             "validate + evaluate, each run in a fresh process; ours with "
             f"{args.workers} worker processes (best of {args.repeats} runs, one before and the others after the "
             "official one), the official `ytvoseval` (mmdet 3.3.0 copy, useCats=0) on one core.", "",
             "CPU s = user + system of the process and its workers; load = 1-min load average of the machine "
             "when each run ended (other jobs were running: wall times on an idle machine are shorter).", "",
             "| set | GT tracks | json MB | ours wall s (all runs) | ours CPU s | ours peak RSS MB (main + worker) "
             "| official wall s | official CPU s | official peak RSS MB | speed-up wall (CPU) | load ours / official "
             "| 12 numbers identical |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, n_gt, size_mb, runs, ours, off, same, maxdiff in rows:
        off_s = f"{off['seconds']:.1f}" if off else "-"
        off_c = f"{off['cpu_seconds']:.1f}" if off else "-"
        off_m = f"{off['peak_rss_mb']:.0f}" if off else "-"
        speed = (f"{off['seconds'] / ours['seconds']:.1f}x ({off['cpu_seconds'] / ours['cpu_seconds']:.1f}x)"
                 if off else "-")
        load = "/".join(f"{r['loadavg']:.1f}" for r in runs) + (f" / {off['loadavg']:.1f}" if off else "")
        ident = ("yes" if same else f"no (max diff {maxdiff:.1e})") if off else "-"
        walls = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        lines.append(f"| {name} | {n_gt} | {size_mb:.0f} | **{ours['seconds']:.2f}** ({walls}) | {ours['cpu_seconds']:.1f} | "
                     f"{ours['peak_rss_mb']:.0f} + {ours['peak_rss_worker_mb']:.0f} | {off_s} | {off_c} | {off_m} | "
                     f"{speed} | {load} | {ident} |")
    if breakdowns:
        names = list(breakdowns[0][1]["stages"])
        lines += ["", "Where our CPU time goes (`--child stages`: the same code as one part, in one process, no "
                  "workers; CPU s):", "", "| stage | " + " | ".join(n for n, _ in breakdowns) + " |",
                  "|---|" + "---|" * len(breakdowns)]
        for stage in names:
            lines.append(f"| {stage} | " + " | ".join(f"{b['stages'][stage]:.2f}" for _, b in breakdowns) + " |")
        lines.append("| total | " + " | ".join(f"{sum(b['stages'].values()):.2f}" for _, b in breakdowns) + " |")
    lines += ["", "How ours runs: the main process loads and checks the GT and cuts the results file at result "
              "boundaries into 2 parts per worker; each worker reads and parses its parts of the file, checks "
              "them (fields; mask structure and size; the runs of every scored mask must cover the frame) and scores them: per video one pycocotools "
              "`area` pass over the detections' masks and one `iou` call per frame for all detection x GT pairs "
              "(pycocotools skips pairs whose boxes do not overlap; intersections are exact from the IoU with the "
              "detection's area as denominator, unions from the areas); the main process then orders, matches "
              "and accumulates the small IoU matrices. The official code makes four pycocotools calls per "
              "detection x GT x frame plus an area and a box call per detection mask, so its cost grows with the "
              "number of GT objects much faster than ours."]
    official_cpu = {name: off["cpu_seconds"] for name, _, _, _, _, off, _, _ in rows if off}
    for name, b in breakdowns:
        st, total = b["stages"], sum(b["stages"].values())
        coco = sum(v for k, v in st.items() if k.startswith("pycocotools"))
        serial = st["ground truth: load and check"] + st["order, match, accumulate"]
        idle = serial + (total - serial) / args.workers
        vs = (f", {official_cpu[name] / idle:.1f}x less than the official code's CPU time of "
              f"{official_cpu[name]:.1f} s (its wall time on an idle machine)" if name in official_cpu else "")
        lines += ["", f"{name}: {coco / total:.0%} of our CPU is pycocotools parsing the detection masks (every "
                  "mask twice: `area`, then `iou`, which also computes its box) and intersecting them, "
                  f"{st['results: json parse'] / total:.0%} the json parse, "
                  f"{st['results: masks (structure, size, runs)'] / total:.0%} the mask checks (every scored "
                  "string decoded in numpy: pycocotools' `iou` never returns on runs that do not cover the frame), "
                  f"{serial / total:.0%} serial work in the main process (GT, then matching). On an idle "
                  f"{args.workers}-core machine that would take about {serial:.2f} + {total - serial:.2f} / "
                  f"{args.workers} = {idle:.1f} s{vs}: an estimate from CPU times, not a measurement."]
    if _autogroup():
        lines += ["", "Linux autogroup scheduling is on here (`/proc/sys/kernel/sched_autogroup_enabled` = 1): "
                  "the CPU is shared between sessions, not processes, so while other sessions keep both cores "
                  "busy our worker processes together get the same share as the official's single process, and "
                  "the wall-clock ratio falls to about the CPU-time ratio."]
    lines += ["", "Command: `.venv/bin/python benchmarks/bench_eval.py` (the two sets are generated once, vectorised, "
              "into `$TMPDIR/autoqvis_bench_eval`, and reused).", ""]
    return lines


if __name__ == "__main__":
    main()
