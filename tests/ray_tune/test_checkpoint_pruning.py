"""An ended trial's checkpoints go only once Ray has saved an experiment state after its end (no cluster).

Until then a driver killed now resumes from an older saved state, which may name the trial running
at one of those checkpoints: deleting them made the resumed trial error and overwrite its good row.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pyarrow.fs as pafs
import pytest

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune._recording import StoreCallback  # noqa: E402


def test_checkpoints_of_an_ended_trial_wait_for_a_saved_state_that_knows_it_ended(tmp_path):
    experiment = tmp_path / "sweep"
    trial_dir = experiment / "trial_t1"
    for i in range(3):
        (trial_dir / f"checkpoint_00000{i}").mkdir(parents=True)
    state = experiment / "experiment_state-2026-12-01_00-00-00.json"
    state.write_text("{}")
    storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), experiment_fs_path=str(experiment),
                              trial_fs_path=str(trial_dir))
    callback = StoreCallback(str(tmp_path / "store"), "s", space=None)
    callback.ended.append((SimpleNamespace(storage=storage), state.stat().st_mtime + 10))  # ended after the save
    callback._drop_ended_checkpoints()
    assert sorted(p.name for p in trial_dir.iterdir()) == ["checkpoint_000000", "checkpoint_000001",
                                                           "checkpoint_000002"]  # the saved state predates its end
    later = state.stat().st_mtime + 20
    os.utime(state, (later, later))  # Ray saves the state again, now with the trial terminated
    callback._drop_ended_checkpoints()
    assert sorted(p.name for p in trial_dir.iterdir()) == ["checkpoint_000002"] and callback.ended == []
