"""The search benchmark's arithmetic and its anchor's sampling (the sweeps themselves: benchmarks/search.py)."""

from __future__ import annotations

import optuna
import pytest

from benchmarks.search import SPACE, score, strategies, summary
from tune_schane.finetune.config import TrialConfig
from tune_schane.space import load_space

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune._anchor import WholeSpace  # noqa: E402


def test_gaps_are_per_cell_and_a_cell_without_an_answer_counts_its_whole_reference():
    ref = {"ce@16": 90.0, "clce@16": 80.0, "ce@32": 70.0}
    got = score({"ce@16": 91.0, "clce@16": 78.0}, ref)
    assert got["mean_gap"] == pytest.approx((1.0 + 2.0 + 70.0) / 3)  # absolute: beating the reference is a gap too
    assert (got["worst_gap"], got["worst_cell"], got["missing"]) == (70.0, "ce@32", 1)


def test_epoch_ratios_pair_each_strategy_with_random_fifo_at_the_same_seed():
    rows = [{"strategy": s, "seed": seed, "trials": 1, "wall_s": 1.0, "epochs": e, "mean_gap": g, "worst_gap": g,
             "missing": 0} for s, seed, e, g in [("random+fifo", 0, 100, 1.0), ("random+fifo", 1, 200, 3.0),
                                                 ("x", 0, 50, 0.5), ("x", 1, 20, 1.5)]]
    by_name = {r["strategy"]: r for r in summary(rows)}
    assert by_name["x"]["ratio"] == pytest.approx((0.5 + 0.1) / 2)
    assert by_name["random+fifo"]["mean_gap"] == pytest.approx(2.0)


def test_the_strategies_differ_only_in_how_they_search():
    base = load_space(SPACE)
    made = strategies(base, ["fast:warm_start=1,patience=2,startup_trials=3"])
    assert list(made) == ["random+fifo", "ray-optuna+asha", "cells", "default", "fast"]
    for space, _ in made.values():
        assert (space.fixed, space.grid, space.params, space.max_epochs, space.num_samples) == \
            (base.fixed, base.grid, base.params, base.max_epochs, base.num_samples)
    assert (made["cells"][0].warm_start, made["cells"][0].patience) == (0, 0)
    assert (made["fast"][0].warm_start, made["fast"][0].patience, made["fast"][0].startup_trials) == (1, 2, 3)


def test_the_anchor_samples_a_cell_then_only_that_cells_parameters():
    space = load_space(SPACE)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        config = WholeSpace(space)(trial)
        params, trained = config["params"], TrialConfig.from_dict(config["trial_config"])
        seen.add(params["loss"])
        assert space.cells()[config["cell"]] == {"batch_size": params["batch_size"], "loss": params["loss"]}
        assert ("beta" in params) == (params["loss"] in ("schane", "clce"))
        assert ("lam" in params) == (params["loss"] == "clce")
        assert ("tau" in params) == (params["loss"] != "ce")
        assert (trained.batch_size, trained.loss, trained.lr) == (params["batch_size"], params["loss"], params["lr"])
        study.tell(trial, 0.0)
    assert seen == {"ce", "supcon", "schane", "clce"}
