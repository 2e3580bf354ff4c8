"""The codebase's own promises about its shape: packages by job in layers, short files, Ray and torch in their
own packages, a light import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tune_schane", "analysis")
MAX_LINES = 400  # STYLE.md: split a file by concept when it grows past a few hundred lines
RAY_HOME = ROOT / "tune_schane" / "ray_tune"
# tune_schane's packages from the bottom up: a package imports only those below it (and the loose modules).
# losses/ and data/ sit below finetune/ (which trains with them); cli/ dispatches to everything, analysis included.
LAYERS = ("losses", "data", "finetune", "store", "space", "search", "ray_tune", "analysis", "cli")
LOOSE = {"__init__", "errors", "faults"}  # the package's top: its version, the one error type, fault injection
TORCH_HOMES = ("losses", "data", "finetune", "ray_tune")  # ray_tune runs the trial (and Ray Train's workers)


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


def test_the_sweep_driver_loads_no_torch():
    """torch and timm load in the trials' processes only: the driver of a sweep or confirm run skips
    their seconds of import (and a CPU-only driver never needs them)."""
    code = ("import sys, tune_schane.cli._commands, tune_schane.ray_tune, tune_schane.search.confirm\n"
            "print(*(name in sys.modules for name in ('ray', 'torch', 'timm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def _package_of(path: Path) -> str | None:
    """The tune_schane package a source file belongs to (``analysis`` for the top-level analysis/ folder)."""
    rel = path.relative_to(ROOT).parts
    if rel[0] == "analysis":
        return "analysis"
    return rel[1] if len(rel) > 2 else None


def _imported_packages(path: Path) -> set[str]:
    """The tune_schane packages (or loose modules) ``path`` imports, relative imports resolved."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    home = ("tune_schane", "analysis") if rel[0] == "analysis" else rel[:-1]  # analysis ships as tune_schane.analysis
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(home[: len(home) - (node.level - 1)])
                names = [[*base, *node.module.split(".")]] if node.module else [[*base, a.name] for a in node.names]
            else:
                names = [(node.module or "").split(".")]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        found.update(name[1] for name in names if name[0] == "tune_schane" and len(name) > 1)
    return found


def test_tune_schane_is_a_few_loose_modules_and_packages_by_job():
    top = ROOT / "tune_schane"
    loose = {p.stem for p in top.glob("*.py")}
    packages = {p.name for p in top.iterdir() if (p / "__init__.py").is_file()}
    assert loose == LOOSE and len(loose) <= 6
    assert packages == set(LAYERS), packages  # analysis: tune_schane/analysis links to the top-level folder
    assert (top / "analysis").is_symlink() and (top / "analysis").resolve() == ROOT / "analysis"


def test_packages_import_only_packages_below_them():
    upward = {}
    for path in _sources(*PACKAGES):
        here = _package_of(path)
        if here is None:
            continue
        for target in _imported_packages(path) - {here} - LOOSE:
            if LAYERS.index(target) > LAYERS.index(here):
                upward[str(path.relative_to(ROOT))] = target
    assert upward == {}


def test_the_loose_modules_import_no_package():
    for name in LOOSE:
        path = ROOT / "tune_schane" / f"{name}.py"
        assert _imported_packages(path) <= LOOSE, name


def test_torch_is_imported_only_where_a_trial_runs():
    importers = {str(p.relative_to(ROOT)) for p in _sources(*PACKAGES)
                 if any(m.split(".")[0] in ("torch", "timm", "torchvision") for m in _imported_modules(p))}
    assert importers
    homes = tuple(ROOT / "tune_schane" / name for name in TORCH_HOMES)
    assert {p for p in importers if not any((ROOT / p).is_relative_to(home) for home in homes)} == set()


def test_nothing_imports_analysis_by_its_folder_name():
    """The wheel installs tune_schane.analysis only: a plain ``import analysis`` would work in a clone and fail
    (or find another package of that name) once installed."""
    users = {str(p.relative_to(ROOT)) for p in _sources(*PACKAGES, "tests", "benchmarks", "docs")
             if any(m == "analysis" or m.startswith("analysis.") for m in _imported_modules(p))}
    assert users == set()


def test_private_apis_of_libraries_only_in_their_wrapper_module():
    """Ray's and Optuna's private names appear in tune_schane/ray_tune/_private_apis.py only (it says why)."""
    pattern = re.compile(r"ray\._|_create_default_callbacks|\._trial_id|\._samples")
    wrapper = RAY_HOME / "_private_apis.py"
    users = {str(p.relative_to(ROOT)) for p in _sources(*PACKAGES) if p != wrapper and pattern.search(p.read_text())}
    assert users == set()
    assert pattern.search(wrapper.read_text())


TESTS = ROOT / "tests"
TEST_HOMES = {"support", "benchmarks"}  # helpers (no tests); the benchmarks/ folder's tests


def test_tests_mirror_the_packages_and_import_no_other_test_file():
    """tests/<package>/ for each package with tests; helpers in tests/support/, never in a test file."""
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - TEST_HOMES <= set(LAYERS), folders - TEST_HOMES - set(LAYERS)
    assert set(LAYERS) <= folders, set(LAYERS) - folders  # every package has its folder of tests
    assert {p.name for p in TESTS.glob("test_*.py")} == {"test_layout.py", "test_wheel.py"}  # the project's own
    importers = {}
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if any(part.startswith("test_") for part in node.module.split(".")):
                    importers.setdefault(str(path.relative_to(ROOT)), []).append(node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if any(part.startswith("test_") for part in alias.name.split(".")):
                        importers.setdefault(str(path.relative_to(ROOT)), []).append(alias.name)
    assert importers == {}
