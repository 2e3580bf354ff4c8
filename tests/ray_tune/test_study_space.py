"""The default space (`make run`: pretrained, few-shot Fashion-MNIST, confirm) runs on Ray, shrunk with ``--set``.

Real Ray, real packaged ImageNet weights (converted inside the Ray workers, in a fresh cache), real
Fashion-MNIST: one batch size, the four families, 2 optimiser steps on a 2-shot subset, then its confirm
stage on one fresh seed, scored on the test split. What it proves is the path, not the accuracy: every
trial completes, SupCon/SCHaNe are scored by the linear probe, the confirm rows carry a test score, and
`analyze` writes the report.
"""

from __future__ import annotations

import subprocess
import tempfile

import pytest

from tests.support.offline_assets import need_fashion_mnist, need_weights
from tests.support.raykit import VENV_BIN, kill_marked, ray_env
from tune_schane.space import builtin_dir
from tune_schane.store import TrialStore

pytestmark = pytest.mark.slow
SHRINK = ["--set", "grid.batch_size=[8]", "--set", "shots=2", "--set", "val_size=40", "--set", "budget.value=2",
          "--set", "budget.reports=1", "--set", "num_samples=1", "--set", "confirm.seeds=1"]


def test_default_space_runs_on_ray_offline_with_its_confirm_stage(tmp_path):
    need_fashion_mnist()
    need_weights("mobilenetv2_100")
    env = ray_env()
    env["TUNE_SCHANE_CACHE"] = str(tmp_path / "cache")  # the Ray workers convert the weights themselves
    raytmp = tempfile.mkdtemp(prefix="tss", dir="/tmp")  # short: Ray's socket paths have a length limit
    env["RAY_TMPDIR"] = raytmp
    space = builtin_dir() / "default.yaml"
    try:
        sweep = subprocess.run([str(VENV_BIN / "tune-schane"), "sweep", str(space), "--name", "study-smoke", *SHRINK],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        kill_marked(raytmp)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    trials = TrialStore(tmp_path / "trials").load_trials("study-smoke")
    assert len(trials) == 8 and set(trials["status"]) == {"completed"}, trials  # 4 families: search + confirm
    assert trials["config_pretrained"].all() and set(trials["config_model"]) == {"mobilenetv2_100"}
    assert (trials["steps_run"] == 2).all()
    probed = trials.set_index("config_loss")["config_eval_mode"].to_dict()
    assert probed == {"ce": "end_to_end", "clce": "end_to_end", "supcon": "linear_probe", "schane": "linear_probe"}
    confirm = trials[trials["stage"] == "confirm"]
    assert len(confirm) == 4 and (confirm["test_images"] == 10000).all() and confirm["test_top1"].notna().all()
    assert list((tmp_path / "cache" / "weights").glob("mobilenetv2_100-*.safetensors"))
    report = subprocess.run([str(VENV_BIN / "tune-schane"), "analyze", "--sweep", "study-smoke"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (tmp_path / "reports" / "study-smoke" / "report.html").read_text()
    assert "mobilenetv2_100 (pretrained)" in html and "trained from scratch (no pretrained" not in html
