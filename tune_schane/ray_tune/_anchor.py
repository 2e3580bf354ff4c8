"""The search a Ray user would write for a grid: one ``OptunaSearch`` over everything, one ``ASHAScheduler``.

It is what ``python -m benchmarks.search`` measures this package's per-cell search against (the
anchor of issue 13), built from the same space file: the grid axes become categorical parameters
of a single TPE study (so TPE chooses the cells too, and may leave some without a trial), and one
ASHA compares every trial with every other at each rung, whatever its batch size or loss family.
Ray's ``OptunaSearch`` tells Optuna COMPLETE for trials ASHA stopped, with their truncated score.
Not offered on the command line: it exists to be measured (:func:`.driver.run_sweep`'s ``strategy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ..space.search_space import DefineByRun, SearchSpace
from ._trainable import CELL_KEY, CONFIG_KEY


@dataclass(frozen=True)
class WholeSpace:
    """Define-by-run over the grid axes, then the cell's own parameters; returns the trial's Ray config."""

    space: SearchSpace

    def __call__(self, trial: Any) -> dict[str, Any]:
        cell = {axis: trial.suggest_categorical(axis, list(values)) for axis, values in self.space.grid.items()}
        sampled = DefineByRun(self.space, cell)(trial)
        config = self.space.trial_config(sampled, cell, 0)
        return {CONFIG_KEY: config.to_dict(), "params": {**cell, **sampled}, "repeat": 0,
                CELL_KEY: self.space.cells().index(cell), "resources": self.space.resources_for(config.batch_size)}


def ray_optuna_asha(space: SearchSpace) -> tuple[ConcurrencyLimiter, ASHAScheduler, int]:
    """Searcher, scheduler and number of trials: as many configs as the per-cell search samples in all."""
    import optuna

    if space.repeats != 1:
        raise ValueError("the Ray OptunaSearch anchor runs one seed per config (repeats: 1)")
    sampler = optuna.samplers.TPESampler(seed=space.searcher_seed)
    searcher = OptunaSearch(space=WholeSpace(space), metric=space.objective_metric, mode=space.objective_mode,
                            sampler=sampler)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=space.max_epochs,
                              grace_period=space.grace_period, reduction_factor=space.reduction_factor)
    total = len(space.cells()) * space.num_samples
    return ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent), scheduler, total
