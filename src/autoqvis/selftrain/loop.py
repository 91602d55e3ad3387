"""The multi-round self-training loop (paper Sec. 3.2-3.4, Fig. 1).

Round 0 labels the unlabeled videos with the initial-stage model. Round k >= 1 (re)starts the VIS model
from the initial weights (``selftrain.reset``), freezes the quality predictor and drops its loss
(``selftrain.freeze_predictor``), trains with DropLoss (``selftrain.drop_loss``) on batches drawn whole
from the synthetic set or from round k-1's pseudo-labels with probability ``synthetic_ratio`` / rest,
then labels the videos again, selects (eq. 16-22) and fuses with round k-1's labels (eq. 4-13).

Layout of ``out_dir``::

    config.yaml                 the run's config (a resumed run must use the same)
    init/                       the initial stage when no --init is given (trainer folder)
    round_k/detections.jsonl    round k's raw top-k tracks, before NMS and the score filter (streamed, resumable;
                                the DET.jsonl that `autoqvis select` reads)
    round_k/pseudo_labels.json  the training set T^(k), a PL.json (``curate``): YTVIS + score, pred_iou, quality (Q^t),
                                selected (S^t) per track, eligible_frames per video; the whole state, all frames
    round_k/stats.json          counts: tracks before/after NMS, retained, selected frames, eligible videos, areas
    round_k/model.pt            the model that produced round k's labels (round 0: the initial model)
    round_k/train/              round k's training (trainer folder, k >= 1)
    round_k/metrics.json        val metrics of round k's model (with val), val_results.json
    round_k/analysis.json       Fig. 5/6 numbers + PNGs (with the unlabeled videos' ground truth)
    area_distribution.png       Fig. 7: pseudo-label areas per round vs ground truth
    summary.json                one row per finished round, the last and the best round (val AP50), the result

Every file is written atomically and every step is skipped on resume when its output exists; a round's
training resumes from its last checkpoint, its labelling at the first unfinished video.

Under torchrun every rank runs the loop: training is data-parallel (``engine.trainer``), labelling and
validation split the videos over the ranks (``engine.inference.predict_dataset``); rank 0 alone selects,
fuses, evaluates, analyses and writes, and takes every "does this output exist" decision for all ranks.
The other ranks read back what rank 0 wrote (round weights, pseudo-labels), so ``out_dir`` must be on a
file system every node sees.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..core import dist
from ..core.config import Config, config_from_dict, save_config
from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json, read_json
from ..core.torch_io import atomic_torch_save, safe_torch_load
from ..core.tracks import Detection
from ..data.dataset import SyntheticClips, VideoClips
from ..data.sampler import BalancedBatches
from ..data.ytvis import YTVISDataset
from ..engine import trainer
from ..eval.analysis import LOG_AREA_EDGES, analyse, gt_tracks, log_area_histogram, write_analysis
from ..eval.model_eval import evaluate_model
from ..eval.plots import plot_area_distribution
from ..model.checkpoint import load_checkpoint
from ..model.vis_model import build_model
from .curate import (RoundLabels, SelectionRule, read_training_set, restrict_to_videos, round_tau, select_round,
                     training_set_counts, write_training_set)
from .labeling import pseudo_label_dataset
from .pseudo_label import iter_detection_file

ROUND_SEED_STRIDE = 1000  # round k's batches use seed 1000 * cfg.seed + k
SPEED_ONLY = ("channels_last", "compile")  # runtime.* switches a resumed run may change
UNLABELED_INDEX = "unlabeled_videos.json"  # the run's unlabeled videos, for reports
PRE_ISSUE14 = (("input", "real_clip_augmentation", "resize_flip"), ("selftrain", "source_draw", "per_step"),
               ("selftrain", "frame_sampling", "frame_numbers"), ("train", "amp_dtype", "bfloat16"),
               ("inference", "keep_empty_tracks", False),
               ("selftrain", "fusion_match", "best_iou"), ("inference", "amp_dtype", "none"),
               ("train", "nonfinite_loss", "stop"), ("selftrain", "clips_per_draw", 0))


@dataclass
class SelfTrainInputs:
    """What a run reads. Paths are YTVIS jsons unless noted; ``init`` a checkpoint (ours or detectron2)."""

    synthetic: Path  # COCO stills or YTVIS synthetic videos
    unlabeled: YTVISDataset  # the unlabeled videos (annotations, if any, are ignored)
    init: Path | None = None
    val: YTVISDataset | None = None
    unlabeled_gt: YTVISDataset | None = None  # ground truth of the unlabeled videos: analysis only
    max_videos: int | None = None


# ------------------------------------------------------------------------------------ config
def round_config(cfg: Config) -> Config:
    """The config a self-training round trains with: ``selftrain``'s schedule and switches in ``train``/``loss``."""
    rc = copy.deepcopy(cfg)
    st = cfg.selftrain
    rc.train.max_iter, rc.train.batch_size, rc.train.lr = st.max_iter, st.batch_size, st.lr
    rc.train.steps = list(st.steps)  # never the initial stage's drops: a round has its own length
    rc.train.freeze_quality_predictor = st.freeze_predictor and cfg.model.quality.enabled
    rc.loss.drop_loss = st.drop_loss
    rc.train.ema_decay = st.ema_decay
    return rc


def selection_tau(cfg: Config) -> float:
    """tau of eq. 21: ``selftrain.tau``, or ``tau_without_quality`` when Q is the score alone."""
    st = cfg.selftrain
    return st.tau if st.use_quality_predictor else st.tau_without_quality


def _upgrade_saved_config(old: dict[str, Any]) -> dict[str, Any]:
    """A saved config as the current code reads it: keys added since take the value the old run ran with."""
    st = old.setdefault("selftrain", {})
    if isinstance(st, dict) and "steps" not in st:  # before selftrain.steps, rounds used train.steps
        st["steps"] = list(old.get("train", {}).get("steps", []))
    # issue 14's switches: a run saved before them ran the behaviour that is now the non-official choice
    for section, key, before in PRE_ISSUE14:
        part = old.setdefault(section, {})
        if isinstance(part, dict):
            part.setdefault(key, before)
    try:
        return config_from_dict(old, legacy_note=False).to_dict()  # the other missing keys: their defaults
    except AutoQVISError:
        return old  # unknown keys: let the comparison name the difference


def _check_resume_config(cfg: Config, out_dir: Path) -> None:
    saved = out_dir / "config.yaml"
    if not saved.exists():
        return
    old = yaml.safe_load(saved.read_text())
    if isinstance(old, dict):
        old = _upgrade_saved_config(old)
    new = cfg.to_dict()
    for key in ("rounds", "keep_best"):  # more rounds may be asked of a finished run; the result may be re-chosen
        old.get("selftrain", {}).pop(key, None)
        new["selftrain"].pop(key)
    for key in SPEED_ONLY:  # memory layout and compilation do not change what is computed
        for section in ("train", "runtime"):  # train.*: a saved config that could not be upgraded
            old.get(section, {}).pop(key, None)
        new["runtime"].pop(key, None)
    diff = _first_difference(old, new)
    if diff is not None:
        raise AutoQVISError(f"{saved}: --resume with a different config ({diff}); use the run's settings or a new --out")


def _first_difference(a: Any, b: Any, key: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{key}.{k}" if key else k)
            if d is not None:
                return d
        return None
    return None if a == b else f"{key}: run has {a!r}, now {b!r}"


# ------------------------------------------------------------------------------------ weights
def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights without the criterion's buffers (they depend on the loss config)."""
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items() if not k.startswith("criterion.")}


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("criterion.")]
    if missing or unexpected:
        raise AutoQVISError(f"self-training: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _save_model(path: Path, weights: dict[str, torch.Tensor], k: int, cfg: Config, iteration: int) -> None:
    atomic_torch_save({"model": weights, "optimizer": None, "iteration": iteration, "round": k,
                       "config": cfg.to_dict()}, path)


def _read_model(path: Path) -> dict[str, torch.Tensor]:
    return safe_torch_load(path)["model"]


# ------------------------------------------------------------------------------- pseudo-labels
def write_pseudo_labels(train_set: dict[int, list[Detection]], unlabeled: YTVISDataset, path: Path, k: int,
                        rule: SelectionRule | None = None) -> None:
    """T^(k) as a PL.json (``curate.training_set_json``), atomically."""
    write_training_set(train_set, unlabeled, path, rule or SelectionRule(),
                       f"autoqvis pseudo-labels, self-training round {k}")


def read_pseudo_labels(path: Path, image_root: Path | None) -> tuple[YTVISDataset, dict[int, list[Detection]]]:
    """A pseudo-label file this run wrote (``write_pseudo_labels``) -> (the YTVIS dataset, {video_id: detections}).
    Its masks are pycocotools' own RLE, so the mask validator is skipped (``check_masks=False``)."""
    return read_training_set(path, image_root, check_masks=False)


def best_round(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The official ``model_best``: the round >= 1 of highest val AP50, the earliest on ties (round 0 when it is
    the only one); None without val metrics."""
    scored = [r for r in rows if "val" in r]
    best = None
    for r in [r for r in scored if r["round"] >= 1] or scored:
        if best is None or r["val"]["AP50"] > best["val"]["AP50"]:  # strict: the earliest of equals
            best = r
    return best


def summarize(rows: list[dict[str, Any]], keep_best: bool) -> dict[str, Any]:
    """summary.json: every finished round, the last and the best one (by val AP50) with their metrics, and which
    of the two is the run's result (``final_model``, relative to the run folder)."""

    def brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {"round": row["round"], "model": f"round_{row['round']}/model.pt", "val": row.get("val")}

    last = rows[-1] if rows else None
    best = best_round(rows)
    final = best if keep_best and best is not None else last
    return {"rounds": rows, "last": brief(last), "best": brief(best), "keep_best": keep_best,
            "final_model": None if final is None else f"round_{final['round']}/model.pt"}


def summary_rows(summary: Any) -> list[dict[str, Any]]:
    """The per-round rows of a summary.json (this format, or the plain list older runs wrote)."""
    return summary if isinstance(summary, list) else list(summary.get("rounds", []))


# ------------------------------------------------------------------------------------- a round
class SelfTraining:
    """One run of the loop; ``run()`` executes (or resumes) every step."""

    def __init__(self, cfg: Config, inputs: SelfTrainInputs, out_dir: str | Path, *, resume: bool = False,
                 progress: bool = True) -> None:
        if cfg.selftrain.rounds < 0:
            raise AutoQVISError(f"selftrain.rounds must be >= 0, got {cfg.selftrain.rounds}")
        if cfg.selftrain.use_quality_predictor and not cfg.model.quality.enabled:
            raise AutoQVISError("the config has no quality predictor (model.quality.enabled: false); "
                                "use --no-quality-predictor")
        oracle = "oracle_selection" if cfg.selftrain.oracle_selection else (
            "oracle_clean_from_round" if cfg.selftrain.oracle_clean_from_round >= 0 else None)
        if oracle and inputs.unlabeled_gt is None:
            raise AutoQVISError(f"selftrain.{oracle} needs the unlabeled videos' ground truth (--unlabeled-gt)")
        self.cfg, self.inputs, self.out = cfg, inputs, Path(out_dir)
        self.resume, self.progress = resume, progress
        self.video_ids = [v.id for v in inputs.unlabeled.videos][: inputs.max_videos or None]
        if not self.video_ids:
            raise AutoQVISError(f"{inputs.unlabeled.name}: no video to pseudo-label")
        if inputs.unlabeled.image_root is not None and not Path(inputs.unlabeled.image_root).is_dir():
            raise AutoQVISError(f"{inputs.unlabeled.name}: image root {inputs.unlabeled.image_root} is not a folder")
        self.rule = SelectionRule.from_config(cfg)
        self.device = dist.device()
        self.main = dist.is_main_process()
        self.summary: list[dict[str, Any]] = []

    # -------------------------------------------------------------------------------- driver
    def run(self) -> Path:
        """Initial model, round 0 labels, then rounds 1..K; returns the run's result: the last round's model.pt, or
        with ``selftrain.keep_best`` and val ground truth the best round's (summary.json names both)."""
        self._prepare_out_dir()
        init_weights = self.initial_weights()
        train_set: dict[int, list[Detection]] = {}
        last_weights = init_weights
        for k in range(self.cfg.selftrain.rounds + 1):
            rdir = self.out / f"round_{k}"
            if k == 0:
                weights = init_weights
                if self.main and not (rdir / "model.pt").exists():
                    _save_model(rdir / "model.pt", weights, 0, self.cfg, 0)
            else:
                start = init_weights if self.cfg.selftrain.reset else last_weights
                weights = self.train_round(k, start)
            train_set = self.label_round(k, weights, train_set)
            last_weights = weights
        summary = summarize(self.summary, self.cfg.selftrain.keep_best) if self.main else None
        if self.main:
            atomic_write_json(self.out / "summary.json", summary, indent=1)
            if summary["best"] is not None:
                self._log(f"best round by val AP50: {summary['best']['round']} "
                          f"({100 * summary['best']['val']['AP50']:.1f}); result: {summary['final_model']}")
        final = dist.broadcast_object(summary["final_model"] if self.main else None)
        dist.barrier()
        return self.out / final

    def _exists(self, *paths: Path) -> bool:
        """Whether every path exists, as rank 0 sees it (the same answer on every rank)."""
        return dist.broadcast_object(all(p.exists() for p in paths) if self.main else None)

    def _prepare_out_dir(self) -> None:
        if self._exists(self.out / "config.yaml"):
            if not self.resume:
                raise AutoQVISError(f"{self.out}: already holds a run; pass --resume to continue it, or choose an empty --out")
            _check_resume_config(self.cfg, self.out)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out / "config.yaml")
            self._save_video_index()

    def _save_video_index(self) -> None:
        """The unlabeled videos' records and frame root, so that a report names and draws every video, also those
        that never reach a pseudo-label file (no annotations: the index holds no labels)."""
        path = self.out / UNLABELED_INDEX
        if path.exists():
            return
        data = self.inputs.unlabeled
        root = data.image_root.resolve() if data.image_root is not None else None
        atomic_write_json(path, {"info": {"image_root": str(root) if root else None},
                                 "videos": [v.to_dict() for v in data.videos], "annotations": [],
                                 "categories": data.categories})

    def _build(self, cfg: Config) -> torch.nn.Module:
        return build_model(cfg).to(self.device)

    def _log(self, msg: str) -> None:
        if self.progress and self.main:
            print(msg, file=sys.stderr, flush=True)

    # --------------------------------------------------------------------------- initial stage
    def initial_weights(self) -> dict[str, torch.Tensor]:
        """--init's weights, or the initial stage trained into out/init (Sec. 3.1)."""
        # the random init is part of the run (as in `autoqvis train`): torch's default seed differs per process,
        # so without this a run killed before its first checkpoint resumed from other weights
        torch.manual_seed(self.cfg.seed)
        model = self._build(self.cfg)
        if self.inputs.init is not None:
            load_checkpoint(model, self.inputs.init)
            return _weights(model)
        batches = BalancedBatches([SyntheticClips(self.inputs.synthetic, self.cfg)], [1.0],
                                  self.cfg.train.batch_size, self.cfg.seed, dist.get_rank(), dist.get_world_size())
        final = trainer.train_loop(model, batches, self.cfg.train, self.out / "init", max_iter=self.cfg.train.max_iter,
                           resume=True, desc="initial stage", progress=self.progress,
                           checkpoint_meta={"round": 0, "config": self.cfg.to_dict()}, runtime=self.cfg.runtime)
        load_checkpoint(model, final)
        return _weights(model)

    # -------------------------------------------------------------------------------- training
    def train_round(self, k: int, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Round k's training from ``start`` on synthetic + T^(k-1) clips (read from round k-1's pseudo_labels.json);
        returns (and saves as round_k/model.pt) the trained weights."""
        rdir = self.out / f"round_{k}"
        if self._exists(rdir / "model.pt"):
            return _read_model(rdir / "model.pt")
        rc = round_config(self.cfg)
        prev = self.out / f"round_{k - 1}" / "pseudo_labels.json"
        pseudo, _ = read_pseudo_labels(prev, self.inputs.unlabeled.image_root)
        sources: list[Any] = [SyntheticClips(self.inputs.synthetic, rc)]
        probs = [self.cfg.selftrain.synthetic_ratio]
        clips = VideoClips(pseudo, rc, eligible=True)
        if len(clips):
            sources.append(clips)
            probs.append(1.0 - self.cfg.selftrain.synthetic_ratio)
        else:
            self._log(f"round {k}: no pseudo-labelled video has {self.cfg.selftrain.min_eligible_frames} eligible "
                      "frames; this round trains on synthetic clips only")
        model = self._build(rc)
        _load_weights(model, start)
        batches = BalancedBatches(sources, probs, rc.train.batch_size, ROUND_SEED_STRIDE * self.cfg.seed + k,
                                  dist.get_rank(), dist.get_world_size(), self.cfg.selftrain.source_draw,
                                  self.cfg.selftrain.clips_per_draw)
        final = trainer.train_loop(model, batches, rc.train, rdir / "train", max_iter=rc.train.max_iter, resume=True,
                           desc=f"round {k}", progress=self.progress,
                           checkpoint_meta={"round": k, "config": rc.to_dict()}, runtime=rc.runtime)
        weights = {k2: v for k2, v in _read_model(final).items() if not k2.startswith("criterion.")}
        if self.main:
            _save_model(rdir / "model.pt", weights, k, rc, rc.train.max_iter)
        return weights

    # ------------------------------------------------------------------------------- labelling
    def label_round(self, k: int, weights: dict[str, torch.Tensor], previous: dict[int, list[Detection]]) -> dict[int, list[Detection]]:
        """Round k's labelling in four steps, each skipped when its output exists (a resumed run continues at the
        first missing one): ``label`` (detections.jsonl), ``select_and_fuse`` (pseudo_labels.json, stats.json),
        ``evaluate`` (metrics.json; with val ground truth), ``analyse`` (analysis.json; with the unlabeled videos'
        ground truth). Then the round's row goes into summary.json.

        Returns T^(k) on rank 0; the other ranks (which only help to label and validate) get an empty dict.
        """
        model = self.label(k, weights)
        train_set: dict[int, list[Detection]] = {}
        candidates: dict[int, list[Detection]] | None = None
        row: dict[str, Any] = {"round": k}
        if self.main:
            train_set, candidates, stats = self.select_and_fuse(k, previous)
            row.update(retained=stats["retained"], training_set_tracks=stats["training_set"]["tracks"],
                       eligible_videos=stats["training_set"]["eligible_videos"])
        if self.inputs.val is not None:
            metrics = self.evaluate(k, model or self._model_with(weights))  # every rank predicts a share
            if self.main:
                row["val"] = metrics
        if self.main:
            if self.inputs.unlabeled_gt is not None:
                row["analysis"] = self.analyse(k, candidates, train_set)
            self.summary.append(row)
            atomic_write_json(self.out / "summary.json", summarize(self.summary, self.cfg.selftrain.keep_best), indent=1)
        dist.barrier()  # round k's files exist before any rank reads them
        return train_set

    def _round_file(self, k: int, name: str) -> Path:
        return self.out / f"round_{k}" / name

    def label(self, k: int, weights: dict[str, torch.Tensor]) -> torch.nn.Module | None:
        """Step 1, every rank: the model with ``weights`` pseudo-labels the unlabeled videos into
        round_k/detections.jsonl (continuing a partial file). Done when the round's labels are selected already
        (then the raw detections are not needed); returns the model, or None when done."""
        if self._exists(self._round_file(k, "pseudo_labels.json"), self._round_file(k, "stats.json")):
            return None
        model = self._model_with(weights)
        pseudo_label_dataset(model, self.inputs.unlabeled, self.cfg, self._round_file(k, "detections.jsonl"),
                             video_ids=self.video_ids, resume=True, progress=self.progress,
                             desc=f"round {k}: pseudo-label")
        return model

    def select_and_fuse(self, k: int, previous: dict[int, list[Detection]]
                        ) -> tuple[dict[int, list[Detection]], dict[int, list[Detection]] | None, dict[str, Any]]:
        """Step 2, rank 0: select (eq. 16-22) and fuse with T^(k-1) (eq. 4-13) -> round_k/pseudo_labels.json and
        stats.json. Done when both exist: they are read back. Returns (T^(k), the candidates -- None when read
        back --, the round's stats)."""
        labels_path, stats_path = self._round_file(k, "pseudo_labels.json"), self._round_file(k, "stats.json")
        if labels_path.exists() and stats_path.exists():
            _, train_set = read_pseudo_labels(labels_path, self.inputs.unlabeled.image_root)
            candidates, stats = None, read_json(stats_path, "round stats")
        else:
            labels = self.select(k, previous)
            candidates, train_set = labels.candidates, labels.state
            stats = {"round": k, **labels.counts, **self.set_stats(train_set)}
            write_pseudo_labels(train_set, self.inputs.unlabeled, labels_path, k, self.rule)
            atomic_write_json(stats_path, stats, indent=1)
        self._log(f"round {k}: {stats['tracks_after_nms']} tracks after NMS, {stats['retained']} retained; training "
                  f"set {stats['training_set']['tracks']} tracks, {stats['training_set']['eligible_videos']} eligible videos")
        return train_set, candidates, stats

    def _model_with(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        model = self._build(self.cfg)
        _load_weights(model, weights)
        return model.eval()

    def select(self, k: int, previous: dict[int, list[Detection]]) -> RoundLabels:
        """Round k's raw detections -> candidates, retained tracks and T^(k) fused with ``previous``
        (``curate.select_round``, the code ``autoqvis select`` runs)."""
        gt = self.inputs.unlabeled_gt
        oracle = None
        clean = 0 <= self.cfg.selftrain.oracle_clean_from_round <= k
        if self.cfg.selftrain.oracle_selection or clean:
            oracle = lambda vid: [a.segmentations for a in gt.annotations_of(vid)]  # noqa: E731
        rule, det_path = self.rule, self._round_file(k, "detections.jsonl")
        if self.cfg.selftrain.tau_hold_share and k >= 1:  # keep the share of frames tau kept in round 0
            rule = dataclasses.replace(rule, keep_share=self._round0_share())
        rule = round_tau(iter_detection_file(det_path), rule)  # the paper's rule: unchanged
        labels = select_round(iter_detection_file(det_path), previous, rule, oracle, clean)
        if self.cfg.selftrain.diag_round0_videos_only and k >= 1:
            _, round0 = read_pseudo_labels(self._round_file(0, "pseudo_labels.json"), self.inputs.unlabeled.image_root)
            labels = restrict_to_videos(labels, round0)
        return labels

    def _round0_share(self) -> float:
        """The share of candidate frames tau kept in round 0 (its stats.json; selected again from round 0's detections
        for a run whose stats predate the count)."""
        stats = read_json(self._round_file(0, "stats.json"), "round 0 stats")
        if "share_at_tau" in stats:
            return float(stats["share_at_tau"])
        return select_round(iter_detection_file(self._round_file(0, "detections.jsonl")), {}, self.rule).counts["share_at_tau"]

    def set_stats(self, train_set: dict[int, list[Detection]]) -> dict[str, Any]:
        """Counts of T^(k): videos, tracks, selected frames, eligible videos/frames (eq. 14), area histogram."""

        return {"training_set": {
            **training_set_counts(train_set, self.cfg.selftrain.min_eligible_frames),
            "area_histogram": {"log_area_edges": LOG_AREA_EDGES.tolist(),
                               "counts": log_area_histogram(x.segmentations for d in train_set.values() for x in d)},
        }}

    # ------------------------------------------------------------------------ evaluation, analysis
    def evaluate(self, k: int, model: torch.nn.Module) -> dict[str, float]:
        """Step 3: class-agnostic val metrics of round k's model -> round_k/metrics.json (+ val_results.json). Done
        when metrics.json exists (read back).

        Every rank predicts its share of the videos; rank 0 evaluates and writes (the others return {})."""
        path = self.out / f"round_{k}" / "metrics.json"
        if self._exists(path):
            return read_json(path, "metrics") if self.main else {}
        metrics = evaluate_model(model, self.inputs.val, self.cfg, path.with_name("val_results.json"),
                                 progress=self.progress, desc=f"round {k}: val")
        if not self.main:
            return {}
        atomic_write_json(path, metrics, indent=1)
        self._log(f"round {k}: val AP50 {100 * metrics['AP50']:.1f}  AP {100 * metrics['AP']:.1f}  AR10 {100 * metrics['AR10']:.1f}")
        return metrics

    def analyse(self, k: int, candidates: dict[int, list[Detection]] | None,
                train_set: dict[int, list[Detection]]) -> dict[str, Any]:
        """Step 4, rank 0: Fig. 5/6 for round k (its scored detections vs the unlabeled GT) -> round_k/analysis.json,
        and Fig. 7 over rounds 0..k. Done when analysis.json exists. ``candidates``: None when the labels were read
        back (a resumed run); they are selected again from detections.jsonl."""
        rdir = self.out / f"round_{k}"
        path = rdir / "analysis.json"
        if path.exists():
            summary = read_json(path, "analysis")
        else:
            if candidates is None:  # resumed after the labels were written
                candidates = self.select(k, {}).candidates
            gt = gt_tracks(self.inputs.unlabeled_gt, candidates.keys())
            summary, points = analyse(candidates, train_set, gt)
            write_analysis(summary, points, rdir, title=f"round {k}")
        hists = {f"round {j}": read_json(self.out / f"round_{j}" / "analysis.json", "analysis")["area_histogram"]["pseudo"]
                 for j in range(k)}
        hists[f"round {k}"] = summary["area_histogram"]["pseudo"]
        hists["ground truth"] = summary["area_histogram"]["gt"]
        plot_area_distribution(hists, summary["area_histogram"]["log_area_edges"], self.out / "area_distribution.png",
                               title="pseudo-label area distribution (Fig. 7)")
        frame = summary["spearman"]["frame"]
        return {"spearman_quality": frame["quality"], "spearman_score": frame["score"],
                "mean_true_iou": summary["mean_true_iou"],
                "selected_precision": summary["training_set"]["selected_precision"]}


def run_selftrain(cfg: Config, inputs: SelfTrainInputs, out_dir: str | Path, *, resume: bool = False,
                  progress: bool = True) -> Path:
    """Run (or resume) the whole loop; returns the final model's path (``round_K/model.pt``)."""
    return SelfTraining(cfg, inputs, out_dir, resume=resume, progress=progress).run()


__all__ = ["SelfTrainInputs", "SelfTraining", "best_round", "round_config", "run_selftrain", "selection_tau",
           "read_pseudo_labels", "summarize", "summary_rows", "write_pseudo_labels"]
