"""autoqvis: unsupervised video instance segmentation by quality-guided self-training (AutoQ-VIS).

Python API (see docs/architecture.md)::

    from autoqvis import load_config, build_model, load_checkpoint
    cfg = load_config("configs/toy.yaml", overrides=["model.num_queries=20"])
    model = build_model(cfg).eval()
    load_checkpoint(model, path)
    out = model.forward_raw(clip)   # clip: float (T, 3, H, W), RGB 0..255
"""

from __future__ import annotations

from typing import Any

from .core.config import Config, load_config
from .core.errors import AutoQVISError

__version__ = "0.1.0"


def build_model(cfg: Config) -> Any:
    """The VideoMaskFormer (+ quality predictor when ``cfg.model.quality.enabled``) of ``cfg``."""
    from .model.vis_model import build_model as _build  # why: torch is heavy; `import autoqvis` (the CLI) stays light

    return _build(cfg)


def load_checkpoint(model: Any, path: str, **kwargs: Any) -> Any:
    """Load our ``.pt`` or a detectron2 ``.pth`` (VideoCutLER / AutoQ-VIS) into ``model``."""
    from .model.checkpoint import load_checkpoint as _load  # why: as above, torch only when a model is built

    return _load(model, path, **kwargs)


__all__ = ["AutoQVISError", "Config", "build_model", "load_checkpoint", "load_config", "__version__"]
