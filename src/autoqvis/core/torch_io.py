"""Checkpoint files: torch.save written atomically (through :mod:`autoqvis.core.fileio`), torch.load with
``weights_only=True``. Apart from fileio so that reading json never imports torch."""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import AutoQVISError, first_line
from .fileio import atomic_write_bytes


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise AutoQVISError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise AutoQVISError(f"{path}: checkpoint is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it references {found.group(1)}" if found else _weights_only_reason(e)
        raise AutoQVISError(
            f"{path}: refused to load: {what}, which is not a tensor or a plain container "
            "(checkpoints are read with weights_only=True, so no code stored in them can run)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = first_line(e).split(". ")[0]  # torch appends paragraphs of advice after the first sentence
        raise AutoQVISError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def _weights_only_reason(e: BaseException) -> str:
    """The line of torch's weights_only refusal that says what was refused (it leads with advice)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines()]
    found = next((ln for ln in lines if "WeightsUnpickler error" in ln), None)
    return (found.split(":", 1)[1].strip().rstrip(".") if found else "it holds unsupported content")
