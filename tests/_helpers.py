"""Small helpers shared by several test modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from autoqvis import build_model
from autoqvis.core.config import load_config
from autoqvis.core.torch_io import atomic_torch_save

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def save_random_checkpoint(path: Path, config: str = "toy", seed: int = 0) -> Path:
    """A freshly initialised model of ``config`` (weights fixed by ``seed``) saved as an autoqvis checkpoint."""
    cfg = load_config(config)
    torch.manual_seed(seed)
    atomic_torch_save({"model": build_model(cfg).state_dict(), "optimizer": None, "iteration": 0, "round": 0,
                       "config": cfg.to_dict()}, path)
    return path


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) loaded as a module, with benchmarks/ on sys.path while it loads (its
    sibling imports, as when it runs as a script)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module
