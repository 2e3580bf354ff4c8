"""The confirm stage's plan (no Ray): finalists per cell, the baseline, fresh shared seeds, the store as ledger.

And the reason it exists, shown on a pure-noise objective: every config has the same true accuracy,
so whatever the search picks is luck; its best value on val is biased upwards, while the confirm
stage (fresh seeds, the t-interval over them) covers the true value.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tune_schane.analysis.confirmed import confirm_summary
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig
from tune_schane.search.confirm import (
    CONFIRM_SEED_BASE,
    confirm_seeds,
    done_keys,
    pending_jobs,
    plan_confirm,
    ranked_configs,
)
from tune_schane.space import parse_space

SPACE = {
    "name": "plan",
    "fixed": {"model": "test_vit", "dataset": "digits", "shots": 5},
    "grid": {"loss": ["ce", "clce"], "batch_size": [16, 32]},
    "params": {"tau": {"loguniform": [0.05, 0.5], "when": {"loss": ["clce"]}},
               "beta": {"uniform": [0.0, 2.0], "when": {"loss": ["clce"]}},
               "lam": {"uniform": [0.1, 0.9], "when": {"loss": ["clce"]}},
               "lr": {"loguniform": [1e-4, 1e-2]}},
    "scheduler": {"type": "asha", "max_epochs": 3},
    "num_samples": 3,
    "repeats": 2,
}


def _row(trial_id: str, config: TrialConfig, params: dict, value: float, status: str = "completed",
         stage: str | None = "search", **extra) -> dict:
    return {"sweep_id": "s", "trial_id": trial_id, "status": status, "best_objective": value,
            "params": json.dumps(params, sort_keys=True), "stage": stage, "objective_mode": "max",
            **{f"config_{k}": v for k, v in config.to_dict().items()}, **extra}


def search_frame(space, values: dict[tuple[str, int], list[float]], seeds: int = 2) -> pd.DataFrame:
    """``values[(loss, batch)]``: one value per config of that cell (each config's seeds all get it)."""
    rows = []
    for (loss, batch), per_config in values.items():
        for c, value in enumerate(per_config):
            sampled = {"lr": 1e-3 * (c + 1)} if loss == "ce" else {"tau": 0.1, "beta": 0.5 + c, "lam": 0.5,
                                                                     "lr": 1e-3}
            params = {"loss": loss, "batch_size": batch, **sampled}
            for repeat in range(seeds):
                config = space.trial_config(sampled, {"loss": loss, "batch_size": batch}, repeat)
                rows.append(_row(f"{loss}{batch}c{c}r{repeat}", config, params, value))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def space():
    return parse_space(SPACE, where="test")


def test_plan_takes_top_k_per_cell_with_fresh_seeds_shared_by_every_config(space):
    trials = search_frame(space, {("ce", 16): [70, 72, 71], ("ce", 32): [60, 65, 61],
                                  ("clce", 16): [80, 75, 79], ("clce", 32): [50, 55, 58]})
    jobs = plan_confirm(trials, space, top=2, seeds=5)
    chosen = {(job.cell, job.rank, job.search_value) for job in jobs}
    assert chosen == {("loss=ce,batch_size=16", 1, 72), ("loss=ce,batch_size=16", 2, 71),
                      ("loss=ce,batch_size=32", 1, 65), ("loss=ce,batch_size=32", 2, 61),
                      ("loss=clce,batch_size=16", 1, 80), ("loss=clce,batch_size=16", 2, 79),
                      ("loss=clce,batch_size=32", 1, 58), ("loss=clce,batch_size=32", 2, 55)}
    assert len(jobs) == 8 * 5 and len({job.key for job in jobs}) == len(jobs)
    seed_lists = {(job.cell, job.rank): [] for job in jobs}
    for job in jobs:
        seed_lists[(job.cell, job.rank)].append(job.seed)
    assert all(sorted(s) == list(range(CONFIRM_SEED_BASE, CONFIRM_SEED_BASE + 5)) for s in seed_lists.values())
    for job in jobs:  # full budget, test scored, the split seeds follow the fresh seed
        assert job.config.epochs == 3 and job.config.score_test and job.config.test_epoch == "final"
        assert job.config.seed == job.seed
        assert all(getattr(job.config, name, None) is None for name in ("subset_seed", "init_seed", "order_seed"))
    best_clce = next(job for job in jobs if job.cell == "loss=clce,batch_size=16" and job.rank == 1)
    assert best_clce.config.beta == 0.5 and best_clce.config.loss == "clce"  # the config that scored 80


def test_baseline_is_added_where_the_loss_is_not_a_grid_axis(space):
    flat = parse_space({**SPACE, "grid": {"batch_size": [16]},
                        "params": {"loss": {"choice": ["ce", "clce"]}, **SPACE["params"]}}, where="flat")
    trials = search_frame(flat, {("ce", 16): [60, 70], ("clce", 16): [80, 75]})
    jobs = plan_confirm(trials, flat, top=1, seeds=5)
    roles = {(job.role, job.config.loss, job.search_value) for job in jobs}
    assert roles == {("finalist", "clce", 80), ("baseline", "ce", 70)}


def test_seeds_skip_every_seed_the_search_used(space):
    trials = search_frame(space, {("ce", 16): [70]})
    trials.loc[0, "config_seed"] = CONFIRM_SEED_BASE + 1
    assert confirm_seeds({CONFIRM_SEED_BASE + 1}, 3) == [CONFIRM_SEED_BASE, CONFIRM_SEED_BASE + 2,
                                                         CONFIRM_SEED_BASE + 3]
    assert CONFIRM_SEED_BASE + 1 not in {job.seed for job in plan_confirm(trials, space, seeds=3)}


def test_only_completed_search_rows_rank_and_confirm_rows_never_do(space):
    trials = search_frame(space, {("ce", 16): [70, 90]})
    trials.loc[trials["best_objective"] == 90, "status"] = "pruned"  # a pruned config never reached the budget
    confirm = trials.iloc[[0]].assign(trial_id="x", stage="confirm", best_objective=99.0, params="{}")
    ranked = ranked_configs(pd.concat([trials, confirm]), space)
    assert list(ranked["value"]) == [70.0]
    with pytest.raises(BadInput, match="no completed search trial"):
        plan_confirm(trials.assign(status="pruned"), space)
    with pytest.raises(BadInput, match=">= 1"):
        plan_confirm(trials, space, seeds=0)


def test_the_store_is_the_ledger_done_jobs_are_not_run_again(space):
    trials = search_frame(space, {("ce", 16): [70], ("clce", 16): [80]})
    jobs = plan_confirm(trials, space, seeds=5)
    ended = [_row(f"c{i}", job.config, job.ray_fields(), 70.0, status=status, stage="confirm",
                  confirm_job=job.key) for i, (job, status) in enumerate(zip(jobs[:3], ["completed", "oom", "error"],
                                                                                 strict=True))]
    store = pd.concat([trials, pd.DataFrame(ended)], ignore_index=True)
    assert done_keys(store) == {jobs[0].key, jobs[1].key}  # an errored job runs again
    assert [job.key for job in pending_jobs(jobs, store)] == [job.key for job in jobs[2:]]
    assert plan_confirm(store, space, seeds=5) == jobs  # confirm rows change nothing in the plan


def test_pure_noise_search_best_is_biased_up_and_confirm_covers_the_truth(space):
    """Every config's true accuracy is 70; val and test scores are that plus noise (sd 1.5 per trial).

    The search ranks 3 configs x 2 seeds per cell; its best mean is the winner's-curse estimate. The
    confirm stage retrains the chosen configs on 5 fresh seeds (fresh noise) and its t-interval over the
    seeds must cover 70 about 95 % of the time; the search's best is above 70 on average.
    """
    rng = np.random.default_rng(7)
    truth, noise, studies = 70.0, 1.5, 150
    bias, covered, intervals = [], 0, 0
    for _ in range(studies):
        trials = search_frame(space, {("ce", 16): [0, 0, 0], ("clce", 16): [0, 0, 0]})
        trials["best_objective"] = truth + rng.normal(0, noise, len(trials))
        jobs = plan_confirm(trials, space, top=1, seeds=5)
        rows = [_row(f"c{i}", job.config, job.ray_fields(), np.nan, stage="confirm", confirm_job=job.key,
                     test_top1=truth + rng.normal(0, noise)) for i, job in enumerate(jobs)]
        table = confirm_summary(pd.DataFrame(rows))
        assert len(table) == 2 and (table["n_seeds"] == 5).all()
        bias.extend(table["selection_val"] - truth)
        covered += int(((table["ci_low"] <= truth) & (truth <= table["ci_high"])).sum())
        intervals += len(table)
    # The best of 3 means of 2 draws (sd 1.06 each) is about +0.9 above the truth.
    assert np.mean(bias) > 0.6
    assert 0.9 <= covered / intervals <= 0.99


@pytest.mark.parametrize("where", ["fixed", "params", "grid"])
def test_a_space_cannot_open_the_test_split(where):
    value = {"fixed": True, "params": {"choice": [True, False]}, "grid": [True]}[where]
    with pytest.raises(BadInput, match="test split is sealed"):
        parse_space({**SPACE, where: {**SPACE.get(where, {}), "score_test": value}}, where="sealed")


def test_confirm_key_in_a_space():
    assert parse_space(SPACE, where="s").confirm is None
    assert parse_space({**SPACE, "confirm": True}, where="s").confirm == {"top": 1, "seeds": 5, "epoch": "final"}
    space = parse_space({**SPACE, "confirm": {"top": 2, "seeds": 6, "epoch": "best_val"}}, where="s")
    assert space.confirm == {"top": 2, "seeds": 6, "epoch": "best_val"}
    for bad, match in (({"seeds": 0}, "confirm.seeds"), ({"epoch": "last"}, "confirm.epoch"),
                       ({"folds": 3}, "unknown key 'folds'")):
        with pytest.raises(BadInput, match=match):
            parse_space({**SPACE, "confirm": bad}, where="s")


def test_rows_of_stores_written_before_the_stage_column_are_search_rows(space):
    trials = search_frame(space, {("ce", 16): [70], ("clce", 16): [80]}).assign(stage=None)
    assert done_keys(trials) == set()  # no confirm row, and no error on the nulls
    assert len(plan_confirm(trials, space, seeds=5)) == 10
