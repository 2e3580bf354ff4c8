"""Analysis functions on hand-built tables with known answers, export round trips, command errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.known_fixtures import frame, real_store, sloped, trial
from tune_schane.analysis.command import analyze_command, export_command
from tune_schane.analysis.export import best_trials, config_from_row, export_best
from tune_schane.analysis.importance import param_importance, study_from_trials
from tune_schane.analysis.sensitivity import batch_size_table, batch_size_trend, paired_seeds
from tune_schane.analysis.slices import budget_table, slice_frame
from tune_schane.errors import BadInput
from tune_schane.finetune.config import load_config
from tune_schane.store import TrialStore


def test_known_slope_and_drop_per_doubling():
    table = batch_size_table(sloped(slope=2.0))
    trend = batch_size_trend(table).set_index("loss")
    assert trend.loc["ce", "slope_best"] == pytest.approx(2.0)
    assert trend.loc["schane", "slope_best"] == pytest.approx(2.0)
    assert trend.loc["ce", "drop_best"] == pytest.approx(2.0 * 3)  # 16 -> 128 is three doublings
    assert trend.loc["schane", "slope_best_vs_ce"] == pytest.approx(0.0)
    assert list(table[table["loss"] == "schane"]["delta_best_vs_ce"]) == pytest.approx([5.0] * 4)


def test_best_mean_and_seed_interval_behaviour():
    rows = [trial(f"a{i}", "ce", 32, v, seed=i) for i, v in enumerate([60, 70, 80, 65, 75])]
    rows += [trial(f"b{i}", "ce", 64, 70 + (i % 2) * 10, seed=i % 10) for i in range(30)]
    rows += [trial("c0", "ce", 128, 75.0)]
    table = batch_size_table(frame(rows)).set_index("batch_size")
    assert table.loc[32, "best"] == 80 and table.loc[32, "mean"] == pytest.approx(70)
    width_small = table.loc[32, "ci_high"] - table.loc[32, "ci_low"]
    width_large = table.loc[64, "ci_high"] - table.loc[64, "ci_low"]
    assert 0 < width_large < width_small  # more seeds, narrower interval (and their spread is smaller)
    assert table.loc[64, "n_seeds"] == 10 and table.loc[64, "n_used"] == 30
    assert math.isnan(table.loc[128, "ci_low"]) and table.loc[128, "n_seeds"] == 1  # one seed: no interval


def test_batch_size_with_only_failed_trials_is_kept_with_counts():
    rows = [trial("a", "ce", 32, 70.0), trial("b", "ce", 256, None, status="oom"),
            trial("c", "ce", 256, None, status="oom"), trial("d", "ce", 256, None, status="diverged"),
            trial("e", "schane", 32, 50.0, status="pruned")]
    table = batch_size_table(frame(rows)).set_index(["loss", "batch_size"])
    failed = table.loc[("ce", 256)]
    assert failed["n_trials"] == 3 and failed["n_oom"] == 2 and failed["n_diverged"] == 1
    assert math.isnan(failed["best"]) and math.isnan(failed["mean"])
    assert math.isnan(table.loc[("schane", 32), "best"])  # pruned trials do not count by default
    with_pruned = batch_size_table(frame(rows), statuses=("completed", "pruned")).set_index(["loss", "batch_size"])
    assert with_pruned.loc[("schane", 32), "best"] == 50.0
    trend = batch_size_trend(batch_size_table(frame(rows))).set_index("loss")
    assert math.isnan(trend.loc["ce", "slope_best"])  # one usable batch size: no slope


def test_min_mode_takes_the_smallest():
    rows = [trial("a", "ce", 32, 0.3, mode="min"), trial("b", "ce", 32, 0.2, mode="min")]
    assert batch_size_table(frame(rows))["best"].iloc[0] == 0.2
    assert best_trials(frame(rows))["trial_id"].iloc[0] == "b"


def test_paired_seeds_over_seeds():
    rows = []
    for seed in range(5):
        rows.append(trial(f"ce{seed}", "ce", 32, 60.0 + seed, seed=seed))
        rows.append(trial(f"sc{seed}", "schane", 32, 63.0 + seed, seed=seed))
    rows.append(trial("lonely", "schane", 64, 90.0, seed=0))  # no CE partner: no pair
    paired = paired_seeds(frame(rows))
    assert len(paired) == 2  # batch 32 and the pooled row
    row = paired.iloc[0]
    assert row["n_seeds"] == 5 and row["mean_diff"] == pytest.approx(3.0)
    assert row["ci_low"] == pytest.approx(3.0) and row["ci_high"] == pytest.approx(3.0)
    assert paired_seeds(frame([trial("x", "schane", 32, 1.0)])).empty


def test_importance_ranks_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        lr, beta = 10 ** rng.uniform(-4, -2), rng.uniform(0, 4)
        rows.append(trial(f"t{i}", "schane", 32, 50 + 10 * math.log10(lr) * -1, lr=lr, beta=beta))
    data = frame(rows)
    data["params"] = [f'{{"lr": {r["config_lr"]}, "beta": {r["config_beta"]}}}' for r in rows]
    imp = param_importance(data, seed=0)
    assert imp["param"].iloc[0] == "lr"
    assert set(imp["scope"]) == {"all"}


def test_importance_leaves_out_conditional_params_and_small_studies():
    rows = [trial(f"ce{i}", "ce", 32, 60.0 + i, lr=1e-3 * (i + 1)) for i in range(5)]
    rows += [trial(f"cl{i}", "clce", 32, 70.0 + i, lr=1e-3 * (i + 1), lam=0.1 * (i + 1)) for i in range(5)]
    data = frame(rows)
    data["params"] = "{}"  # fall back to the config columns
    study = study_from_trials(data)
    ce_trial = next(t for t in study.trials if t.params["loss"] == "ce")
    assert "lam" not in ce_trial.params and "tau" not in ce_trial.params
    imp = param_importance(data, by_loss=True)
    assert "lam" not in set(imp[imp["scope"] == "all"]["param"])
    assert "lam" in set(imp[imp["scope"] == "clce"]["param"])
    assert param_importance(frame(rows[:1])).empty


def test_slices_and_budget():
    rows = [trial("a", "ce", 32, 60.0), trial("b", "supcon", 32, 65.0, tau=0.2),
            trial("c", "supcon", 32, None, status="pruned", tau=0.3)]
    tau = slice_frame(frame(rows), "tau")
    assert list(tau["value"]) == [0.2]  # ce has no τ, the pruned one has no objective
    budget = budget_table(frame(rows)).set_index("status")
    assert budget.loc["completed", "epochs"] == 8 and budget.loc["pruned", "epochs"] == 1


def test_export_round_trip_through_the_real_store(tmp_path):
    store = real_store(tmp_path / "store")
    trials = store.load_trials("s1")
    paths = export_best(trials, tmp_path / "out")
    loaded = load_config(paths[0])
    best = best_trials(trials).iloc[0]
    assert loaded.config == config_from_row(best)
    assert loaded.provenance["trial_id"] == best["trial_id"] and loaded.provenance["sweep_id"] == "s1"
    assert loaded.provenance["best_objective"] == pytest.approx(best["best_objective"])
    assert loaded.config.epochs == 3 and loaded.config.seed == best["config_seed"]
    by_loss = export_best(trials, tmp_path / "by", by="loss")
    assert sorted(p.name for p in by_loss) == [f"best-loss-{f}.yaml" for f in sorted(["ce", "supcon", "schane",
                                                                                      "clce"])]
    assert len(export_best(trials, tmp_path / "bs", by="batch_size")) == 3


def test_analyze_command_writes_a_self_contained_report(tmp_path, capsys):
    real_store(tmp_path / "store")
    assert analyze_command(str(tmp_path / "store"), None, str(tmp_path / "report")) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "http://" not in html and "https://" not in html
    assert "name: demo" in html  # the sweep's space
    assert (tmp_path / "report" / "plots" / "batch_size.png").stat().st_size > 1000
    assert "report:" in capsys.readouterr().out


def test_command_errors(tmp_path):
    with pytest.raises(BadInput, match="nothing: no such folder"):
        analyze_command(str(tmp_path / "nothing"), None, None)
    real_store(tmp_path / "store")
    with pytest.raises(BadInput, match="'nope': not in store"):
        analyze_command(str(tmp_path / "store"), "nope", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="--out"):
        export_command(str(tmp_path / "store"), "s1", str(tmp_path / "file" / "sub"), None)
    failed = TrialStore(tmp_path / "failed")
    failed.write_trials([{"sweep_id": "f", "trial_id": "t", "status": "error", "config": {}}])
    with pytest.raises(BadInput, match="no completed trial"):
        analyze_command(str(tmp_path / "failed"), None, None)
