"""Crash-safe artefact writing and safe loading.

Every artefact is written to a temp file in the destination folder, fsynced, then renamed over the
target, so a reader never sees a half-written file and a crash leaves the previous version intact.
Temp files are hidden (``.<name>.<random>.tmp``): no reader looks for them, and a later write of the
same artefact never reuses one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import orjson

from .errors import AutoQVISError, first_line


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; an artefact gets the mode open() would give it (read once: umask has no getter)
_FILE_MODE = 0o666 & ~_process_umask()


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _check_writable_dir(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise AutoQVISError(f"{directory}: cannot be the output folder, it is a file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AutoQVISError(f"{directory}: cannot create output folder ({_reason(e)})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise AutoQVISError(f"{directory}: output folder is not writable")


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (the folder entry) where the platform allows it."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temp file next to ``path``; on clean exit fsync it and rename it to ``path``.

    On any exception (or a kill) ``path`` keeps its previous content and the temp file is removed
    (a kill leaves it, hidden, where nothing reads it). OS errors of the temp file itself (no space,
    read-only folder) become an AutoQVISError naming ``path``.
    """
    path = Path(path)
    _check_writable_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot create a file in {path.parent} ({_reason(e)})") from None
    try:
        f = os.fdopen(fd, mode)
        try:
            os.fchmod(f.fileno(), _FILE_MODE)
            yield f
            _close_synced(f, path)
        finally:
            with contextlib.suppress(OSError):  # after an error: the caller's exception is the one to see
                f.close()
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise AutoQVISError(f"{path}: cannot replace the file ({_reason(e)})") from None
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _close_synced(f: io.IOBase, path: Path) -> None:
    """Flush, fsync and close ``f``: the data is on disk before the rename makes it visible."""
    try:
        f.flush()
        os.fsync(f.fileno())
        f.close()
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot write ({_reason(e)})") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        try:
            f.write(data)
        except OSError as e:
            raise AutoQVISError(f"{path}: cannot write ({_reason(e)})") from None


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
    """Serialise first (so a bad object never truncates an existing file), then write atomically.

    A value json cannot hold (NaN, infinity, an object of unknown type) is an AutoQVISError naming ``path``.
    """
    try:
        text = dumps_json(obj, indent=indent)
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise AutoQVISError(f"{path}: not written, the data holds a value json cannot store ({e})") from None
    atomic_write_text(path, text)


class _NonFinite(float):
    """What a NaN / Infinity literal parses to until read_json reports where it was."""


def read_json(path: str | os.PathLike, what: str = "json file") -> Any:
    """Read a json file, turning every failure into one AutoQVISError that names the file.

    NaN / Infinity literals (Python accepts them, json does not, and they poison metrics) are refused
    with the location of the first one, e.g. ``annotations[3].areas[0]``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AutoQVISError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise AutoQVISError(f"{path}: expected a {what}, got a folder") from None
    except OSError as e:
        raise AutoQVISError(f"{path}: cannot read {what} ({_reason(e)})") from None
    if not raw.strip():
        raise AutoQVISError(f"{path}: {what} is empty (0 bytes)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # json below says where and why (and finds NaN / Infinity, which orjson refuses without saying)
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return _NonFinite(name)

    try:
        data = json.loads(raw, parse_constant=constant)
    except (ValueError, RecursionError) as e:
        raise AutoQVISError(f"{path}: not valid JSON ({first_line(e)})") from None
    if constants:
        raise AutoQVISError(f"{path}: {_find_non_finite(data)}: {constants[0]} is not allowed in JSON "
                            "(write null or a finite number)")
    return data


def _find_non_finite(data: Any) -> str:
    """Location (``videos[0].fps``) of the first _NonFinite in a parsed json value, depth first."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, _NonFinite):
            return where or "top level"
        if isinstance(node, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(node))))
    return "somewhere"


@contextlib.contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """A scratch folder next to ``out_dir``; on success its files move into ``out_dir`` (each an atomic rename),
    on failure it is deleted: an interrupted run leaves nothing half-written in ``out_dir``."""
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as e:
        raise AutoQVISError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from None
    try:
        yield stage
        for src in sorted(stage.rglob("*")):
            if src.is_file():
                dst = out_dir / src.relative_to(stage)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
