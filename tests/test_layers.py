"""The package's layers (docs/architecture.md): import-linter's contracts hold, and no import hides inside a function
(where it could hold an import cycle together) unless its line says why."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "autoqvis"


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is a test dependency (requirements-ci.txt)"
    proc = subprocess.run([exe], cwd=SRC.parents[1], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import statement below module level in ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return sorted(set(found))


def test_imports_inside_functions_say_why():
    unexplained = [f"{p.relative_to(SRC)}:{n}: {line}" for p in sorted(SRC.rglob("*.py"))
                   for n, line in function_level_imports(p) if "# why:" not in line]
    assert not unexplained, "imports inside functions without a '# why:' comment:\n" + "\n".join(unexplained)


def test_the_scan_sees_a_nested_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\n\ndef f():\n    if True:\n        from json import dumps  # why: probe\n")
    assert function_level_imports(module) == [(6, "from json import dumps  # why: probe")]
