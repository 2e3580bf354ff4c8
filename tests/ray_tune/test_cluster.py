"""A two-node Ray cluster on loopback addresses (127.0.0.2 head, 127.0.0.3 worker), started by the test.

ENV-NOTES.md: Ray rewrites 127.0.0.1 to the machine's address, so the nodes use other loopback
addresses. Both tests run `tune-schane sweep --address` as a user would, in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.raykit import VENV_BIN, free_port, kill_marked, ray_env, ray_start
from tune_schane.analysis.sensitivity import batch_size_table
from tune_schane.store import TrialStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

SPACE = """\
name: cluster
fixed:
  model: test_vit
  dataset: digits
  img_size: 16
  shots: {shots}
  num_threads: 1
  loss: ce
  warmup_epochs: 0
params:
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
  batch_size: {{choice: [16]}}
objective: {{metric: val_top1, mode: max}}
searcher: {{type: random, seed: 0}}
scheduler: {{type: fifo, max_epochs: {epochs}}}
num_samples: 4
max_concurrent: 2
resources: {{cpu: 1, gpu: 1}}
"""


@pytest.fixture(scope="module")
def cluster():
    """Head on 127.0.0.2 and a worker on 127.0.0.3, one CPU and two logical GPUs each.

    Started once for the module: the test that kills the worker node runs last (file order).
    """
    temp = Path(tempfile.mkdtemp(prefix="tsr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    address = f"127.0.0.2:{port}"
    try:
        ray_start("--head", "--node-ip-address=127.0.0.2", f"--port={port}", "--num-cpus=1", "--num-gpus=2",
                  "--include-dashboard=false", temp_dir=temp)
        ray_start(f"--address={address}", "--node-ip-address=127.0.0.3", "--num-cpus=1", "--num-gpus=2")
        yield address
    finally:
        kill_marked("--node-ip-address=127.0.0.3")
        kill_marked(str(temp))
        kill_marked(address)


def _sweep(tmp_path: Path, address: str, *, shots: int, epochs: int) -> subprocess.Popen:
    space = tmp_path / "cluster.yaml"
    space.write_text(textwrap.dedent(SPACE.format(shots=shots, epochs=epochs)))
    cmd = [str(VENV_BIN / "tune-schane"), "sweep", str(space), "--address", address, "--name", "c1",
           "--store", str(tmp_path / "store"), "--storage", str(tmp_path / "ray")]
    return subprocess.Popen(cmd, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _results(tmp_path: Path) -> dict[str, list[dict]]:
    """Every result Ray wrote so far, per trial folder."""
    out = {}
    for path in (tmp_path / "ray" / "c1").glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.parent.name] = lines
    return out


def test_sweep_over_two_loopback_nodes_uses_both(tmp_path, cluster):
    """Trials run on both nodes, importing the code the driver shipped, not the clone.

    Both nodes were started with this clone on PYTHONPATH (ray_env) and the driver runs in the
    clone, so a trial that did not use the shipped copy would import tune_schane from ROOT.
    """
    proc = _sweep(tmp_path, cluster, shots=12, epochs=2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "code shipped to the nodes" in out
    trials = TrialStore(tmp_path / "store").load_trials("c1")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert set(trials["node"]) == {"127.0.0.2", "127.0.0.3"}, trials[["trial_id", "node"]]
    code = {r["code_path"] for rs in _results(tmp_path).values() for r in rs}
    assert code and all("/runtime_resources/working_dir_files/" in path for path in code), code
    assert not any(Path(path).is_relative_to(ROOT) for path in code), code


DDP_SPACE = """\
name: cluster-ddp
fixed: {model: test_vit, dataset: digits, img_size: 16, shots: 12, num_threads: 1, loss: clce,
        warmup_epochs: 0, batch_size: 16, workers: 2}
params:
  lr: {choice: [5.0e-3, 1.0e-9, 1.0e+8]}
  tau: {choice: [1.0e-4], when: {lr: [1.0e+8]}}
  optimizer: {choice: [sgd], when: {lr: [1.0e+8]}}
lr_rule: none
objective: {metric: val_top1, mode: max}
searcher: {type: grid}
scheduler: {type: asha, max_epochs: 2, grace_period: 1, reduction_factor: 2}
resources: {cpu: 0.4, gpu: 2}
"""


def test_data_parallel_trials_span_both_nodes_and_end_as_one_process_trials_do(tmp_path, cluster):
    """Three `workers: 2` trials (Ray Train jobs), one at a time: each worker asks for 2 logical GPUs,
    a node has 2, so every trial's two workers sit on both nodes. In grid order: lr 5e-3 completes;
    lr 1e-9 learns nothing and ASHA stops it after epoch 1 (its workers' placement group must then be
    freed, or the third trial would wait forever); lr 1e8 (SGD, τ 1e-4) diverges in its first epoch."""
    space = tmp_path / "ddp.yaml"
    space.write_text(DDP_SPACE)
    cmd = [str(VENV_BIN / "tune-schane"), "sweep", str(space), "--address", cluster, "--name", "d1",
           "--store", str(tmp_path / "store"), "--storage", str(tmp_path / "ray")]
    proc = subprocess.run(cmd, env=ray_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    trials = TrialStore(tmp_path / "store").load_trials("d1").sort_values("config_lr", ascending=False)
    assert list(trials["status"]) == ["diverged", "completed", "pruned"], trials[["config_lr", "status", "error"]]
    assert list(trials["epochs_run"]) == [0, 2, 1]
    assert set(trials["config_workers"]) == {2} and set(trials["resources_gpu"]) == {2.0}
    for nodes in trials["node"]:  # the workers' nodes in rank order: one worker on each node
        assert sorted(nodes.split(",")) == ["127.0.0.2", "127.0.0.3"], trials["node"]
    epochs = TrialStore(tmp_path / "store").load_epochs("d1")
    assert len(epochs) == 3 and epochs["val_top1"].notna().all()
    table = batch_size_table(trials)  # the analysis groups by the global batch, whatever the workers
    assert list(table["batch_size"]) == [16] and int(table["n_trials"].iloc[0]) == 3


def test_worker_node_lost_mid_sweep_trials_resume_from_checkpoint(tmp_path, cluster):
    # 16 epochs: on an idle machine (warm workers from the module's first sweep) an 8-epoch trial could
    # finish on the worker before the kill landed, leaving nothing to move (seen once in a clean run).
    proc = _sweep(tmp_path, cluster, shots=30, epochs=16)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for a trial on the worker to report an epoch
            on_worker = [r for rs in _results(tmp_path).values() for r in rs if r.get("node_ip") == "127.0.0.3"]
            if on_worker or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert on_worker, "no trial ever ran on the worker node"
        kill_marked("--node-ip-address=127.0.0.3")  # the worker node dies: raylet, workers, agents
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    trials = TrialStore(tmp_path / "store").load_trials("c1")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}, trials[["trial_id", "status", "error"]]
    moved = 0
    for results in _results(tmp_path).values():
        nodes = [r["node_ip"] for r in results]
        if "127.0.0.3" in nodes and nodes[-1] == "127.0.0.2":  # ran on the worker, finished on the head
            moved += 1
            first_on_head = next(r for r in results if r["node_ip"] == "127.0.0.2")
            assert first_on_head["epoch"] > 1, "the retry started over instead of resuming its checkpoint"
    assert moved >= 1
