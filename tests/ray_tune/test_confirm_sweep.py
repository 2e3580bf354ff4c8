"""End to end on real Fashion-MNIST and a local Ray: the search never reads test, then confirm does, once per job.

1. A sweep runs with a data_root that holds only the two *training* files: a search trial that loaded
   a test image would fail to find ``t10k-*`` and end in error; every trial completes instead, and the
   store says its val images came from the training pool and holds no test number.
2. The test files are added and ``tune-schane confirm`` (2 concurrent trials) is SIGKILLed in the middle
   (``TUNE_SCHANE_KILL_AT=result:7``, from inside the driver), then resumed: every job ends exactly once
   (one row per job key, all completed, each with its full epochs and a test score on all 10 000 test
   images), the same fresh seeds for both configs, and DuckDB reads the rows with their stage.
"""

from __future__ import annotations

import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.support.raykit import VENV_BIN, kill_marked, ray_env
from tune_schane.data.fashion_mnist import DEFAULT_ROOT, FILES
from tune_schane.faults import KILL_ENV
from tune_schane.search.confirm import CONFIRM_SEED_BASE
from tune_schane.store import TrialStore

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(DEFAULT_ROOT, FILES["test"][0]).is_file(),
                                 reason="Fashion-MNIST not installed (make data)")]

SPACE = """\
name: sealed
fixed: {model: test_vit, dataset: fashion_mnist, data_root: DATA, img_size: 16, shots: 4, val_size: 100,
        num_threads: 1, warmup_epochs: 0, lr_rule: none}
grid: {loss: [ce, clce], batch_size: [16]}
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: [clce]}}
  beta: {uniform: [0.0, 2.0], when: {loss: [clce]}}
  lam: {uniform: [0.2, 0.8], when: {loss: [clce]}}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
searcher: {type: random, seed: 3}
scheduler: {type: fifo, max_epochs: 2}
num_samples: 2
max_concurrent: 2
resources: {cpu: 1}
"""


def _cli(tmp_path: Path, temp: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = ray_env()
    env["RAY_TMPDIR"] = str(temp)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    cmd = [str(VENV_BIN / "tune-schane"), *args, "--store", str(tmp_path / "store"),
           "--storage", str(tmp_path / "ray"), "--num-cpus", "2"]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        kill_marked(str(temp))


def test_search_never_reads_test_then_confirm_survives_sigkill(tmp_path):
    data = tmp_path / "fashion"
    data.mkdir()
    for name in FILES["train"]:
        (data / name).symlink_to(Path(DEFAULT_ROOT, name))
    (tmp_path / "space.yaml").write_text(textwrap.dedent(SPACE).replace("DATA", str(data)))
    temp = Path(tempfile.mkdtemp(prefix="tsc", dir="/tmp"))

    swept = _cli(tmp_path, temp, "sweep", str(tmp_path / "space.yaml"), "--name", "c1")
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    store = TrialStore(str(tmp_path / "store"))
    search = store.load_trials("c1")
    assert len(search) == 4 and set(search["status"]) == {"completed"}, search[["status", "error"]]
    assert set(search["stage"]) == {"search"} and set(search["val_from"]) == {"train_pool"}
    assert search["test_top1"].isna().all() and search["val_images"].eq(100).all()

    for name in FILES["test"]:  # only now may anything read test
        (data / name).symlink_to(Path(DEFAULT_ROOT, name))
    killed = _cli(tmp_path, temp, "confirm", "--sweep", "c1", "--seeds", "5", kill_at="result:7")
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
    before = store.load_trials("c1")
    done_before = int((before["stage"] == "confirm").sum())
    assert done_before < 10

    resumed = _cli(tmp_path, temp, "confirm", "--sweep", "c1", "--seeds", "5", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "10 trials" in resumed.stdout and "test_top1" in resumed.stdout
    trials = store.load_trials("c1")
    confirm = trials[trials["stage"] == "confirm"]
    assert len(confirm) == 10 and confirm["confirm_job"].is_unique, confirm[["trial_id", "confirm_job", "status"]]
    assert set(confirm["status"]) == {"completed"}
    assert confirm["test_images"].eq(10_000).all() and confirm["test_top1"].between(0, 100).all()
    assert confirm["test_epoch"].eq(2).all() and set(confirm["test_epoch_pick"]) == {"final"}
    seeds = confirm.groupby("config_loss")["config_seed"].apply(sorted)
    assert all(list(s) == list(range(CONFIRM_SEED_BASE, CONFIRM_SEED_BASE + 5)) for s in seeds)
    epochs = store.load_epochs("c1")
    runs = epochs[epochs["trial_id"].isin(confirm["trial_id"])].groupby("trial_id")["epoch"].apply(sorted)
    assert all(list(e) == [1, 2] for e in runs)  # nothing run twice, nothing cut short
    assert len(trials) == 14  # the search's 4 rows untouched beside the 10 confirm rows

    duckdb = pytest.importorskip("duckdb")
    counts = duckdb.sql(f"SELECT stage, count(*) AS n, count(test_top1) AS scored FROM read_parquet("
                        f"'{tmp_path}/store/trials/**/*.parquet', union_by_name = true, hive_partitioning = false) "
                        "GROUP BY stage ORDER BY stage").fetchall()
    assert counts == [("confirm", 10, 10), ("search", 4, 0)]

    from tune_schane.analysis.command import analyze_command

    assert analyze_command(str(tmp_path / "store"), "c1", str(tmp_path / "report")) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Confirmed results (test split, fresh seeds)" in page and "selection (optimistic)" in page
    assert "rests on the search stage only" not in page  # the headline guard-rail is gone once confirmed
    summary = (tmp_path / "report" / "tables" / "confirm_summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",5," in line for line in summary[1:])  # 2 configs, 5 seeds each
