"""Run ``autoqvis`` and SIGKILL it at one named point: the fault injector of ``test_kill_resume.py``.

    python tests/_fault_driver.py KIND:TARGET:WHEN selftrain --out OUT ...

The point is read from the first argument, so the same command line without it (``python -m autoqvis ...``)
is the unpatched program. TARGET is a path relative to ``--out``; the kinds are

    step:DIR:N            at the start of the N-th training step this process runs in the trainer folder DIR
    rename:FILE:before    an atomic write of FILE has its temp file complete and fsynced, not yet renamed
    rename:FILE:after     FILE was just renamed into place, the next artefact is not written yet
    line:FILE:N           the N-th detections record this process streams to FILE (its ``.partial``) is
                          half on disk

Only private hooks of the real code are wrapped (nothing is faked): the trainer's ``_run``/``_step``, the
``os.replace`` every atomic write and the detections stream end with, and ``DetectionWriter.write``. Before
dying the driver prints ``fault KIND:TARGET:WHEN: SIGKILL`` on stderr, so the test knows the point was reached.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable


def _die(spec: str) -> None:
    sys.stderr.write(f"fault {spec}: SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _out_dir(argv: list[str]) -> Path:
    return Path(argv[argv.index("--out") + 1]).resolve()


def _same(a: Any, b: Path) -> bool:
    return Path(a).resolve() == b


def _hook(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``make(original)``; the hook must exist (a rename in src fails loudly here)."""
    original = getattr(owner, name, None)
    if original is None:
        raise SystemExit(f"_fault_driver: {owner.__name__}.{name} is gone; update tests/_fault_driver.py")
    setattr(owner, name, make(original))


def arm_step(spec: str, target: Path, n: int) -> None:
    from autoqvis.engine import trainer

    state = {"dir": None, "steps": 0}

    def make_run(run):
        def wrapped(setup, *args, **kwargs):  # setup: trainer._Run
            state["dir"] = Path(setup.out_dir)
            try:
                return run(setup, *args, **kwargs)
            finally:
                state["dir"] = None
        return wrapped

    def make_step(step):
        def wrapped(*args, **kwargs):
            if state["dir"] is not None and _same(state["dir"], target):
                state["steps"] += 1
                if state["steps"] == n:
                    _die(spec)
            return step(*args, **kwargs)
        return wrapped

    _hook(trainer, "_run", make_run)
    _hook(trainer, "_step", make_step)


def arm_rename(spec: str, target: Path, when: str) -> None:
    if when not in ("before", "after"):
        raise SystemExit(f"_fault_driver: {spec}: WHEN must be before or after")

    def make(replace):
        def wrapped(src, dst, *args, **kwargs):
            hit = _same(dst, target)
            if hit and when == "before":
                _die(spec)
            replace(src, dst, *args, **kwargs)
            if hit:
                _die(spec)
        return wrapped

    _hook(os, "replace", make)


def arm_line(spec: str, target: Path, n: int) -> None:
    from autoqvis.selftrain.pseudo_label import DetectionWriter

    count = {"lines": 0}

    def make(write):
        def wrapped(self, *args, **kwargs):
            if not _same(self.path, target):
                return write(self, *args, **kwargs)
            count["lines"] += 1
            start = self._file.tell()
            write(self, *args, **kwargs)
            if count["lines"] == n:  # cut the record just written in half, as a kill mid-write leaves it
                end = self._file.tell()
                self._file.truncate(start + (end - start) // 2)
                self._file.flush()
                os.fsync(self._file.fileno())
                _die(spec)
        return wrapped

    _hook(DetectionWriter, "write", make)


def main(argv: list[str]) -> int:
    spec, cli_args = argv[0], argv[1:]
    kind, target, when = spec.split(":")
    path = _out_dir(cli_args) / target
    if kind == "step":
        arm_step(spec, path, int(when))
    elif kind == "rename":
        arm_rename(spec, path, when)
    elif kind == "line":
        arm_line(spec, path, int(when))
    else:
        raise SystemExit(f"_fault_driver: unknown fault kind {kind!r} in {spec!r}")
    from autoqvis.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
