"""The codebase's own promises about its shape: short files, Ray in one package, a light import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tune_schane", "analysis")
MAX_LINES = 400  # STYLE.md: split a file by concept when it grows past a few hundred lines
RAY_HOME = ROOT / "tune_schane" / "ray_tune"


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_file_over_the_line_budget():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _sources(*PACKAGES)}
    assert len(sizes) > 20
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_ray_is_imported_only_in_the_ray_tune_package():
    importers = {str(p.relative_to(ROOT)) for p in _sources(*PACKAGES, "benchmarks")
                 if any(m == "ray" or m.startswith("ray.") for m in _imported_modules(p))}
    assert importers, "the scan found no import of ray at all"
    assert {p for p in importers if not (ROOT / p).is_relative_to(RAY_HOME)} == set()


def test_import_tune_schane_loads_neither_ray_nor_matplotlib():
    code = ("import sys, tune_schane, tune_schane.cli\n"
            "print(*(name in sys.modules for name in ('ray', 'matplotlib', 'torch', 'optuna')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]
