"""The analysis package: hand-built tables with known answers, a real store, the two commands."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.support.analysis_fixtures import build_store, frame, history, trial
from tune_schane.analysis.command import analyze_command, export_command
from tune_schane.analysis.export import best_trials, config_from_row, export_best
from tune_schane.analysis.importance import param_importance, study_from_trials
from tune_schane.analysis.report import Report, build_report, write_report
from tune_schane.analysis.sensitivity import batch_size_table, batch_size_trend, paired_seeds
from tune_schane.analysis.slices import budget_per_trial, budget_table, slice_frame
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig, load_config
from tune_schane.store import TrialStore
from tune_schane.store.records import trial_row

SIZES = (16, 32, 64, 128)


# --- sensitivity -------------------------------------------------------------------------------
def test_known_slope_per_doubling_and_drop():
    rows = [trial(loss, bs, 0.5 + 0.02 * math.log2(bs) + (0.03 if loss == "clce" else 0.0))
            for loss in ("ce", "clce") for bs in SIZES]
    rows += [trial("supcon", bs, 0.9 - 0.01 * math.log2(bs), tau=0.1) for bs in SIZES]
    table = batch_size_table(frame(rows))
    trend = batch_size_trend(table).set_index("loss")
    assert trend.loc["ce", "slope_best"] == pytest.approx(0.02)
    assert trend.loc["ce", "slope_mean"] == pytest.approx(0.02)
    assert trend.loc["ce", "drop_best"] == pytest.approx(0.02 * 3)  # 16 -> 128: three doublings
    assert trend.loc["clce", "slope_best_vs_ce"] == pytest.approx(0.0, abs=1e-12)
    assert trend.loc["supcon", "slope_best"] == pytest.approx(-0.01)
    assert trend.loc["supcon", "drop_best_vs_ce"] == pytest.approx(-0.03 - 0.06)
    clce = table[table["loss"] == "clce"]
    assert list(clce["delta_best_vs_ce"]) == pytest.approx([0.03] * 4)
    assert list(clce["delta_mean_vs_ce"]) == pytest.approx([0.03] * 4)
    assert list(table["batch_size"]) == [*SIZES] * 3 and table["batch_size"].dtype == "int64"


def test_best_mean_and_the_interval_is_over_seeds_not_trials():
    """Trials that share a seed are one observation: three configs on seed 0 give no interval at all."""
    one_seed = [trial("ce", 32, v, seed=0) for v in (0.6, 0.7, 0.8)]
    five = [trial("ce", 64, 0.7 + 0.01 * s + d, seed=s) for s in range(5) for d in (-0.05, 0.05)]
    table = batch_size_table(frame(one_seed + five)).set_index("batch_size")
    assert table.loc[32, "best"] == pytest.approx(0.8) and table.loc[32, "mean"] == pytest.approx(0.7)
    assert (table.loc[32, "n_used"], table.loc[32, "n_seeds"]) == (3, 1)
    assert math.isnan(table.loc[32, "ci_low"]) and table.loc[32, "ci_note"] == "not enough seeds for an interval"
    assert (table.loc[64, "n_used"], table.loc[64, "n_seeds"]) == (10, 5) and table.loc[64, "ci_note"] == ""
    per_seed = np.array([0.7 + 0.01 * s for s in range(5)])  # each seed's two trials averaged
    half = 2.7764451051977987 * per_seed.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert table.loc[64, "ci_low"] == pytest.approx(per_seed.mean() - half)
    assert table.loc[64, "ci_high"] == pytest.approx(per_seed.mean() + half)


def test_a_batch_size_with_only_failed_trials_is_kept_with_its_counts():
    rows = [trial("ce", 32, 0.7), trial("ce", 256, None, status="oom"), trial("ce", 256, None, status="oom"),
            trial("ce", 256, None, status="diverged"), trial("ce", 256, None, status="error"),
            trial("schane", 32, 0.5, status="pruned"), trial("schane", 256, 0.4, status="pruned")]
    table = batch_size_table(frame(rows)).set_index(["loss", "batch_size"])
    cell = table.loc[("ce", 256)]
    assert (cell["n_trials"], cell["n_used"], cell["n_oom"], cell["n_diverged"], cell["n_error"]) == (4, 0, 2, 1, 1)
    assert cell["n_completed"] == 0 and cell["n_pruned"] == 0
    for column in ("best", "mean", "ci_low", "ci_high", "delta_best_vs_ce"):
        assert math.isnan(cell[column])
    assert math.isnan(table.loc[("schane", 32), "best"])  # pruned trials do not count by default...
    assert table.loc[("schane", 32), "n_pruned"] == 1
    assert math.isnan(table.loc[("schane", 32), "delta_best_vs_ce"])
    lenient = batch_size_table(frame(rows), statuses=("completed", "pruned")).set_index(["loss", "batch_size"])
    assert lenient.loc[("schane", 32), "best"] == 0.5  # ...unless asked for
    assert lenient.loc[("schane", 32), "delta_best_vs_ce"] == pytest.approx(-0.2)
    assert math.isnan(lenient.loc[("schane", 256), "delta_best_vs_ce"])  # CE failed there: no reference
    trend = batch_size_trend(table.reset_index()).set_index("loss")
    assert math.isnan(trend.loc["ce", "slope_best"]) and math.isnan(trend.loc["ce", "drop_best"])


def test_ce_missing_gives_nan_deltas():
    table = batch_size_table(frame([trial("supcon", 32, 0.6, tau=0.1), trial("supcon", 64, 0.7, tau=0.1)]))
    assert table["delta_best_vs_ce"].isna().all() and table["delta_mean_vs_ce"].isna().all()
    trend = batch_size_trend(table)
    assert trend.loc[0, "slope_best"] == pytest.approx(0.1) and math.isnan(trend.loc[0, "slope_best_vs_ce"])


def test_min_mode_takes_the_smallest_everywhere():
    rows = [trial("ce", 32, 0.3, mode="min", trial_id="a"), trial("ce", 32, 0.2, mode="min", trial_id="b"),
            trial("ce", 64, 0.25, mode="min", trial_id="c")]
    table = batch_size_table(frame(rows))
    assert list(table["best"]) == [0.2, 0.25]
    assert best_trials(frame(rows))["trial_id"].iloc[0] == "b"
    assert list(best_trials(frame(rows), by="batch_size")["trial_id"]) == ["b", "c"]
    with pytest.raises(ValueError, match="mix objective modes"):
        batch_size_table(frame([*rows, trial("ce", 32, 0.9, mode="max")]))


def test_paired_seeds_pairs_the_best_trial_per_seed_and_pools_per_seed():
    rows = []
    for seed in range(5):
        rows.append(trial("ce", 32, 0.60 + 0.01 * seed, seed=seed))
        rows.append(trial("schane", 32, 0.63 + 0.01 * seed + (0.02 if seed == 3 else 0.0), seed=seed))
        rows.append(trial("schane", 32, 0.10, seed=seed))  # a worse config of the same seed: the best one counts
        rows.append(trial("ce", 64, 0.70, seed=seed))
        rows.append(trial("schane", 64, 0.70, seed=seed))
    rows.append(trial("schane", 128, 0.9, seed=0))  # no CE partner: no pair
    rows.append(trial("ce", 128, None, seed=1, status="oom"))
    paired = paired_seeds(frame(rows))
    by_batch = paired[paired["batch_size"].notna()].set_index("batch_size")
    assert list(by_batch.index) == [32, 64] and set(paired["loss"]) == {"schane"}
    assert by_batch.loc[32, "n_seeds"] == 5 and by_batch.loc[32, "mean_diff"] == pytest.approx(0.034)
    assert by_batch.loc[32, "ci_low"] <= 0.034 <= by_batch.loc[32, "ci_high"]
    assert by_batch.loc[64, "mean_diff"] == 0 and by_batch.loc[64, "ci_low"] == pytest.approx(0)
    pooled = paired[paired["batch_size"].isna()].iloc[0]
    assert pooled["n_seeds"] == 5 and pooled["mean_diff"] == pytest.approx(0.017)  # seeds, not seeds x batches
    few = paired_seeds(frame(rows[:10]))  # two seeds
    assert few["ci_low"].isna().all() and set(few["note"]) == {"not enough seeds for an interval"}
    no_pairs = paired_seeds(frame([trial("schane", 32, 0.5), trial("supcon", 32, 0.5, tau=0.1)]))
    assert no_pairs.empty and {"loss", "batch_size", "n_seeds", "mean_diff", "ci_low", "ci_high"} <= set(no_pairs)


# --- importance --------------------------------------------------------------------------------
def _lr_matters(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(n):
        lr, beta = float(10 ** rng.uniform(-4, -2)), float(rng.uniform(0, 2))
        value = 0.9 - 0.1 * abs(math.log10(lr) + 3) + 0.001 * rng.normal()
        rows.append(trial("schane", 32, value, lr=lr, beta=beta, params={"lr": lr, "beta": beta}))
    return frame(rows)


@pytest.mark.parametrize("evaluator", ["fanova", "mdi", "ped_anova"])
def test_importance_ranks_lr_above_beta(evaluator):
    imp = param_importance(_lr_matters(), evaluator=evaluator, seed=0)
    assert imp["param"].iloc[0] == "lr" and set(imp["param"]) == {"lr", "beta"}
    assert set(imp["scope"]) == {"all"}
    if evaluator == "fanova":
        assert imp.set_index("param").loc["lr", "importance"] > 0.8
        assert imp["importance"].sum() == pytest.approx(1.0)


def test_study_distributions_and_conditional_params():
    import optuna

    rows = [trial("ce", 32 * (1 + i % 2), 0.6 + 0.01 * i, lr=1e-4 * 3**i) for i in range(5)]
    rows += [trial("clce", 32, 0.7 + 0.01 * i, lr=1e-3 * (i + 1), lam=0.1 * (i + 1), tau=0.1) for i in range(5)]
    rows += [trial("clce", 64, None, status="oom", lam=0.9)]
    data = frame(rows)  # params "{}": the config columns stand in
    study = study_from_trials(data)
    assert len(study.trials) == 10 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    ce = [t for t in study.trials if t.params["loss"] == "ce"]
    assert all("lam" not in t.params and "tau" not in t.params and "beta" not in t.params for t in ce)
    dists = study.trials[-1].distributions
    assert isinstance(dists["loss"], optuna.distributions.CategoricalDistribution)
    assert isinstance(dists["batch_size"], optuna.distributions.CategoricalDistribution)
    assert dists["lr"].log and not dists["lam"].log  # lr spans > 1 decade, λ does not
    assert "tau" not in dists and "weight_decay" not in dists  # constant: nothing to attribute
    imp = param_importance(data, by_loss=True)
    assert "lam" not in set(imp.loc[imp["scope"] == "all", "param"])  # ce trials lack λ
    assert "lam" in set(imp.loc[imp["scope"] == "clce", "param"])
    assert set(imp["scope"]) == {"all", "ce", "clce"}


def test_importance_takes_the_distributions_of_the_saved_space():
    from tests.support.analysis_fixtures import SPACE_TEXT
    from tune_schane.analysis.report import space_distributions

    rows = [trial("ce", 32 * (1 + i % 2), 0.6 + 0.01 * i, lr=1e-3 * (1 + i)) for i in range(5)]  # < 1 decade
    data = frame(rows)
    assert not study_from_trials(data).trials[0].distributions["lr"].log  # inferred from the values
    saved = space_distributions(SPACE_TEXT)
    study = study_from_trials(data, distributions=saved)
    assert study.trials[0].distributions["lr"] == saved["lr"] and saved["lr"].log  # as the sweep sampled it
    assert list(saved["loss"].choices) == ["ce", "schane"]  # grid axes are categorical
    outside = frame([trial("ce", 32, 0.6 + 0.01 * i, lr=0.5 * (1 + i)) for i in range(3)])
    assert study_from_trials(outside, distributions=saved).trials[0].distributions["lr"] != saved["lr"]
    assert space_distributions(None) is None and space_distributions("name: [unparsable") is None
    assert space_distributions("name: x\nparams: {lr: {uniform: [1, 0]}}\n") is None  # refused: inferred


def test_importance_needs_two_trials_and_a_varying_param():
    one = frame([trial("ce", 32, 0.5)])
    flat = frame([trial("ce", 32, 0.5), trial("ce", 32, 0.6)])  # nothing varies
    for data in (one, flat, frame([trial("ce", 32, None, status="oom")] * 3)):
        imp = param_importance(data, by_loss=True)
        assert imp.empty and list(imp.columns) == ["scope", "param", "importance"]
    with pytest.raises(ValueError, match="evaluator"):
        param_importance(flat, evaluator="shap")


def test_sampled_params_come_from_the_params_column():
    rows = [trial("schane", 32, 0.5 + 0.1 * i, tau=0.05 * (i + 1), lr=1e-3,
                  params={"tau": 0.05 * (i + 1), "provenance": {"x": 1}, "not_a_field": 3}) for i in range(4)]
    study = study_from_trials(frame(rows))
    assert set(study.trials[0].params) == {"tau"}  # lr is a config column, but was not sampled


# --- slices and budget -------------------------------------------------------------------------
def test_slices_leave_out_unused_params_and_missing_objectives():
    rows = [trial("ce", 32, 0.6, lr=1e-3), trial("supcon", 32, 0.65, tau=0.2, lr=2e-3),
            trial("supcon", 64, 0.4, status="pruned", tau=0.3), trial("supcon", 64, None, status="oom", tau=0.4)]
    tau = slice_frame(frame(rows), "tau")
    assert list(tau["value"]) == [0.2, 0.3] and list(tau["status"]) == ["completed", "pruned"]
    assert list(tau.columns) == ["value", "objective", "loss", "status", "batch_size"]
    assert len(slice_frame(frame(rows), "lr")) == 3 and slice_frame(frame(rows), "lam").empty


def test_budget_per_trial_and_by_status():
    rows = [trial("ce", 32, 0.6, epochs=4, trial_id="a"), trial("ce", 32, 0.5, epochs=4, trial_id="b"),
            trial("ce", 64, 0.3, status="pruned", epochs=4, epochs_run=1, trial_id="c"),
            trial("ce", 128, None, status="oom", epochs=4, epochs_run=0, trial_id="d")]
    epochs = pd.DataFrame({"trial_id": ["a"] * 4 + ["c"], "epoch": [1, 2, 3, 4, 1]})
    per_trial = budget_per_trial(frame(rows), epochs)
    assert list(per_trial["trial_id"]) == ["a", "b", "c", "d"]
    assert list(per_trial["epochs_logged"]) == [4, 0, 1, 0] and list(per_trial["epochs_configured"]) == [4] * 4
    totals = budget_table(frame(rows), epochs).set_index("status")
    assert totals.loc["completed", "epochs"] == 8 and totals.loc["pruned", "epochs"] == 1
    assert totals.loc["oom", "trials"] == 1 and totals.loc["all", "epochs"] == 9
    assert totals.loc["pruned", "share_of_epochs"] == pytest.approx(1 / 9)


# --- export ------------------------------------------------------------------------------------
def test_best_trials_ties_go_to_the_earliest_trial():
    rows = [trial("ce", 32, 0.7, trial_id="t2"), trial("ce", 32, 0.7, trial_id="t1"),
            trial("schane", 64, 0.9, trial_id="t3", status="pruned"), trial("schane", 64, 0.6, trial_id="t4")]
    assert best_trials(frame(rows))["trial_id"].tolist() == ["t1"]  # the pruned 0.9 is not eligible
    assert best_trials(frame(rows), by="loss")["trial_id"].tolist() == ["t1", "t4"]
    with pytest.raises(BadInput, match="--by"):
        best_trials(frame(rows), by="seed")


def test_config_from_row_restores_types_and_nones():
    row = frame([trial("supcon", 64, 0.5, tau=0.2, lr=3e-3, seed=7, epochs=9)]).iloc[0]
    config = config_from_row(row)
    expected = TrialConfig(loss="supcon", batch_size=64, tau=0.2, lr=3e-3, seed=7, epochs=9).resolved()
    assert config == expected and isinstance(config.batch_size, int) and config.beta is None
    sparse = pd.Series({"trial_id": "x", "config_loss": "ce", "config_batch_size": np.int64(16),
                        "config_tau": np.nan, "config_lam": pd.NA, "config_epochs": 2.0})
    assert config_from_row(sparse) == TrialConfig(loss="ce", batch_size=16, epochs=2).resolved()


def test_export_round_trip_through_a_real_store(tmp_path, small_store):
    trials = TrialStore(small_store).load_trials("s1")
    paths = export_best(trials, tmp_path / "out")
    assert [p.name for p in paths] == ["best.yaml"]
    loaded = load_config(paths[0])
    best = best_trials(trials).iloc[0]
    assert best["trial_id"] == "s1-007"  # schane, batch 32, seed 1: the highest by construction
    assert loaded.config == config_from_row(best)
    assert loaded.config.epochs == 3 and loaded.config.seed == 1 and loaded.config.loss == "schane"
    assert loaded.config.lam is None and loaded.config.tau == pytest.approx(0.15)
    prov = loaded.provenance
    assert (prov["sweep_id"], prov["trial_id"], prov["status"]) == ("s1", "s1-007", "completed")
    assert prov["best_objective"] == pytest.approx(best["best_objective"])
    assert prov["final_objective"] == pytest.approx(best["final_objective"]) and prov["epochs_run"] == 3
    assert prov["objective_name"] == "val_top1" and prov["objective_mode"] == "max"
    assert prov["versions"] == json.loads(best["versions"]) and prov["commit"] == best["commit"]
    assert "final_objective" in prov["reproduce"] and prov["exported_at"]
    by_loss = export_best(trials, tmp_path / "by", by="loss")
    assert [p.name for p in by_loss] == ["best-loss-ce.yaml", "best-loss-schane.yaml"]
    by_bs = export_best(trials, tmp_path / "bs", by="batch_size")
    assert [p.name for p in by_bs] == ["best-batch_size-16.yaml", "best-batch_size-32.yaml"]  # 64 never completed
    assert load_config(by_bs[0]).config.batch_size == 16


# --- report and commands -----------------------------------------------------------------------
def test_report_is_self_contained(tmp_path, small_store):
    store = TrialStore(small_store)
    report = build_report(store.load_trials("s1"), store.load_epochs("s1"), sweep_id="s1",
                          space_text=store.read_space("s1"), store_uri=str(small_store))
    assert isinstance(report, Report) and isinstance(report.html, str)
    page = report.html
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for src in srcs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert not re.search(r"(href|src)=\"?(https?:)?//", page) and "http" not in page
    assert "&lt;script&gt;alert" in page and "<script>alert" not in page  # the space is escaped
    assert 'id="img-status"' in page and "abc123" not in page  # fixture commit is not this store's
    assert "#img-status{display:none}" in page and "<h2>" in page.split('id="img-status"')[0]  # not in the header
    assert "torch" in page and "s1-007" in page  # versions; the best trial in the top-10 table
    path = write_report(report, tmp_path / "plain")  # the PNGs come from the report's data, not its page
    assert path.name == "report.html" and (tmp_path / "plain" / "plots" / "batch_size.png").is_file()
    assert (tmp_path / "plain" / "plots" / "batch_size.png").read_bytes() == report.figures["batch_size"]
    assert path.read_text(encoding="utf-8") == page
    assert not list((tmp_path / "plain").glob(".*tmp"))


def test_analyze_command_on_a_real_store(tmp_path, capsys, small_store):
    assert analyze_command(str(small_store), None, str(tmp_path / "rep")) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 6 and "http" not in page
    assert "name: tiny" in page and str(small_store) in page
    assert (tmp_path / "rep" / "plots" / "batch_size.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "tables" / "batch_size.csv").is_file()
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"report: {(tmp_path / 'rep' / 'report.html').resolve()}"
    assert out[1].startswith("no confirm stage yet: the numbers below are selection (optimistic)")
    assert out[2].startswith("search stage") and out[3].split()[0] == "loss" and 5 <= len(out) <= 10


def test_analyze_default_out_and_latest_sweep(tmp_path, monkeypatch, capsys):
    build_store(tmp_path / "store", "old", space_text=None)
    build_store(tmp_path / "store", "new")
    monkeypatch.chdir(tmp_path)
    assert analyze_command(str(tmp_path / "store"), None, None) == 0
    assert (tmp_path / "reports" / "new" / "report.html").is_file()
    assert export_command(str(tmp_path / "store"), "old", str(tmp_path / "exp"), "loss") == 0
    printed = capsys.readouterr().out
    assert "best-loss-ce.yaml" in printed and load_config(tmp_path / "exp" / "best-loss-ce.yaml").provenance[
        "sweep_id"] == "old"
    assert export_command(str(tmp_path / "store"), None, None, None) == 0
    assert load_config(tmp_path / "best.yaml").provenance["sweep_id"] == "new"


def test_command_errors(tmp_path):
    for command in (lambda s, w, o: analyze_command(s, w, o), lambda s, w, o: export_command(s, w, o, None)):
        with pytest.raises(BadInput, match=r"missing: no such folder"):  # a typo, not an empty store
            command(str(tmp_path / "missing"), None, None)
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    for command in (lambda s: analyze_command(s, None, None), lambda s: export_command(s, None, None, None)):
        with pytest.raises(BadInput, match=r"empty, no trials yet \(run `tune-schane sweep` first\)"):
            command(str(tmp_path / "empty"))
    for i in range(7):
        build_store(tmp_path / "store", f"sweep{i}", space_text=None)
    with pytest.raises(BadInput, match=r"sweep 'nope': not in store .*known: sweep6, sweep5, .*sweep2 and 2 more"):
        analyze_command(str(tmp_path / "store"), "nope", None)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(BadInput, match=f"--out {re.escape(str(out))}: cannot write"):
            analyze_command(str(tmp_path / "store"), "sweep0", str(out))
        with pytest.raises(BadInput, match="--out"):
            export_command(str(tmp_path / "store"), "sweep0", str(out), None)
    failed = TrialStore(tmp_path / "failed")
    cfg = TrialConfig(loss="ce", batch_size=512)
    failed.write_trials([trial_row(sweep_id="f", trial_id=f"t{i}", status=s, config=cfg, history=h)
                         for i, (s, h) in enumerate([("oom", []), ("oom", []), ("error", []),
                                                     ("pruned", history([0.1]))])])
    with pytest.raises(BadInput, match=r"^sweep f: no completed trial \(1 error, 2 oom, 1 pruned\)$"):
        analyze_command(str(tmp_path / "failed"), "f", None)
    with pytest.raises(BadInput, match="no completed trial"):
        export_command(str(tmp_path / "failed"), None, str(tmp_path / "x"), "loss")


def test_import_analysis_stays_light():
    code = ("import sys, tune_schane.analysis.command, tune_schane.analysis.report, tune_schane.analysis.export\n"
            "print('matplotlib' in sys.modules, 'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
