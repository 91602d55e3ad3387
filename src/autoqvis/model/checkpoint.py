"""Loading weights: our own ``.pt`` files and detectron2 VideoMaskFormer / VideoCutLER / AutoQ-VIS ``.pth`` / ``.pkl``.

Our module names ARE detectron2's (``backbone.*``, ``sem_seg_head.pixel_decoder.*``, ``sem_seg_head.predictor.*``,
the quality predictor under ``sem_seg_head.predictor.maskiou_feature_extractor.*``), so the key map is the
identity plus the few explicit rules in ``KEY_RENAMES`` / ``IGNORED_*``. Nothing is loaded by guessing.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import config_from_dict, load_config
from ..core.errors import AutoQVISError
from ..core.torch_io import atomic_torch_save, safe_torch_load
from .vis_model import build_model

log = logging.getLogger(__name__)

# old name prefix -> current name prefix (applied in order, first match wins)
KEY_RENAMES: list[tuple[str, str]] = [
    ("module.", ""),  # saved from a DistributedDataParallel wrapper
    # Mask2Former's decoder before its "version 2" called the learnable query features static_query
    ("sem_seg_head.predictor.static_query.", "sem_seg_head.predictor.query_feat."),
]
# backbone-only detectron2 files (e.g. CutLER's DINO ResNet-50 .pkl) name the ResNet without "backbone."
BACKBONE_ONLY_PREFIXES = ("stem.", "res2.", "res3.", "res4.", "res5.")
# entries that are not weights of the network: the loss's class weights and BatchNorm counters
IGNORED_PREFIXES = ("criterion.",)
IGNORED_SUFFIXES = (".num_batches_tracked",)
# numpy globals a detectron2 .pkl may reference; nothing else may be unpickled
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles store bytes this way
}


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did. Keys are model state-dict names."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file: left as they were
    unexpected: list[str] = field(default_factory=list)  # in the file, unknown to the model: not used
    ignored: list[str] = field(default_factory=list)  # file entries dropped on purpose (IGNORED_*)
    meta: dict[str, Any] = field(default_factory=dict)  # iteration / round / config of our own files

    def summary(self) -> str:
        text = f"{self.path}: loaded {len(self.loaded)} tensors"
        if self.missing:
            text += f"; {len(self.missing)} model entries not in the file ({_first(self.missing)})"
        if self.unexpected:
            text += f"; {len(self.unexpected)} file entries unused ({_first(self.unexpected)})"
        return text


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


# ------------------------------------------------------------------------------------------ reading
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, refuses every other global (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()  # latin1: Python-2 era detectron2 files
    except pickle.UnpicklingError as e:
        raise AutoQVISError(f"{path}: refused to load: {e} (only tensors, arrays and plain containers)") from None
    except (EOFError, ValueError, OSError, AttributeError, ImportError, IndexError, TypeError) as e:
        raise AutoQVISError(f"{path}: not a readable checkpoint ({e})") from None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file without a model.

    Accepts our ``.pt`` (``{"model": state_dict, "iteration", "round", "config", ...}``), a detectron2
    ``.pth`` (``{"model": ...}`` or a bare state dict) and a detectron2 ``.pkl`` (numpy arrays allowed).
    Returns (state dict with tensors, metadata: every top-level entry besides ``model`` that is not a tensor dict).
    """
    path = Path(path)
    if not path.is_file():
        raise AutoQVISError(f"{path}: checkpoint not found")
    if path.suffix == ".pkl":
        obj = _read_pickle(path)
    else:
        try:
            obj = safe_torch_load(path)
        except AutoQVISError:
            # a detectron2 pickle saved under another suffix
            obj = _read_pickle(path) if _looks_like_pickle(path) else safe_torch_load(path)
    if not isinstance(obj, dict):
        raise AutoQVISError(f"{path}: expected a dict of tensors (or {{'model': ...}}), got {type(obj).__name__}")
    state = obj["model"] if isinstance(obj.get("model"), dict) else obj
    meta = {k: v for k, v in obj.items() if k not in ("model", "optimizer")} if state is not obj else {}
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not torch.is_tensor(v):
            if str(k).startswith("_") or k in ("__author__", "matching_heuristics"):
                continue
            raise AutoQVISError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        tensors[str(k)] = v
    if not tensors:
        raise AutoQVISError(f"{path}: holds no tensors")
    return tensors, meta


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80  # pickle protocol >= 2 (a torch zip starts with "PK")


# ------------------------------------------------------------------------------------------ mapping
def map_key(key: str) -> str | None:
    """A file's key -> our key, or None when the entry is dropped on purpose."""
    if key.endswith(IGNORED_SUFFIXES):
        return None
    for old, new in KEY_RENAMES:
        if key.startswith(old):
            key = new + key[len(old):]
    if key.startswith(BACKBONE_ONLY_PREFIXES):
        key = "backbone." + key
    if key.startswith(IGNORED_PREFIXES):
        return None
    return key


def map_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Apply ``map_key`` to every entry: (mapped state dict, dropped file keys)."""
    mapped, dropped = {}, []
    for k, v in state.items():
        new = map_key(k)
        if new is None:
            dropped.append(k)
        else:
            mapped[new] = v
    return mapped, dropped


# ------------------------------------------------------------------------------------------ loading
def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = False) -> LoadReport:
    """Load ``path`` into ``model`` (our ``.pt`` or a detectron2 ``.pth`` / ``.pkl``, see ``read_checkpoint``).

    Every tensor whose (mapped) name the model has is copied; entries the model lacks and model entries the
    file lacks are reported (``LoadReport``, logged as a warning), e.g. the quality predictor when loading a
    VideoCutLER file. Buffers that are not weights (``criterion.empty_weight``) are skipped.

    Raises:
        AutoQVISError: the file is unreadable, a tensor's shape differs from the model's (lists the first
            mismatched keys and their count; nothing is loaded then), no entry matches at all, or
            ``strict`` and some model entry is missing or some file entry unused.
    """
    state, meta = read_checkpoint(path)
    return load_state(model, state, meta, str(path), strict=strict)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], meta: dict | None = None, path: str = "checkpoint",
               *, strict: bool = False) -> LoadReport:
    """``load_checkpoint`` for a state dict already in memory (``path`` only names it in messages)."""
    mapped, dropped = map_state_dict(state)
    own = model.state_dict()
    report = LoadReport(path, ignored=dropped, meta=meta or {})
    mismatched = []
    for k, v in mapped.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            mismatched.append(f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})")
        else:
            report.loaded.append(k)
    if mismatched:
        raise AutoQVISError(
            f"{path}: {len(mismatched)} tensors do not fit the model's shapes (wrong config?): "
            f"{'; '.join(mismatched[:5])}{'; ...' if len(mismatched) > 5 else ''}"
        )
    if not report.loaded:
        raise AutoQVISError(f"{path}: no entry matches the model (first file keys: {_first(list(state))})")
    # entries no file carries (BatchNorm counters, criterion buffers) are not "missing"
    report.missing = [k for k in own if k not in mapped and map_key(k) is not None]
    if strict and (report.missing or report.unexpected):
        raise AutoQVISError(report.summary())
    with torch.no_grad():
        for k in report.loaded:
            own[k].copy_(mapped[k])  # state_dict() tensors share storage with the model
    if report.missing or report.unexpected:
        log.warning(report.summary())
    return report


def convert_checkpoint(src: str | Path, dst: str | Path, model: nn.Module | None = None,
                       config: dict | None = None) -> LoadReport | None:
    """Write a detectron2 checkpoint as our ``.pt``: ``{"model": mapped state dict, "optimizer": None,
    "iteration": 0, "round": 0, "config": config, "converted_from": src}``.

    With ``model``, the file is first loaded into it (shape check, report); only the file's own tensors are
    written, never the model's initial values. The write is atomic.
    """
    state, _ = read_checkpoint(src)
    mapped, _ = map_state_dict(state)
    report = load_state(model, state, path=str(src)) if model is not None else None
    payload = {"model": {k: v.contiguous() for k, v in mapped.items()}, "optimizer": None, "iteration": 0,
               "round": 0, "config": config, "converted_from": str(src)}
    atomic_torch_save(payload, dst)
    return report


# ------------------------------------------------------------------------------------------ by name
HF_SCHEME = "hf://"


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint argument -> a local file. ``hf://OWNER/REPO/FILE`` (``hf://OWNER/REPO@REVISION/FILE`` for a
    branch, tag or commit) is fetched once by ``huggingface_hub`` into its cache (``HF_HOME`` / ``HF_HUB_CACHE``)
    and read from there afterwards; ``HF_HUB_OFFLINE=1`` uses the cache only. Anything else is a local path.

    Raises:
        AutoQVISError: a malformed name, or the file is neither cached nor downloadable (one line naming the
            repository, the file and the cache looked in).
    """
    text = str(spec)
    if not text.startswith(HF_SCHEME):
        return Path(text)
    parts = text[len(HF_SCHEME):].split("/")
    if len(parts) < 3 or not all(parts):
        raise AutoQVISError(f"{text}: a hub checkpoint is named hf://OWNER/REPO/FILE (FILE may have folders)")
    repo, revision = parts[1], None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    repo_id, filename = f"{parts[0]}/{repo}", "/".join(parts[2:])
    import huggingface_hub  # why: slow to import (~0.5 s), needed only for hf:// names
    from huggingface_hub import constants, errors  # why: as above
    where = f"{repo_id} file {filename}" + (f" at {revision}" if revision else "")
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
    except errors.LocalEntryNotFoundError:
        mode = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise AutoQVISError(f"{text}: {where} is not in the hub cache {constants.HF_HUB_CACHE} and {mode}; "
                            "download it once with network access (or copy it into that cache)") from None
    except errors.RepositoryNotFoundError:
        raise AutoQVISError(f"{text}: repository {repo_id} not found on the hub (private or misspelt?)") from None
    except errors.RevisionNotFoundError:
        raise AutoQVISError(f"{text}: revision {revision} not found in {repo_id}") from None
    except errors.EntryNotFoundError:
        raise AutoQVISError(f"{text}: {repo_id} has no file {filename}") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise AutoQVISError(f"{text}: could not fetch {where} ({msg[:200]})") from None


# detectron2 checkpoints carry no config: the architectures we know by their key shapes
_R50_SIGNATURE = {
    "backbone.res5.2.conv3.weight": (2048, 512, 1, 1),
    "sem_seg_head.predictor.query_feat.weight": (100, 256),
    "sem_seg_head.predictor.class_embed.weight": (2, 256),
}
QUALITY_PREFIX = "sem_seg_head.predictor.maskiou_feature_extractor."


def infer_config(state: dict[str, torch.Tensor]) -> tuple[str, bool] | None:
    """(packaged config name, whether the file holds the quality predictor) for a state dict without a stored
    config, from its key shapes: the R50 VideoMask2Former of VideoCutLER (no predictor) and of AutoQ-VIS (with
    it) -> ``ytvis19_r50``. None when the keys match no known architecture."""
    mapped, _ = map_state_dict(state)
    if all(k in mapped and tuple(mapped[k].shape) == s for k, s in _R50_SIGNATURE.items()):
        return "ytvis19_r50", any(k.startswith(QUALITY_PREFIX) for k in mapped)
    return None


def checkpoint_config(path: str | Path, config: str | Path | None = None, overrides: list[str] | None = None):
    """The config for ``path``'s weights: ``config`` if given, else the one stored in the checkpoint, else the one
    inferred from its keys (``infer_config``; a file without the quality predictor gets it switched off).

    Raises:
        AutoQVISError: the stored config is invalid, or there is none and the keys match no known architecture.
    """
    if config is not None:
        return load_config(config, overrides)
    state, meta = read_checkpoint(path)
    if isinstance(meta.get("config"), dict):
        stored = meta["config"]
        inference = stored.get("inference", {})
        if isinstance(inference, dict) and "amp_dtype" not in inference:
            # saved before inference.amp_dtype: its test passes ran in float32 (bf16 under train.amp_inference,
            # which config_from_dict maps, silently for a stored config)
            stored = {**stored, "inference": {**inference, "amp_dtype": "none"}}
        try:
            cfg = config_from_dict(stored, legacy_note=False)
        except AutoQVISError as e:
            raise AutoQVISError(f"{path}: its stored config is not valid here ({e}); pass --config") from None
        if overrides:
            raise AutoQVISError(f"{path}: key=value overrides need --config (the checkpoint's own config is used as is)")
        return cfg
    found = infer_config(state)
    if found is None:
        raise AutoQVISError(f"{path}: holds no config and its keys match no known architecture (R50 VideoCutLER "
                            "/ AutoQ-VIS); pass --config CFG")
    name, has_quality = found
    cfg = load_config(name, overrides)
    if not has_quality and cfg.model.quality.enabled:
        cfg = replace(cfg, model=replace(cfg.model, quality=replace(cfg.model.quality, enabled=False)))
    log.info("%s: no stored config; keys match %s (%s quality predictor)", path, name,
             "with" if has_quality else "without")
    return cfg


def load_model(checkpoint: str, config: str | None, device: "str | torch.device | None"):
    """(model in eval mode on ``device``, its config). ``checkpoint`` is a path or ``hf://OWNER/REPO/FILE``; the
    config comes from ``config``, the checkpoint, or the checkpoint's keys (R50 VideoCutLER / AutoQ-VIS). A file
    that does not fit that architecture is an error; a file without quality predictor weights (e.g. VideoCutLER)
    gives a model without one (no per-frame predicted IoU), rather than an untrained one."""
    checkpoint = str(resolve_checkpoint(checkpoint))
    cfg = checkpoint_config(checkpoint, config)
    model = build_model(cfg)
    report = load_checkpoint(model, checkpoint)
    # entries a file never carries (map_key drops them, e.g. BatchNorm counters) are not "missing"
    missing = [k for k in report.missing if not k.startswith(QUALITY_PREFIX) and map_key(k) is not None]
    if missing or report.unexpected:
        keys = (missing or report.unexpected)[:3]
        raise AutoQVISError(
            f"{checkpoint}: does not fit the model of config '{cfg.name}' ({len(missing)} weights missing, "
            f"{len(report.unexpected)} unknown, e.g. {', '.join(keys)}): a checkpoint of another architecture?"
        )
    if cfg.model.quality.enabled and any(k.startswith(QUALITY_PREFIX) for k in report.missing):
        print(f"note: {checkpoint} has no quality predictor weights; predicting without per-frame predicted IoU")
        cfg = replace(cfg, model=replace(cfg.model, quality=replace(cfg.model.quality, enabled=False)))
        model = build_model(cfg)
        load_checkpoint(model, checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), cfg
