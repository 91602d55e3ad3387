"""One round's pseudo-label selection, from raw detections to the training set file (PL.json).

The single implementation behind the round loop (:mod:`autoqvis.selftrain.loop`) and ``autoqvis select``.
Per video, in the official code's order (``ytvis_scoreiou_cn_adding_refresh``):

1. spatiotemporal NMS on the raw top-k in list order, then the score filter (``pseudo_label``);
2. Q^t = s * predicted IoU^t (float64), S^t = Q^t >= tau or the mask is empty (``selection.score_and_select``);
3. a track is retained with >= ``min_selected_frames`` selected non-empty frames (``selection.retain``);
4. fusion with the previous state, first match in the state's order (``fusion.fuse_dataset``);
5. a video trains on its eligible frames (every track selected there), if it has >= ``min_eligible_frames``.

The state carried to the next round is the whole of step 4 (every retained track of every video, every frame,
also in videos with fewer than 2 eligible frames); PL.json holds exactly that, plus each video's
``eligible_frames``, so the next round can fuse with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_json
from ..core.tracks import Detection
from ..data.ytvis import YTVISDataset, load_ytvis
from .fusion import FUSION_MATCHES, fuse_dataset
from .pseudo_label import detection_from_annotation, detection_to_annotation, filter_by_score, spatiotemporal_nms
from .selection import num_selected_nonempty, oracle_select, retain, score_and_select, training_frames


@dataclass(frozen=True)
class SelectionRule:
    """The numbers of steps 1-5 (``SelfTrainConfig`` holds them; ``from_config`` reads them)."""

    score_threshold: float = 0.25
    nms_iou: float = 0.5
    tau: float = 0.75
    use_quality_predictor: bool = True  # False: Q^t = s (Table 3 ablation)
    min_selected_frames: int = 2
    fusion: bool = True  # False: the new tracks replace the state (Table 3 ablation)
    fusion_iou: float = 0.5
    fusion_match: str = "first"
    min_eligible_frames: int = 2
    smooth_radius: int = 0  # beyond the paper: Q smoothed along the track (0: off, the paper)
    tau_low: float | None = None  # beyond the paper: track-level second chance down to tau_low (None: off)
    keep_share: float = 0.0  # beyond the paper: > 0, the round's tau keeps this share of the candidate frames
    oracle_iou: float = 0.5  # the oracles' true-IoU bar (analysis only; the paper's practical limit: 0.5)

    @classmethod
    def from_config(cls, cfg: Any) -> "SelectionRule":
        st = cfg.selftrain
        rule = cls(score_threshold=st.score_threshold, nms_iou=st.nms_iou,
                   tau=st.tau if st.use_quality_predictor else st.tau_without_quality,
                   use_quality_predictor=st.use_quality_predictor, min_selected_frames=st.min_selected_frames,
                   fusion=st.fusion, fusion_iou=st.fusion_iou, fusion_match=st.fusion_match,
                   min_eligible_frames=st.min_eligible_frames, smooth_radius=st.quality_smooth_radius,
                   tau_low=st.track_tau_low if st.track_tau_low > 0 else None, keep_share=st.tau_keep_share,
                   oracle_iou=st.oracle_iou)
        rule.check()
        return rule

    def check(self) -> None:
        if self.fusion_match not in FUSION_MATCHES:
            raise AutoQVISError(f"selftrain.fusion_match must be one of {', '.join(FUSION_MATCHES)}, "
                                f"got {self.fusion_match!r}")
        for name in ("score_threshold", "nms_iou", "tau", "fusion_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise AutoQVISError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.keep_share < 1.0:
            raise AutoQVISError(f"selftrain.tau_keep_share must be in [0, 1), got {self.keep_share}")
        if self.smooth_radius < 0:
            raise AutoQVISError(f"selftrain.quality_smooth_radius must be >= 0, got {self.smooth_radius}")
        if self.tau_low is not None and not 0.0 <= self.tau_low <= self.tau:
            raise AutoQVISError(f"selftrain.track_tau_low must be in [0, tau={self.tau}], got {self.tau_low}")


@dataclass
class RoundLabels:
    """What one round's selection makes. Per video id, ascending."""

    candidates: dict[int, list[Detection]]  # after NMS + score filter, Q^t and S^t filled (analysis)
    retained: dict[int, list[Detection]]  # D_retained: the new tracks of this round
    state: dict[int, list[Detection]]  # T^(k): fused with the previous state, in the state's order
    counts: dict[str, Any]


class VideoLabels(NamedTuple):
    after_nms: list[Detection]  # the raw tracks NMS keeps (list order)
    candidates: list[Detection]  # of those, score >= threshold, with Q^t and S^t
    retained: list[Detection]  # of those, >= min_selected_frames selected non-empty frames


def set_tau(st: Any, tau: float) -> None:
    """A command line's --tau: the threshold of the selection in use (Q, or the score alone without predictor)."""
    if not 0.0 <= tau <= 1.0:
        raise AutoQVISError(f"--tau must be in [0, 1], got {tau}")
    if st.use_quality_predictor:
        st.tau = tau
    else:
        st.tau_without_quality = tau


def curate_video(dets: list[Detection], rule: SelectionRule,
                 oracle_gt: Sequence[Sequence[Any]] | None = None, oracle_clean: bool = False) -> VideoLabels:
    """Steps 1-3 for the raw tracks of one video (in the model's order).

    oracle_gt: the video's ground-truth tracks for Table 2's oracle selection (S^t from the true IoU), or with
    ``oracle_clean`` for the diagnosis that keeps the rule's selection minus its frames of true IoU below
    ``rule.oracle_iou`` (0.5 unless set).
    """
    kept = spatiotemporal_nms(dets, rule.nms_iou)
    scored = score_and_select(filter_by_score(kept, rule.score_threshold), rule.tau, rule.use_quality_predictor,
                              smooth_radius=rule.smooth_radius, tau_low=rule.tau_low)
    if oracle_gt is not None:
        scored = oracle_select(scored, oracle_gt, rule.oracle_iou, within_selection=oracle_clean)
    return VideoLabels(kept, scored, retain(scored, rule.min_selected_frames))


def round_tau(detections: Iterable[tuple[int, list[Detection]]], rule: SelectionRule) -> SelectionRule:
    """The rule with this round's tau from the distribution of Q (``keep_share`` > 0; else ``rule`` as is): the Q
    above which ``keep_share`` of the round's candidate non-empty frames (after NMS and the score filter) lie,
    never below ``rule.tau``. A model that scores every mask higher in a later round then keeps the same share of
    frames, not more of them at a lower precision."""
    if rule.keep_share <= 0:
        return rule
    # a pass of its own over the detection file (select_round then runs NMS again): the quantile needs every video's
    # Q before any video is selected, and holding the round's candidates would undo the streaming memory bound
    values = [q for _, dets in detections for d in curate_video(dets, rule).candidates
              for q, seg in zip(d.quality, d.segmentations) if seg is not None]
    if not values:
        return rule
    return dataclasses.replace(rule, tau=max(rule.tau, float(np.quantile(values, 1.0 - rule.keep_share))))


def select_round(detections: Iterable[tuple[int, list[Detection]]], previous: dict[int, list[Detection]],
                 rule: SelectionRule, oracle_gt: Callable[[int], Sequence[Sequence[Any]]] | None = None,
                 oracle_clean: bool = False) -> RoundLabels:
    """Steps 1-4 over every video: raw detections (video_id, tracks) and the previous state -> RoundLabels."""
    candidates: dict[int, list[Detection]] = {}
    retained: dict[int, list[Detection]] = {}
    raw = after_nms = 0
    for video_id, dets in detections:
        if video_id in candidates:
            raise AutoQVISError(f"video {video_id}: detections given twice")
        labels = curate_video(dets, rule, None if oracle_gt is None else oracle_gt(video_id), oracle_clean)
        candidates[video_id], retained[video_id] = labels.candidates, labels.retained
        raw += len(dets)
        after_nms += len(labels.after_nms)
    state = fuse_dataset(previous, retained, rule.fusion_iou, rule.fusion, rule.fusion_match)
    quality = [q for c in candidates.values() for d in c for q, seg in zip(d.quality, d.segmentations) if seg is not None]
    counts = {"videos": len(candidates), "tracks_before_nms": raw, "tracks_after_nms": after_nms,
              "tracks_after_score_filter": sum(len(c) for c in candidates.values()),
              "retained": sum(len(r) for r in retained.values()),
              "selected_frames": sum(num_selected_nonempty(d) for r in retained.values() for d in r),
              "tau": rule.tau,
              # share of the candidates' non-empty frames with Q >= tau (selftrain.tau_hold_share keeps round 0's)
              "share_at_tau": sum(q >= rule.tau for q in quality) / len(quality) if quality else 0.0,
              "quality": ("oracle_clean" if oracle_clean else "oracle") if oracle_gt is not None
              else ("predictor" if rule.use_quality_predictor else "score")}
    return RoundLabels(dict(sorted(candidates.items())), dict(sorted(retained.items())), state, counts)


def restrict_to_videos(labels: RoundLabels, keep: Iterable[int]) -> RoundLabels:
    """``labels`` with its state T^(k) cut to the videos in ``keep`` (a diagnosis: candidates, retained tracks and
    counts stay the rule's own)."""
    keep = set(keep)
    return dataclasses.replace(labels, state={v: d for v, d in labels.state.items() if v in keep})


def training_set_counts(state: dict[int, list[Detection]], min_eligible_frames: int = 2) -> dict[str, int]:
    """Counts of a state T^(k) as its PL.json holds them: videos, tracks, selected non-empty frames, and the
    videos that train (>= ``min_eligible_frames`` eligible frames) with their eligible frames."""
    frames = [training_frames(dets, min_eligible_frames) for dets in state.values()]
    return {"videos": len(state), "tracks": sum(len(d) for d in state.values()),
            "selected_frames": sum(num_selected_nonempty(x) for d in state.values() for x in d),
            "eligible_videos": sum(1 for f in frames if f), "eligible_frames": sum(len(f) for f in frames)}


# ------------------------------------------------------------------------------------ PL.json
def normalized_flags(det: Detection) -> Detection:
    """S^t with every empty frame selected (how the official code reads a mark), all 1 without flags."""
    flags = det.selected or [1] * det.num_frames
    return dataclasses.replace(det, selected=[int(bool(s) or seg is None) for s, seg in zip(flags, det.segmentations)])


def training_set_json(state: dict[int, list[Detection]], unlabeled: YTVISDataset, rule: SelectionRule,
                      description: str) -> dict[str, Any]:
    """T^(k) as a YouTubeVIS dict: every video holding a track (its record gets ``eligible_frames``, the
    sorted frame indices it trains on, [] below ``min_eligible_frames``), every track over all its frames
    (``segmentations`` null where empty, ``selected`` 0/1, ``score``, ``pred_iou``, ``quality``)."""
    annotations, videos = [], []
    for video_id, dets in state.items():
        dets = [normalized_flags(d) for d in dets]
        videos.append({**unlabeled.video(video_id).to_dict(),
                       "eligible_frames": training_frames(dets, rule.min_eligible_frames)})
        for d in dets:
            annotations.append(detection_to_annotation(d, len(annotations) + 1))
    return {
        "info": {"description": description,
                 "image_root": str(unlabeled.image_root) if unlabeled.image_root else None,
                 "selection": dataclasses.asdict(rule)},
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }


def write_training_set(state: dict[int, list[Detection]], unlabeled: YTVISDataset, path: str | Path,
                       rule: SelectionRule, description: str) -> None:
    """:func:`training_set_json` written atomically to ``path``."""
    atomic_write_json(path, training_set_json(state, unlabeled, rule, description))


def read_training_set(path: str | Path, image_root: str | Path | None = None, unlabeled: YTVISDataset | None = None,
                      check_masks: bool = True) -> tuple[YTVISDataset, dict[int, list[Detection]]]:
    """A PL.json -> (the YouTubeVIS dataset, the state {video_id: tracks in file order}).

    A null mask reads as selected whatever ``selected`` says. With ``unlabeled``, every video of the file
    must be one of its videos, of the same length and size (the state is fused frame by frame).
    ``check_masks=False``: a file this run wrote itself (see ``load_ytvis``).
    """
    ds = load_ytvis(path, image_root=image_root, check_masks=check_masks)
    if unlabeled is not None:
        known = {v.id: v for v in unlabeled.videos}
        for v in ds.videos:
            u = known.get(v.id)
            if u is None:
                raise AutoQVISError(f"{path}: video {v.id} is not a video of {unlabeled.name}")
            if (u.length, u.height, u.width) != (v.length, v.height, v.width):
                raise AutoQVISError(f"{path}: video {v.id} has {v.length} frames of {v.width}x{v.height}, "
                                    f"{unlabeled.name} has {u.length} of {u.width}x{u.height}")
    state: dict[int, list[Detection]] = {}
    for a in ds.annotations:
        state.setdefault(a.video_id, []).append(normalized_flags(detection_from_annotation(a)))
    return ds, dict(sorted(state.items()))


__all__ = ["RoundLabels", "SelectionRule", "VideoLabels", "curate_video", "read_training_set", "round_tau", "select_round",
           "training_set_counts", "training_set_json", "write_training_set"]
