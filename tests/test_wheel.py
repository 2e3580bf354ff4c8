"""The wheel works outside the clone: built, installed without -e into a fresh venv, run from elsewhere.

Dependencies are not installed again (torch alone takes minutes): the fresh venv reaches the shared
venv's site-packages through a plain path in a .pth file. Plain paths in a .pth are not processed as
site dirs, so the shared venv's own .pth files (its editable finder pointing at a clone) are not
loaded; the test checks that tune_schane and tune_schane.analysis import from the fresh venv, in the driver and
in the Ray trial. The .pth is written after the wheel is installed, so pip never sees the shared
venv's editable tune-schane.

It is also the README's new-user path, once, through the installed console script: the toy space
(`tune-schane sweep digits`, no dataset, no weights) shrunk to one epoch of its batch-64 cells, then
`status`, `analyze` (a report),
`export`, and `tune-schane train best.yaml` reproducing the exported trial's objective. The pretrained
default space runs, shrunk, in tests/ray_tune/test_study_space.py.

The same sweep shows item 6 of issue 15: it runs with a dead head recorded as Ray's current cluster
(under a private RAY_TMPDIR) and, with no --address, starts its own Ray instead of waiting on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support.raykit import free_port, kill_marked
from tune_schane.space import builtin_dir, load_space
from tune_schane.store import TrialStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: int = 300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("tune_schane", "analysis"):  # tune_schane/analysis links to analysis/: copied as a link
        shutil.copytree(ROOT / package, src / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
         cwd=tmp)
    (wheel,) = (tmp / "dist").glob("tune_schane-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], cwd=tmp)
    fresh_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(fresh_site) / "_shared_venv_deps.pth").write_text("".join(f"{p}\n" for p in sorted(shared)))
    return venv


def test_wheel_installed_without_e_runs_sweep_analyze_export_train_outside_the_clone(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="tsw", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (ray_tmp / "ray").mkdir()
    dead = f"127.0.0.2:{free_port()}"
    (ray_tmp / "ray" / "ray_current_cluster").write_text(dead)  # a head that died without `ray stop`
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(HF_HUB_OFFLINE="1", RAY_TMPDIR=str(ray_tmp), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    cli = venv / "bin" / "tune-schane"
    try:
        where = _run([venv / "bin" / "python", "-c", "import tune_schane, tune_schane.analysis as a; "
                      "print(tune_schane.__file__); print(a.__file__)"], cwd=work, env=env).split()
        assert all(Path(p).is_relative_to(venv) for p in where), where
        plain = subprocess.run([venv / "bin" / "python", "-c", "import analysis"], cwd=work, env=env,
                               capture_output=True, text=True)
        assert plain.returncode != 0 and "No module named 'analysis'" in plain.stderr  # no generic top-level name
        assert "batch_size_ablation" in _run([cli, "spaces"], cwd=work, env=env)

        # The toy space (no dataset, no weights), shrunk to its 4 batch-64 cells of 1 epoch: the suite's time.
        out = _run([cli, "sweep", "digits", "--set", "grid.batch_size=[64]", "--set", "scheduler.max_epochs=1",
                    "--name", "w1"], cwd=work, env=env, timeout=900)
        assert "sweep w1 done" in out
        trials = TrialStore(work / "trials").load_trials("w1")  # the default store: ./trials
        assert len(trials) == 4 * load_space(builtin_dir() / "digits.yaml").num_samples
        assert set(trials["status"]) <= {"completed", "pruned"}, trials[["status", "error"]]
        completed = trials[trials["status"] == "completed"]
        assert set(completed["config_loss"]) == {"ce", "supcon", "schane", "clce"}  # a completed trial per family
        results = list((work / "runs" / "ray" / "w1").glob("trial_*/result.json"))  # Ray storage: ./runs/ray
        code = {json.loads(line)["code_path"] for r in results for line in r.read_text().splitlines() if line.strip()}
        assert code and all(Path(p).is_relative_to(venv) for p in code), code  # the trial ran the wheel

        assert "w1" in _run([cli, "status"], cwd=work, env=env)
        _run([cli, "analyze"], cwd=work, env=env)
        assert (work / "reports" / "w1" / "report.html").stat().st_size > 1000
        _run([cli, "export", "--out", "best"], cwd=work, env=env)
        exported = yaml.safe_load((work / "best" / "best.yaml").read_text())
        out = _run([cli, "train", "best/best.yaml", "--sweep-id", "rerun"], cwd=work, env=env)
        assert "completed: best val_top1" in out
        again = TrialStore(work / "trials").load_trials("rerun").iloc[0]
        assert again["status"] == "completed"
        assert again["config_seed"] == exported["seed"] and again["config_lr"] == exported["lr"]
        # Same seed, device and thread count: the CPU rerun is deterministic to the last bit here; allow
        # one validation image (1/287 = 0.35 points, the digits' val) for platforms where it is not.
        target = exported["provenance"]["final_objective"]
        assert abs(again["final_objective"] - target) <= 100 / 287 + 1e-9, (again["final_objective"], target)
    finally:
        kill_marked(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
