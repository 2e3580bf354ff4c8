"""A real Ray Tune sweep where trials fail: each ending gets its status and the sweep goes on.

Its own module (and so its own Ray) because the simulated out-of-memory is an environment variable
that Ray's workers inherit when Ray starts (tests/ray_tune/test_sweep.py shares one Ray between its tests).
"""

from __future__ import annotations

import pytest

from tests.support.sweeps import FAST_FIXED, write_space
from tune_schane.finetune.train import SIMULATE_OOM_ENV
from tune_schane.space import load_space
from tune_schane.store import TrialStore

ray_tune = pytest.importorskip("tune_schane.ray_tune")


@pytest.fixture
def own_ray():
    """A Ray of this test's own: the session's (tests/conftest.py) goes first, and comes back on demand."""
    ray_tune.shutdown()
    yield
    ray_tune.shutdown()


@pytest.mark.slow
def test_failures_end_with_their_status_and_the_sweep_goes_on(tmp_path, own_ray, monkeypatch):
    """Grid of batch size × learning rate: OOM at 64, an error at 512 (bigger than the data), divergence at lr 1e8."""
    monkeypatch.setenv(SIMULATE_OOM_ENV, "64")  # inherited by the Ray workers started below
    path = write_space(tmp_path, FAST_FIXED + """\
  optimizer: sgd
  lr_rule: none
  tau: 0.0001
  loss: supcon
name: faults
grid:
  batch_size: [16, 64, 512]
params:
  lr: {choice: [0.001, 1.0e8]}
objective: {metric: val_top1, mode: max}
searcher: {type: grid}
scheduler: {type: fifo, max_epochs: 2}
max_concurrent: 2
resources: {cpu: 1}
""")
    space = load_space(path)
    store_uri = str(tmp_path / "store")
    ray_tune.init_ray(None, num_cpus=2)
    ray_tune.run_sweep(space, sweep_id="faults", store_uri=store_uri, storage_path=str(tmp_path / "ray"),
                       max_failures=1, verbose=0)
    trials = TrialStore(store_uri).load_trials("faults")
    by_cell = {(int(r.config_batch_size), r.config_lr): r for r in trials.itertuples()}
    assert len(trials) == 6
    assert by_cell[(16, 0.001)].status == "completed"
    assert by_cell[(16, 1e8)].status == "diverged"
    assert by_cell[(16, 1e8)].epochs_run == 0 and "non-finite" in by_cell[(16, 1e8)].error
    for lr in (0.001, 1e8):
        assert by_cell[(64, lr)].status == "oom", by_cell[(64, lr)].error
        assert by_cell[(64, lr)].config_batch_size == 64  # never retried at a smaller batch
        assert by_cell[(512, lr)].status == "error"
        assert "larger than the training set" in by_cell[(512, lr)].error
