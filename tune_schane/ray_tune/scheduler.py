"""ASHA per grid cell: trials compete only with trials of their own cell."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ..space import SearchSpace
from .searchers import PickledState
from .trainable import CELL_KEY


class CellASHA(PickledState, FIFOScheduler):
    """One ASHA per grid cell, created when the cell's first trial arrives.

    A single ASHA over a loss × batch-size grid compares a small-batch SupCon trial with a
    large-batch CE trial at each rung and stops the weaker family wholesale, so the cells the
    batch-size analysis needs most end with no completed trial. Without a grid this is plain ASHA.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.by_cell: dict[int, ASHAScheduler] = {}
        self.stopped = 0  # trials stopped early, over every cell
        self._metric, self._mode = space.objective_metric, space.objective_mode

    def _for(self, trial) -> ASHAScheduler:
        cell = int(trial.config.get(CELL_KEY, 0))
        if cell not in self.by_cell:
            self.by_cell[cell] = ASHAScheduler(
                time_attr="epoch", metric=self._metric, mode=self._mode, max_t=self.space.max_epochs,
                grace_period=self.space.grace_period, reduction_factor=self.space.reduction_factor)
        return self.by_cell[cell]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = self._for(trial).on_trial_result(tune_controller, trial, result)
        self.stopped += decision == TrialScheduler.STOP
        return decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"ASHA per grid cell ({len(self.by_cell)} cells): {self.stopped} trials stopped early"
