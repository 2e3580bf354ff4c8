"""The sweep driver SIGKILLed at three points in a row, resumed each time: every trial once, statuses right.

The kill comes from inside the driver (``TUNE_SCHANE_KILL_AT``, see tune_schane/faults.py) so that
it lands at a chosen point: while the searcher hands out a config, while trials are mid-run, and
while a store part file is written. Ray processes the killed driver started are then ended by PID.
"""

from __future__ import annotations

import subprocess
import tempfile
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.raykit import VENV_BIN, kill_marked, ray_env
from tests.support.sweeps import FAST_FIXED
from tune_schane.faults import KILL_ENV
from tune_schane.store import TrialStore

pytestmark = pytest.mark.slow

SPACE = FAST_FIXED + """\
name: resume
params:
  loss: {choice: [ce, supcon, clce]}
  tau: {loguniform: [0.05, 0.5], when: {loss: [supcon, clce]}}
  beta: {uniform: [0.0, 2.0], when: {loss: clce}}
  lam: {uniform: [0.2, 0.8], when: {loss: clce}}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
  batch_size: {choice: [16]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 1}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 8
max_concurrent: 2
resources: {cpu: 1}
"""


def _run(tmp_path: Path, temp: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = ray_env()
    env["RAY_TMPDIR"] = str(temp)  # the Ray this driver starts lives under a folder only this test uses
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    cmd = [str(VENV_BIN / "tune-schane"), "sweep", str(tmp_path / "space.yaml"), "--name", "r1",
           "--store", str(tmp_path / "store"), "--storage", str(tmp_path / "ray"), "--num-cpus", "2", *extra]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        kill_marked(str(temp))  # what a killed driver leaves behind (raylet, GCS, agents, workers)


def _whole_parts(store_dir: Path) -> None:
    """Whatever a kill left, readers see only whole part files."""
    for part in store_dir.glob("*/part-*.parquet"):
        pq.read_table(part)


def _drill(tmp_path: Path, kills: list[str], *tracked: str):
    """Kill the sweep at each point in turn, resuming it each time, then resume it to the end.

    Checks after every kill that readers see whole part files and no ended trial lost its row; at the
    end, every trial once with a whole history. Returns the store's trials.
    """
    (tmp_path / "space.yaml").write_text(textwrap.dedent(SPACE))
    temp = Path(tempfile.mkdtemp(prefix="tsk", dir="/tmp"))
    store = TrialStore(tmp_path / "store")
    seen: set[str] = set()
    for n, kill_at in enumerate(kills):
        killed = _run(tmp_path, temp, *tracked, *(["--resume"] if n else []), kill_at=kill_at)
        assert killed.returncode == -9, (kill_at, killed.stdout[-2000:] + killed.stderr[-2000:])
        _whole_parts(tmp_path / "store")
        now = set(store.load_trials("r1")["trial_id"]) if store.exists() else set()
        assert seen <= now, f"rows lost by the kill at {kill_at}: {seen - now}"  # ended trials keep their rows
        seen = now
    assert len(seen) < 8, "the sweep ended before the last kill: nothing left to resume"

    resumed = _run(tmp_path, temp, "--resume", *tracked)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = store.load_trials("r1")
    assert len(trials) == 8, trials[["trial_id", "status"]]
    assert trials["trial_id"].is_unique and seen <= set(trials["trial_id"])
    assert set(trials["status"]) <= {"completed", "pruned"}, trials[["trial_id", "status", "error"]]
    epochs = store.load_epochs("r1")
    for row in trials.itertuples():
        mine = epochs[epochs["trial_id"] == row.trial_id]
        assert list(mine["epoch"]) == list(range(1, row.epochs_run + 1)), row.trial_id
    return trials


def test_driver_sigkilled_three_times_then_resumed_finishes_every_trial_once(tmp_path):
    """One sweep killed while the searcher hands out a config, then mid-run, then inside a store write,
    resumed each time: the three drills share one sweep's worth of training.

    The studies live in SQLite, so the searcher's side of every resume is checked too (journal files:
    tests/ray_tune/test_optuna_storage.py): the kill mid-run has Ray rerun trials the study already heard
    about; the kill inside the store write can leave a trial told in the study, unknown to Ray's saved
    state and without a row, which the resume writes from the trial's folder (record_told_trials).
    """
    url = f"sqlite:///{tmp_path}/studies.db"
    trials = _drill(tmp_path, ["sample:4", "result:3", "store-write:2"], "--optuna-storage", url)
    import optuna

    study = optuna.load_study(study_name="r1/all", storage=url)
    told = [(t.number, t.state.name, t.user_attrs.get("ray_trial_ids")) for t in study.trials]
    states = {t.user_attrs["ray_trial_ids"][0]: t.state.name for t in study.trials}
    assert len(study.trials) == 8 and sorted(states) == sorted(trials["trial_id"]), told
    assert states == {r.trial_id: {"completed": "COMPLETE", "pruned": "PRUNED"}[r.status]
                      for r in trials.itertuples()}
