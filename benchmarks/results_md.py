"""Write one generated block into a section of benchmarks/RESULTS.md, leaving the section's prose alone.

A block is delimited by ``<!-- NAME -->`` and ``<!-- /NAME -->`` lines inside ``## SECTION``; it is replaced when
present, else appended to the section (the section is appended to the file when missing).
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """One line naming this machine: CPU model, cores, GPU when there is one."""
    import os

    import torch

    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def write_block(section: str, name: str, text: str, path: Path = RESULTS) -> None:
    """Put ``text`` between the ``name`` markers in ``## section`` of ``path`` (atomically)."""
    from autoqvis.core.fileio import atomic_write_text

    block = f"<!-- {name} -->\n{text.strip()}\n<!-- /{name} -->\n"
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    heading = f"## {section}\n"
    found = re.search(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", old, re.S | re.M)
    if found is None:
        new = old.rstrip("\n") + "\n\n" + heading + "\n" + block
    else:
        body = found.group(0)
        marker = re.compile(rf"^<!-- {re.escape(name)} -->\n.*?^<!-- /{re.escape(name)} -->\n", re.S | re.M)
        body = marker.sub(lambda _: block, body) if marker.search(body) else body.rstrip("\n") + "\n\n" + block + "\n"
        new = old[:found.start()] + body + old[found.end():]
    atomic_write_text(path, new)


def replace_section(section: str, text: str, path: Path = RESULTS) -> None:
    """Replace the whole ``## section`` of ``path`` by ``text`` (which starts with that heading); append if missing."""
    from autoqvis.core.fileio import atomic_write_text

    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    atomic_write_text(path, new)
