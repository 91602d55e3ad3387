"""Dataclass configs that load from YAML, with dotted ``key=value`` overrides.

The defaults are the paper's settings (VideoCutLER R50 + AutoQ-VIS, ``configs/ytvis19_r50.yaml``).
A YAML file may name ``_base_: other.yaml`` (relative to itself) and then override any subset.
Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import AutoQVISError
from .fileio import atomic_write_text

REAL_CLIP_AUGMENTATIONS = ("official", "resize_flip")
AMP_DTYPES = ("float16", "bfloat16")
INFERENCE_AMP_DTYPES = ("float16", "bfloat16", "none")
SOURCE_DRAWS = ("per_rank", "per_step")
FRAME_SAMPLINGS = ("eligible_positions", "frame_numbers")
NONFINITE_LOSS = ("skip", "stop")


def check_clips_per_draw(clips_per_draw: int, batch_size: int) -> None:
    """The groups of selftrain.clips_per_draw must tile the batch: 0, >= the batch size, or a divisor of it."""
    if clips_per_draw < 0 or (0 < clips_per_draw < batch_size and batch_size % clips_per_draw):
        raise AutoQVISError(f"config key selftrain.clips_per_draw: {clips_per_draw} must be 0, >= the batch size "
                            f"or divide it (batch size {batch_size})")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AutoQVISError(f"config key {key}: {value!r} is not one of {', '.join(choices)}")


# --------------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    """ResNet in detectron2's layout (FrozenBN, stride in the 3x3 conv)."""

    depth: int = 50  # 18, 34 (basic blocks) or 50, 101 (bottleneck)
    stem_out_channels: int = 64
    res2_out_channels: int = 256  # res2 output width, doubles each stage (R18/34: 64, like the stem)
    width_per_group: int = 64  # bottleneck width of res2; doubles each stage (unused by R18/34)
    freeze_at: int = 0  # 0: nothing frozen besides BN; 1: stem; 2: stem + res2; ...
    norm: str = "FrozenBN"  # FrozenBN (released checkpoints), BN or GN (GN/BN: for training from scratch)


@dataclass
class PixelDecoderConfig:
    """Mask2Former's MSDeformAttn pixel decoder."""

    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_dim_feedforward: int = 1024  # hard-coded in the official code
    enc_nheads: int = 8
    enc_n_points: int = 4
    dropout: float = 0.3  # MASK_FORMER.DROPOUT of VideoCutLER; only the deformable encoder uses it
    norm: str = "GN"  # adapter_1 / layer_1 norm: "GN" or "" (no norm, conv bias)


@dataclass
class QualityConfig:
    """Mask quality predictor ("MaskIoU head"): 4 convs + 3 FCs on stride-32 features + raw mask logits."""

    enabled: bool = True
    conv_dim: int = 256
    fc_dim: int = 1024
    # input channels = pixel_decoder.conv_dim + 1 (the mask logit channel); derived, not set here.


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    # video transformer decoder
    num_classes: int = 1  # class-agnostic: one "object" class (+ no-object)
    num_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9
    pre_norm: bool = False
    # input handling
    pixel_mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])  # RGB
    pixel_std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    size_divisibility: int = 32
    test_topk: int = 10  # queries kept per video at inference (hard-coded 10 in the official code)


@dataclass
class LossConfig:
    class_weight: float = 2.0
    mask_weight: float = 5.0  # BCE
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    quality_weight: float = 20.0
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True
    # DropLoss in the initial stage: off, as the official initial stage (imgnet_iou_pred_all.yaml sets no
    # USE_DROPLOSS); the rounds follow selftrain.drop_loss
    drop_loss: bool = False
    drop_loss_iou: float = 0.01  # pairs whose soft IoU is <= this get no mask loss


# ---------------------------------------------------------------------------------------------- data
@dataclass
class InputConfig:
    sampling_frame_num: int = 3
    sampling_frame_range: int = 20  # other frames of a training clip lie within +-range of a reference frame
    min_size_train: list[int] = field(default_factory=lambda: [360, 480])
    max_size_train: int = 768
    hflip_prob: float = 0.5  # horizontal flip, shared by the frames of a clip
    min_size_test: int = 360
    max_size_test: int = 1333
    test_window: int = 0  # 0: whole video in one pass; N: windows of N frames (long videos)
    test_window_overlap: int = 4
    # augmentation of real training clips (pseudo-labelled or ground truth):
    # "official": the synthetic clips' per-frame chain of data/synth.py with the synth.* settings (crop, shortest
    #   edge synth.min_size / synth.max_size and flip once per clip, brightness, contrast, rotation per frame), as
    #   the official YTVISDatasetMapper sends both sets through one augmentation list;
    # "resize_flip": only the shortest-edge resize (min_size_train, max_size_train) and the flip above
    real_clip_augmentation: str = "official"

    def __post_init__(self) -> None:
        _check_choice("input.real_clip_augmentation", self.real_clip_augmentation, REAL_CLIP_AUGMENTATIONS)


@dataclass
class SynthConfig:
    """ImageCut2Video (VideoCutLER): still image + masks -> a synthetic clip (data/synth.py).

    Defaults are VideoCutLER's (configs/imagenet_video/video_mask2former_R50_cls_agnostic.yaml).
    """

    num_frames: int = 3
    min_size: list[int] = field(default_factory=lambda: [360, 480])  # shortest edge, one choice per clip
    max_size: int = 1333  # longest-edge cap (VideoCutLER leaves detectron2's default)
    # per-frame independent crop, detectron2's RandomCrop: "absolute_range" -> each side in
    # [min(side, crop_size[0]), min(side, crop_size[1])] pixels (VideoCutLER; a no-op on images under 600 px);
    # "relative_range" -> height * U(crop_size[0], 1), width * U(crop_size[1], 1)
    crop_enabled: bool = True
    crop_type: str = "absolute_range"
    crop_size: list[float] = field(default_factory=lambda: [600.0, 720.0])
    hflip_prob: float = 0.5  # one coin per clip
    brightness: list[float] = field(default_factory=lambda: [0.9, 1.1])  # per frame
    contrast: list[float] = field(default_factory=lambda: [0.9, 1.1])  # per frame
    rotation: float = 15.0  # degrees, +-, per frame, no expansion (corners become black)
    rotation_center: list[float] = field(default_factory=lambda: [0.4, 0.6])  # relative, per axis
    copy_paste: bool = True
    copy_paste_prob: float = 1.0  # chance a clip gets the other image's instances pasted in
    paste_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # new draw per frame
    paste_max_overlap: float = 0.5  # skip the paste when it covers >= this fraction of an existing mask
    min_mask_area: int = 1  # drop instances whose largest per-frame area is below this (1: empty everywhere)


# -------------------------------------------------------------------------------------------- engine
@dataclass
class TrainConfig:
    max_iter: int = 8000
    batch_size: int = 2
    lr: float = 2e-5
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    clip_grad_norm: float = 0.01  # full-model grad-norm clip
    steps: list[int] = field(default_factory=list)  # lr x gamma at these iterations (no warm-up)
    gamma: float = 0.1
    checkpoint_period: int = 1000
    log_period: int = 20
    amp: bool = True  # autocast in training on GPU; ignored on CPU
    # autocast dtype of training: "float16" with a GradScaler (the official detectron2 AMP trainer) or "bfloat16"
    amp_dtype: str = "float16"
    # a non-finite loss: "skip" the iteration's update and go on (the official AMP trainer), counted as
    # skipped_steps in the log; "stop" with an error naming the losses
    nonfinite_loss: str = "skip"
    num_workers: int = 0
    freeze_quality_predictor: bool = False
    tensorboard: bool = False
    # beyond the paper (issue 17): > 0, the stage's result is the exponential moving average of the weights over
    # its steps (engine/weight_ema.py); 0: the last step's weights, as the official code
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("train.amp_dtype", self.amp_dtype, AMP_DTYPES)
        _check_choice("train.nonfinite_loss", self.nonfinite_loss, NONFINITE_LOSS)


@dataclass
class SelfTrainConfig:
    rounds: int = 2
    score_threshold: float = 0.25  # eq. 16
    nms_iou: float = 0.5  # eq. 18, in any frame
    tau: float = 0.75  # eq. 21 (UVO-Dense: 0.3)
    tau_without_quality: float = 0.85  # --no-quality-predictor uses the score alone
    min_selected_frames: int = 2  # eq. 22 asks for >= 1; the authors' code asks for 2 non-empty
    fusion_iou: float = 0.5  # eq. 5
    # a new track overlapping several old ones fuses with: "first" in the set's order (the official
    # merge_object_based_results, `break` at the first match) or "best_iou" (autoqvis's earlier rule)
    fusion_match: str = "first"
    min_eligible_frames: int = 2  # videos with fewer eligible frames (eq. 14) are skipped
    synthetic_ratio: float = 0.5  # probability a batch is drawn from the synthetic set
    # who draws the synthetic-or-pseudo choice: "per_rank" (each process for its own batch, as the official
    # CombinedLoader on each GPU) or "per_step" (one draw per iteration shared by every rank)
    source_draw: str = "per_rank"
    # clips of a process's batch drawn together (one source, one clip stream), as the batch of one GPU: the
    # official rounds draw per GPU batch of 2 (IMS_PER_BATCH 4 over 2 GPUs), so one process of 4 in groups of 2
    # is the same; 0: the whole per-process batch is one draw
    clips_per_draw: int = 0
    # the +-input.sampling_frame_range window and the other frames of a pseudo-labelled clip act on
    # "eligible_positions" (positions in the list of eligible frames, drawn with replacement: the official json
    # keeps only eligible frames) or "frame_numbers" (frame numbers, distinct frames while enough are in range)
    frame_sampling: str = "eligible_positions"
    max_iter: int = 10000  # per round
    batch_size: int = 4
    lr: float = 2e-5
    steps: list[int] = field(default_factory=list)  # the round's own lr drops (x train.gamma); none = constant lr
    # with val ground truth, the run's result is the round of highest val AP50 (the official model_best:
    # rounds >= 1, earliest on ties) instead of the last round; summary.json reports both either way
    keep_best: bool = True
    # ablation switches (Table 3)
    use_quality_predictor: bool = True  # False: Q = s alone, with tau_without_quality
    freeze_predictor: bool = True  # freeze the quality predictor in the rounds and drop its loss
    fusion: bool = True  # False: each round's labels replace the previous ones
    reset: bool = True  # every round restarts from the initial-stage weights
    drop_loss: bool = True  # DropLoss in the rounds (loss.drop_loss_iou)
    # Table 2 "practical limit" oracle: S^t = (true IoU^t >= oracle_iou) against the unlabeled videos' ground truth
    oracle_selection: bool = False
    # the oracles' true-IoU bar: the paper's 0.5; higher keeps only tight masks (an analysis row, not a paper row)
    oracle_iou: float = 0.5
    # diagnosis (issue 16, not a paper row): from this round's selection on, the rule's S^t minus its frames of true
    # IoU < 0.5 (the unlabeled ground truth); -1: off. 1 keeps round 1 AutoQ-VIS's own, so only round 2+ differ
    oracle_clean_from_round: int = -1
    # diagnosis (issue 16, not a paper row): rounds >= 1 train only on the videos of round 0's set T^0 (their labels
    # fused as usual; the videos later rounds add are left out), to tell new videos from changed labels
    diag_round0_videos_only: bool = False
    # beyond the paper (issue 17, docs/fidelity.md; off in every paper preset): frames judged with their track
    quality_smooth_radius: int = 0  # Q^t := median of Q over the track's non-empty frames t-r..t+r
    track_tau_low: float = 0.0  # > 0: frames with Q >= this are selected too in a track whose median Q >= tau
    ema_decay: float = 0.0  # > 0: each round's model is the moving average of its weights (train.ema_decay)
    tau_keep_share: float = 0.0  # > 0: each round's tau = max(tau, Q quantile keeping this share of candidate frames)
    tau_hold_share: bool = False  # rounds >= 1 keep the share tau kept in round 0 (tau_keep_share := round 0's)

    def __post_init__(self) -> None:
        _check_choice("selftrain.source_draw", self.source_draw, SOURCE_DRAWS)
        _check_choice("selftrain.frame_sampling", self.frame_sampling, FRAME_SAMPLINGS)
        check_clips_per_draw(self.clips_per_draw, self.batch_size)
        if self.oracle_clean_from_round < -1:
            raise AutoQVISError(f"config key selftrain.oracle_clean_from_round: {self.oracle_clean_from_round} must be "
                                ">= 0, or -1 (off)")
        if not 0.0 < self.oracle_iou <= 1.0:
            raise AutoQVISError(f"config key selftrain.oracle_iou: {self.oracle_iou} must be in (0, 1]")
        if self.oracle_selection and self.oracle_clean_from_round >= 0:
            raise AutoQVISError("config key selftrain.oracle_clean_from_round: set with selftrain.oracle_selection; "
                                "the two oracles exclude each other")


@dataclass
class InferenceConfig:
    """Prediction output (predict, validation, evaluation)."""

    # keep top-k tracks whose masks are empty in every frame (the official output lists all top-k tracks);
    # false drops them from the results
    keep_empty_tracks: bool = True
    # autocast dtype of every test pass (predict, pseudo-labels, val) on CUDA; ignored on CPU. "float16": the
    # official Trainer.test; "none": float32
    amp_dtype: str = "float16"

    def __post_init__(self) -> None:
        _check_choice("inference.amp_dtype", self.amp_dtype, INFERENCE_AMP_DTYPES)


@dataclass
class RuntimeConfig:
    """How the model runs, not what it computes: every forward pass (training and test passes) follows these.
    The fast-path switches of engine/fast_path.py; numbers in benchmarks/RESULTS.md, "Scale-out"."""

    channels_last: bool = False  # backbone convolutions in channels-last memory format
    compile: bool = False  # torch.compile the backbone and the pixel decoder (CPU needs a C++ compiler)


# keys of earlier versions, still read: (old section, old key) -> (new section, new key, value set when old is true)
LEGACY_KEYS = {
    ("train", "amp_inference"): ("inference", "amp_dtype", "bfloat16"),
    ("train", "channels_last"): ("runtime", "channels_last", True),
    ("train", "compile"): ("runtime", "compile", True),
}


def move_legacy_keys(data: dict[str, Any], note: bool = True) -> dict[str, Any]:
    """``data`` (a config as a dict) with the keys of ``LEGACY_KEYS`` moved to their new place; a true old switch
    sets the new key (it wins, as it did), a false one is dropped. ``note``: warn (FutureWarning) about each old
    key that is set; configs stored in checkpoints and runs are mapped silently."""
    out = dict(data)
    for (section, key), (new_section, new_key, value) in LEGACY_KEYS.items():
        part = out.get(section)
        if not isinstance(part, dict) or key not in part:
            continue
        part = dict(part)
        old = _coerce(part.pop(key), bool, f"{section}.{key}")
        out[section] = part
        if old:
            target = out.get(new_section)
            if target is not None and not isinstance(target, dict):
                continue  # a malformed section: _build names it
            out[new_section] = {**(target or {}), new_key: value}
            if note:
                warnings.warn(f"config key {section}.{key} is deprecated: read as {new_section}.{new_key}: "
                              f"{str(value).lower()}; write that instead", FutureWarning, stacklevel=3)
    return out


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    input: InputConfig = field(default_factory=InputConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selftrain: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0
    name: str = "ytvis19_r50"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int->float, list->tuple)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except AutoQVISError as e:
                errors.append(str(e))
        raise AutoQVISError(errors[0] if errors else f"config key {key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise AutoQVISError(f"config key {key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise AutoQVISError(f"config key {key}: expected a list, got {type(value).__name__} {value!r}")
        (elem,) = get_args(tp)[:1] or (Any,)
        out = [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise AutoQVISError(f"config key {key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise AutoQVISError(f"config key {key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        raise AutoQVISError(f"config key {key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise AutoQVISError(f"config key {key}: expected a string, got {value!r}")
    raise AutoQVISError(f"config key {key}: unsupported type {_type_name(tp)}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            known = ", ".join(sorted(names))
            raise AutoQVISError(f"unknown config key {key!r} (known here: {known})")
        kwargs[k] = _coerce(v, hints[k], key)
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML would keep the last one silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise AutoQVISError(f"{path}: _base_ chain loops back to itself")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AutoQVISError(f"{path}: config file not found") from None
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise AutoQVISError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AutoQVISError(f"{path}: a config must be a mapping at the top level")
    base = data.pop("_base_", None)
    if base is not None:
        base_path = Path(base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        data = _deep_merge(_read_yaml(base_path, seen + (path,)), data)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.num_queries=20"`` -> (["model", "num_queries"], 20); the value is parsed as YAML."""
    if "=" not in item:
        raise AutoQVISError(f"override {item!r}: expected key=value (e.g. train.max_iter=100)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise AutoQVISError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def config_from_dict(data: dict[str, Any], legacy_note: bool = True) -> Config:
    """A Config from its dict form; keys of earlier versions are mapped (``move_legacy_keys``)."""
    return _build(Config, move_legacy_keys(data, legacy_note))


def packaged_config_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A path as given, else a name looked up among the packaged configs (``toy`` -> toy.yaml)."""
    p = Path(path)
    if p.exists():
        return p
    for cand in (packaged_config_dir() / p.name, packaged_config_dir() / f"{p.name}.yaml"):
        if cand.exists():
            return cand
    raise AutoQVISError(f"{path}: config file not found (nor a packaged config of that name)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    data: dict[str, Any] = _read_yaml(resolve_config_path(path)) if path is not None else {}
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
    return config_from_dict(data)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


__all__ = [
    "BackboneConfig",
    "PixelDecoderConfig",
    "QualityConfig",
    "ModelConfig",
    "LossConfig",
    "InputConfig",
    "SynthConfig",
    "TrainConfig",
    "SelfTrainConfig",
    "InferenceConfig",
    "RuntimeConfig",
    "Config",
    "LEGACY_KEYS",
    "move_legacy_keys",
    "load_config",
    "config_from_dict",
    "save_config",
    "parse_override",
    "resolve_config_path",
]
