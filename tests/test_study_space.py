"""The shipped pretrained study space runs on Ray as a new user would run it, shrunk with ``--set``.

Real Ray, real packaged ImageNet weights (converted inside the Ray workers, in a fresh cache), real
Fashion-MNIST: one batch size, the four families, one epoch on a 2-shot subset. What it proves is the
path, not the accuracy: every trial completes, the store records pretrained trials of the four
families with both seeds, and `analyze` writes the pairs.
"""

from __future__ import annotations

import subprocess
import tempfile

import pytest

from tests.offline_assets import need_fashion_mnist, need_weights
from tests.raykit import VENV_BIN, kill_marked, ray_env
from tune_schane.space import builtin_dir
from tune_schane.store import TrialStore

pytestmark = pytest.mark.slow
SHRINK = ["--set", "grid.batch_size=[8]", "--set", "shots=2", "--set", "val_size=40", "--set", "epochs=1",
          "--set", "scheduler.max_epochs=1", "--set", "num_samples=1", "--set", "img_size=32"]


def test_fewshot_study_space_runs_on_ray_offline(tmp_path):
    need_fashion_mnist()
    need_weights("mobilenetv2_100")
    env = ray_env()
    env["TUNE_SCHANE_CACHE"] = str(tmp_path / "cache")  # the Ray workers convert the weights themselves
    raytmp = tempfile.mkdtemp(prefix="tss", dir="/tmp")  # short: Ray's socket paths have a length limit
    env["RAY_TMPDIR"] = raytmp
    space = builtin_dir() / "fewshot_fashion.yaml"
    try:
        sweep = subprocess.run([str(VENV_BIN / "tune-schane"), "sweep", str(space), "--name", "study-smoke", *SHRINK],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        kill_marked(raytmp)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    trials = TrialStore(tmp_path / "trials").load_trials("study-smoke")
    assert len(trials) == 8 and set(trials["status"]) == {"completed"}  # 4 families x 2 seeds
    assert trials["config_pretrained"].all() and set(trials["config_model"]) == {"mobilenetv2_100"}
    assert sorted(trials["config_seed"].unique()) == [0, 1]
    assert list((tmp_path / "cache" / "weights").glob("mobilenetv2_100-*.safetensors"))
    report = subprocess.run([str(VENV_BIN / "tune-schane"), "analyze", "--sweep", "study-smoke"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (tmp_path / "reports" / "study-smoke" / "report.html").read_text()
    assert "mobilenetv2_100 (pretrained)" in html and "trained from scratch (no pretrained" not in html
