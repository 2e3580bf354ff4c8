"""The slope-per-doubling CIs of the batch-size study, on hand-built trials with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.sensitivity import SLOPE_CI_COLUMNS, slope_intervals
from tests.known_fixtures import frame, sloped, trial


def test_exact_lines_give_the_slope_and_a_zero_width_interval():
    out = slope_intervals(sloped(2.0)).set_index("loss")
    assert list(out.reset_index().columns) == SLOPE_CI_COLUMNS
    assert out.loc["ce", "slope_mean"] == pytest.approx(2.0)
    assert out.loc["schane", "slope_mean"] == pytest.approx(2.0)
    assert (out.loc["ce", "ci_low"], out.loc["ce", "ci_high"]) == pytest.approx((2.0, 2.0))  # one trial per cell
    assert out.loc["schane", "slope_mean_vs_baseline"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(out.loc["ce", "slope_mean_vs_baseline"])
    assert out.loc["schane", "n_batch_sizes"] == 4 and out.loc["schane", "n_used"] == 4


def test_interval_covers_the_point_and_matches_a_naive_bootstrap():
    rng = np.random.default_rng(3)
    rows = []
    for loss, slope in (("ce", 3.0), ("clce", 0.5)):
        for batch in (16, 32, 64):
            for k in range(4):
                value = 60 + slope * math.log2(batch) + float(rng.normal(0, 1.0))
                rows.append(trial(f"{loss}-{batch}-{k}", loss, batch, value))
    trials = frame(rows)
    out = slope_intervals(trials, n_boot=4000, seed=1).set_index("loss")
    clce = out.loc["clce"]
    # point estimate: least-squares slope of the three cell means against log2(batch)
    cells = trials[trials["config_loss"] == "clce"].groupby("config_batch_size")["best_objective"].mean()
    assert clce["slope_mean"] == pytest.approx(np.polyfit(np.log2(cells.index.to_numpy(float)), cells.to_numpy(), 1)[0])
    assert clce["ci_low"] < clce["slope_mean"] < clce["ci_high"]
    # a naive bootstrap loop (resample each cell, refit with polyfit) agrees on the interval
    naive = []
    local = np.random.default_rng(7)
    groups = [g["best_objective"].to_numpy() for _, g in trials[trials["config_loss"] == "clce"].groupby(
        "config_batch_size")]
    for _ in range(4000):
        means = [local.choice(g, size=len(g)).mean() for g in groups]
        naive.append(np.polyfit(np.log2([16, 32, 64]), means, 1)[0])
    assert clce["ci_low"] == pytest.approx(np.quantile(naive, 0.025), abs=0.15)
    assert clce["ci_high"] == pytest.approx(np.quantile(naive, 0.975), abs=0.15)
    # CLCE's slope (0.5) is clearly flatter than CE's (3.0): the difference's interval lies below zero
    assert clce["slope_mean_vs_baseline"] == pytest.approx(clce["slope_mean"] - out.loc["ce", "slope_mean"])
    assert clce["vs_baseline_ci_high"] < 0


def test_failed_trials_do_not_count_and_one_batch_size_gives_no_row():
    rows = [trial("a", "ce", 16, 50.0), trial("b", "ce", 32, 52.0), trial("c", "ce", 64, None, status="oom"),
            trial("d", "supcon", 16, 40.0), trial("e", "supcon", 32, None, status="diverged")]
    out = slope_intervals(frame(rows)).set_index("loss")
    assert list(out.index) == ["ce"]  # supcon has one usable batch size
    assert out.loc["ce", "slope_mean"] == pytest.approx(2.0) and out.loc["ce", "n_used"] == 2
