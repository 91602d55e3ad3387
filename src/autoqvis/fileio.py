"""Crash-safe artefact writing and safe loading.

Every artefact is written to a temp file in the destination folder, fsynced, then renamed over the
target, so a reader never sees a half-written file and a crash leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import AutoQVISError


def _check_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AutoQVISError(f"{directory}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise AutoQVISError(f"{directory}: output folder is not writable")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temp file next to ``path``; on clean exit fsync it and rename it to ``path``."""
    path = Path(path)
    _check_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # persist the rename itself
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars / arrays and tensors show up in metrics; convert instead of failing mid-write.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, default=_json_default, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise first (so a bad object never truncates an existing file), then write atomically."""
    atomic_write_text(path, dumps_json(obj, indent=indent))


def read_json(path: str | os.PathLike, what: str = "json file") -> Any:
    """Read a json file, turning every failure into one AutoQVISError that names the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AutoQVISError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise AutoQVISError(f"{path}: expected a {what}, got a folder") from None
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if not raw.strip():
        raise AutoQVISError(f"{path}: {what} is empty (0 bytes)")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise AutoQVISError(f"{path}: not valid JSON ({e})") from None


def _reject_constant(name: str) -> float:
    # Python's json accepts NaN/Infinity; real json does not and they poison metrics.
    raise ValueError(f"non-finite number {name!r} is not allowed")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise AutoQVISError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise AutoQVISError(f"{path}: checkpoint is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise AutoQVISError(
            f"{path}: refused to load: the checkpoint holds more than tensors and plain containers "
            f"(weights_only=True) — {first}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutoQVISError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
