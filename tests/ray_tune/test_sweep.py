"""Real Ray Tune sweeps on this machine: TPE + ASHA, pruning told to Optuna, GPU packing, the CLI.

Every sweep is small (a tiny ViT on a few-shot subset of the embedded digits at 16 px) but real:
a local Ray, real Optuna samplers, real Parquet files.
"""

from __future__ import annotations

import math

import pytest

from tests.support.sweeps import FAST_FIXED, write_space
from tune_schane.cli.main import main
from tune_schane.space import load_space
from tune_schane.store import TrialStore

ray_tune = pytest.importorskip("tune_schane.ray_tune")


@pytest.mark.slow
def test_tpe_asha_sweep_prunes_tells_optuna_and_records_every_trial(tmp_path, local_ray):
    path = write_space(tmp_path, FAST_FIXED + """\
name: tpe-asha
params:
  loss: {choice: [ce, supcon, schane, clce]}
  tau: {loguniform: [0.05, 0.5], when: {loss: [supcon, schane, clce]}}
  beta: {uniform: [0.0, 4.0], when: {loss: [schane, clce]}}
  lam: {uniform: [0.1, 0.9], when: {loss: clce}}
  lr: {loguniform: [1.0e-4, 3.0e-2]}
  batch_size: {choice: [16, 32]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}
num_samples: 8
max_concurrent: 2
resources: {cpu: 1, gpu: 0}
""")
    space = load_space(path)
    store_uri = str(tmp_path / "store")
    ray_tune.init_ray(None, num_cpus=2)
    results, searcher = ray_tune.run_sweep(space, sweep_id="s1", store_uri=store_uri,
                                           storage_path=str(tmp_path / "ray"), verbose=0)
    store = TrialStore(store_uri)
    trials = store.load_trials("s1").set_index("trial_id")
    epochs = store.load_epochs("s1")

    # Results for every trial, in Ray and in the store.
    assert len(results) == 8 and len(trials) == 8
    assert set(trials["status"]) <= {"completed", "pruned"}
    statuses = trials["status"].value_counts()
    assert statuses.get("pruned", 0) >= 1 and statuses.get("completed", 0) >= 1, statuses

    # Pruned trials reached Optuna as PRUNED, completed ones as COMPLETE with their final value.
    import optuna

    for trial_id, row in trials.iterrows():
        ot = searcher.optuna_trial(trial_id)
        if row["status"] == "pruned":
            assert ot.state == optuna.trial.TrialState.PRUNED, trial_id
            assert row["epochs_run"] < space.max_epochs
        else:
            assert ot.state == optuna.trial.TrialState.COMPLETE, trial_id
            assert ot.value == pytest.approx(row["final_objective"])
            assert row["epochs_run"] == space.max_epochs

    # The epochs table is what Ray reported, epoch by epoch.
    for result in results:
        trial_id = result.metrics["trial_id"]
        reported = result.metrics_dataframe[["epoch", "val_top1", "train_loss"]].sort_values("epoch")
        stored = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        assert list(stored["epoch"]) == [int(e) for e in reported["epoch"]]
        assert list(stored["val_top1"]) == pytest.approx(list(reported["val_top1"]))
        assert list(stored["train_loss"]) == pytest.approx(list(reported["train_loss"]))
        assert trials.loc[trial_id, "epochs_run"] == len(stored)

    # Conditional parameters: ce has no τ/β/λ, supcon no β/λ, schane no λ, clce all three.
    expected_null = {"ce": {"tau", "beta", "lam"}, "supcon": {"beta", "lam"}, "schane": {"lam"}, "clce": set()}
    for _, row in trials.iterrows():
        for name in ("tau", "beta", "lam"):
            is_null = row[f"config_{name}"] is None or (isinstance(row[f"config_{name}"], float)
                                                         and math.isnan(row[f"config_{name}"]))
            assert is_null == (name in expected_null[row["config_loss"]]), (row["config_loss"], name)


@pytest.mark.slow
def test_logical_gpus_pack_small_trials_by_batch_size(tmp_path, local_ray):
    """2 logical GPUs; batch 16 asks 0.5 GPU, batch 32 a whole one: four small trials share the two GPUs.

    Trials here are made long enough (about 10 s under 4-way CPU sharing) that the four small ones
    overlap even when Ray starts their workers a few seconds apart on a busy machine.
    """
    path = write_space(tmp_path, """\
fixed:
  model: test_vit
  dataset: digits
  img_size: 16
  shots: 40
  num_threads: 1
  warmup_epochs: 0
  loss: ce
name: packing
params:
  batch_size: {choice: [16, 32]}
  lr: {choice: [0.001, 0.002, 0.003, 0.004]}
objective: {metric: val_top1, mode: max}
searcher: {type: grid}
scheduler: {type: fifo, max_epochs: 6}
max_concurrent: 8
resources:
  cpu: 0.25
  gpu: {by_batch_size: {16: 0.5, 32: 1}}
""")
    space = load_space(path)
    ray_tune.init_ray(None, num_cpus=2, num_gpus=2)
    results, _ = ray_tune.run_sweep(space, sweep_id="pack", store_uri=str(tmp_path / "store"),
                                    storage_path=str(tmp_path / "ray"), verbose=0)
    spans = []
    for result in results:
        metrics = result.metrics
        batch = result.config["trial_config"]["batch_size"]
        gpu_ids = metrics["gpu_ids"].split(",")
        assert len(gpu_ids) == 1 and gpu_ids[0] in {"0", "1"}
        spans.append((metrics["started_at"], metrics["reported_at"], batch, gpu_ids[0]))
    trials = TrialStore(str(tmp_path / "store")).load_trials("pack")
    assert sorted(trials["resources_gpu"]) == [0.5] * 4 + [1.0] * 4

    def overlapping(at: float) -> list:
        return [s for s in spans if s[0] <= at < s[1]]

    peak = max((overlapping(s[0]) for s in spans), key=len)
    small_together = max(len([s for s in overlapping(s0[0]) if s[2] == 16]) for s0 in spans)
    assert small_together == 4, spans  # 4 × 0.5 GPU on 2 GPUs at once
    assert len({s[3] for s in peak if s[2] == 16}) <= 2
    # A whole-GPU trial never shares its GPU with another trial.
    for big in (s for s in spans if s[2] == 32):
        mid = (big[0] + big[1]) / 2
        assert [s for s in overlapping(mid) if s[3] == big[3]] == [big]


@pytest.mark.slow
def test_asha_runs_per_grid_cell_so_every_cell_keeps_a_completed_trial(tmp_path, local_ray):
    """CE learns far faster than SupCon here; one global ASHA would stop every SupCon trial."""
    path = write_space(tmp_path, FAST_FIXED + """\
name: cells
grid:
  loss: [ce, supcon]
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: supcon}}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 3}
num_samples: 4
max_concurrent: 2
resources: {cpu: 1}
""")
    space = load_space(path)
    ray_tune.init_ray(None, num_cpus=2)
    ray_tune.run_sweep(space, sweep_id="cells", store_uri=str(tmp_path / "store"),
                       storage_path=str(tmp_path / "ray"), verbose=0)
    trials = TrialStore(str(tmp_path / "store")).load_trials("cells")
    counts = trials.groupby(["config_loss", "status"]).size().unstack(fill_value=0)
    assert (counts["completed"] >= 1).all(), counts
    assert counts.get("pruned", 0).sum() >= 1, counts  # ASHA is still active inside each cell


@pytest.mark.slow
def test_asha_prunes_a_configs_seeds_together_so_the_paired_table_keeps_its_pairs(tmp_path, local_ray):
    """repeats: 2 under ASHA: a config's seeds all complete or all stop, so every row keeps 2 pairs."""
    from tune_schane.analysis.sensitivity import paired_seeds

    path = write_space(tmp_path, FAST_FIXED + """\
name: seeds
grid:
  loss: [ce, clce]
  batch_size: [16, 32]
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: clce}}
  lam: {uniform: [0.1, 0.9], when: {loss: clce}}
  lr: {loguniform: [1.0e-3, 2.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 3
repeats: 2
max_concurrent: 2
resources: {cpu: 1}
""")
    ray_tune.init_ray(None, num_cpus=2)
    ray_tune.run_sweep(load_space(path), sweep_id="seeds", store_uri=str(tmp_path / "store"),
                       storage_path=str(tmp_path / "ray"), verbose=0)
    trials = TrialStore(str(tmp_path / "store")).load_trials("seeds")
    assert len(trials) == 24
    by_config = trials.groupby("params")
    assert (by_config.size() == 2).all() and (by_config["config_seed"].nunique() == 2).all()
    statuses = by_config["status"].agg(lambda s: tuple(sorted(s)))
    assert all(len(set(pair)) == 1 for pair in statuses), statuses  # both seeds end the same way
    assert (statuses == ("pruned", "pruned")).any() and (statuses == ("completed", "completed")).any(), statuses
    assert (by_config["epochs_run"].nunique() == 1).all()  # stopped at the same rung, each with its epochs
    assert (trials["epochs_run"] >= 1).all()
    paired = paired_seeds(trials)
    by_batch = paired[paired["batch_size"].notna()]
    assert len(by_batch) == 2 and (by_batch["n_seeds"] == 2).all(), paired  # one row per batch size, 2 seeds each


@pytest.mark.slow
def test_sweep_trial_over_its_memory_budget_is_chunked_and_the_store_records_the_chunk(tmp_path, local_ray):
    """On a GPU the budget is the trial's share of the card; here it is given, small enough to bind."""
    path = write_space(tmp_path, FAST_FIXED + """\
  loss: supcon
  memory_budget_mb: 1
name: budget
params:
  batch_size: {choice: [32]}
objective: {metric: val_top1, mode: max}
searcher: {type: grid}
scheduler: {type: fifo, max_epochs: 1}
max_concurrent: 1
resources: {cpu: 1}
""")
    ray_tune.init_ray(None, num_cpus=2)
    ray_tune.run_sweep(load_space(path), sweep_id="budget", store_uri=str(tmp_path / "store"),
                       storage_path=str(tmp_path / "ray"), verbose=0)
    row = TrialStore(str(tmp_path / "store")).load_trials("budget").iloc[0]
    assert row["status"] == "completed", row["error"]
    assert row["config_batch_size"] == 32 and 1 <= row["config_contrastive_chunk"] < 32
    assert row["config_memory_budget_mb"] == 1.0


def _tree_bytes(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.slow
def test_ended_trials_keep_no_checkpoints_but_the_best_ones_last(tmp_path, local_ray):
    """Issue 16 item 5: while trials run Ray keeps CHECKPOINTS_KEPT each (resume safety); a finished
    sweep keeps only the best trial's last checkpoint, in folders named by trial id alone."""
    path = write_space(tmp_path, FAST_FIXED + """\
name: keep
params:
  loss: {choice: [ce]}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
  batch_size: {choice: [16]}
objective: {metric: val_top1, mode: max}
searcher: {type: random, seed: 0}
scheduler: {type: fifo, max_epochs: 3}
num_samples: 6
max_concurrent: 2
resources: {cpu: 1, gpu: 0}
""")
    space = load_space(path)
    sizes, kept = {}, {}
    for keep in ("all", "best"):
        storage = tmp_path / f"ray-{keep}"
        results, _ = ray_tune.run_sweep(space, sweep_id=keep, store_uri=str(tmp_path / "store"),
                                        storage_path=str(storage), verbose=0, keep_checkpoints=keep)
        trial_dirs = [d for d in (storage / keep).iterdir() if d.is_dir()]
        assert sorted(d.name for d in trial_dirs) == sorted(f"trial_{r.metrics['trial_id']}" for r in results)
        kept[keep] = sorted(c.relative_to(storage / keep) for c in (storage / keep).glob("*/checkpoint_*"))
        sizes[keep] = _tree_bytes(storage)
    store = TrialStore(tmp_path / "store")
    assert len(kept["all"]) == 6 * 3  # 3 epochs each, under CHECKPOINTS_KEPT = 4: Ray's rule keeps them all
    rows = store.load_trials("best").set_index("trial_id")
    assert len(kept["best"]) == 1
    kept_id = kept["best"][0].parts[0].removeprefix("trial_")
    assert rows.loc[kept_id, "best_objective"] == rows["best_objective"].max()  # a best trial (ties: any)
    assert sizes["best"] <= 0.10 * sizes["all"], sizes
    assert set(store.load_trials("best")["status"]) == {"completed"}  # the rows were written before the deletes


@pytest.mark.slow
def test_cli_sweep_runs_and_status_counts_it(tmp_path, capsys, local_ray):
    path = write_space(tmp_path, FAST_FIXED + """\
name: cli
params:
  loss: {choice: [ce, clce]}
  tau: {loguniform: [0.05, 0.5], when: {loss: clce}}
  beta: {uniform: [0.0, 2.0], when: {loss: clce}}
  lam: {uniform: [0.1, 0.9], when: {loss: clce}}
  batch_size: {choice: [16]}
objective: {metric: val_top1, mode: max}
searcher: {type: random, seed: 3}
scheduler: {type: fifo, max_epochs: 2}
num_samples: 3
max_concurrent: 2
resources: {cpu: 1}
""")
    store = f"file://{tmp_path}/store"  # both locations as pyarrow filesystem URIs, as on a cluster
    code = main(["sweep", str(path), "--store", store, "--storage", f"file://{tmp_path}/ray", "--name", "cli-1",
                 "--num-cpus", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert ray_tune.ray_running()  # the command leaves the Ray it found (the session's) running
    assert "best search trials by val_top1 (max): selection (optimistic)" in out
    assert main(["status", "--store", store]) == 0
    status = capsys.readouterr().out
    assert "cli-1" in status and " 3 " in status
    assert TrialStore(store).read_space("cli-1") == path.read_text()
