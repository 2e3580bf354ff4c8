"""Searchers: one Optuna study (or a fixed list) per grid cell, behind one Ray ``Searcher``.

- :class:`PruningAwareOptunaSearch` owns its ``optuna.Study`` and drives it with ``ask``/``tell``.
  Ray's ``OptunaSearch`` tells COMPLETE whenever a trial has a result, so trials stopped early by
  ASHA would reach TPE as complete with a truncated score; here they are told PRUNED (TPE then uses
  their intermediate values as Optuna intends), and diverged, out-of-memory and errored trials FAIL.
  Owning the study also means nothing reads Ray's private searcher state.
- :class:`CellSearcher` runs one searcher per grid cell (so a batch-size ablation gives every cell
  its own TPE study instead of letting TPE abandon the small batches) and expands each sampled
  config into ``repeats`` trials with consecutive seeds; the cell's searcher hears the mean of a group.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from ..faults import fault_point
from ..space import SearchSpace
from .trainable import CELL_KEY, CONFIG_KEY, STATUS_KEY, trial_status


class PickledState:
    """Ray checkpoints searchers and schedulers through save/restore; the whole state pickles."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class PruningAwareOptunaSearch:
    """An Optuna study asked for configs and told how each trial ended (COMPLETE, PRUNED or FAIL)."""

    def __init__(self, *, space: Callable[[Any], dict[str, Any]], metric: str, mode: str, sampler: Any,
                 max_epochs: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="maximize" if mode == "max" else "minimize", sampler=sampler)
        self.define_by_run, self.metric, self.max_epochs = space, metric, max_epochs
        self.running: dict[str, Any] = {}  # trial id -> the optuna.Trial it was asked as
        self.numbers: dict[str, int] = {}  # every trial id -> its trial number in the study

    def suggest(self, trial_id: str) -> dict[str, Any]:
        trial = self.study.ask()
        self.running[trial_id], self.numbers[trial_id] = trial, trial.number
        return self.define_by_run(trial)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.running.get(trial_id)
        if trial is not None and result.get(STATUS_KEY, "running") == "running":  # never a failure's placeholder
            trial.report(float(result[self.metric]), step=int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        status = trial_status(result, error, self.max_epochs)
        if status == "completed":
            self.study.tell(trial, float(result[self.metric]), state=TrialState.COMPLETE)
        else:
            self.study.tell(trial, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL)

    def optuna_trial(self, trial_id: str):
        """The Optuna trial behind ``trial_id`` as the study now records it (a ``FrozenTrial``)."""
        return self.study.trials[self.numbers[trial_id]]


class _ListSearch:
    """The ``grid`` baseline: hands out a fixed list of configs in order."""

    def __init__(self, points: list[dict]) -> None:
        self.points, self.next = points, 0

    def suggest(self, trial_id: str) -> dict | None:
        if self.next >= len(self.points):
            return None
        self.next += 1
        return dict(self.points[self.next - 1])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def make_cell_searcher(space: SearchSpace, cell: dict, index: int) -> PruningAwareOptunaSearch | _ListSearch:
    import optuna

    if space.searcher == "grid":
        return _ListSearch([p for p in space.grid_points() if all(p.get(k) == v for k, v in cell.items())])
    seed = space.searcher_seed + index
    sampler = (optuna.samplers.TPESampler(seed=seed) if space.searcher == "optuna"
               else optuna.samplers.RandomSampler(seed=seed))
    return PruningAwareOptunaSearch(space=space.define_by_run(cell), metric=space.objective_metric,
                                    mode=space.objective_mode, sampler=sampler, max_epochs=space.max_epochs)


class CellSearcher(PickledState, Searcher):
    """Round-robin over grid cells, one searcher each; every suggestion becomes ``repeats`` trials."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(metric=space.objective_metric, mode=space.objective_mode)
        self.space = space
        self.cells = space.cells()
        self.searchers = [make_cell_searcher(space, cell, i) for i, cell in enumerate(self.cells)]
        self.budget = [space.num_samples] * len(self.cells)  # configs still to sample per cell
        self.turn = 0
        self.queue: list[tuple[str, int, dict]] = []  # (group id, repeat index, params) waiting
        self.groups: dict[str, dict] = {}  # group id -> {cell, params, pending, values, statuses}
        self.trial_group: dict[str, str] = {}  # running trials
        self.assignments: dict[str, str] = {}  # every trial id -> its group id

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def _new_group(self) -> bool:
        for _ in range(len(self.cells)):
            cell_index = self.turn % len(self.cells)
            self.turn += 1
            if self.budget[cell_index] <= 0:
                continue
            group_id = f"g{len(self.groups)}"
            params = self.searchers[cell_index].suggest(group_id)
            if params is None:
                self.budget[cell_index] = 0
                continue
            self.budget[cell_index] -= 1
            self.groups[group_id] = {"cell": cell_index, "params": params, "pending": self.space.repeats,
                                     "values": [], "statuses": []}
            self.queue.extend((group_id, r, params) for r in range(self.space.repeats))
            return True
        return False

    def suggest(self, trial_id: str) -> dict | None:
        if not self.queue and not self._new_group():
            return Searcher.FINISHED
        fault_point("sample")
        group_id, repeat, params = self.queue.pop(0)
        self.trial_group[trial_id] = self.assignments[trial_id] = group_id
        cell = self.cells[self.groups[group_id]["cell"]]
        config = self.space.trial_config(params, cell, repeat)
        return {CONFIG_KEY: config.to_dict(), "params": {**cell, **params}, "repeat": repeat, "group": group_id,
                CELL_KEY: self.groups[group_id]["cell"], "resources": self.space.resources_for(config.batch_size)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        group_id = self.trial_group.get(trial_id)
        # Intermediate values go to Optuna only for single-repeat groups (they are one trial there).
        if group_id is not None and self.space.repeats == 1:
            self.searchers[self.groups[group_id]["cell"]].on_trial_result(group_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group_id = self.trial_group.pop(trial_id, None)
        if group_id is None:
            return
        group = self.groups[group_id]
        group["pending"] -= 1
        status = trial_status(result, error, self.space.max_epochs)
        group["statuses"].append(status)
        if status == "completed":
            group["values"].append(result[self.metric])
        if group["pending"] > 0:
            return
        searcher = self.searchers[group["cell"]]
        statuses = group["statuses"]
        if all(s == "completed" for s in statuses):  # the searcher hears the mean over seeds
            mean = sum(group["values"]) / len(group["values"])
            searcher.on_trial_complete(group_id, {self.metric: mean, "epoch": self.space.max_epochs})
        elif any(s == "pruned" for s in statuses):
            searcher.on_trial_complete(group_id, None, error=False)
        else:
            searcher.on_trial_complete(group_id, None, error=True)

    def studies(self) -> list:
        return [s.study for s in self.searchers if isinstance(s, PruningAwareOptunaSearch)]

    def optuna_trial(self, trial_id: str):
        """The Optuna trial (as the study now records it) behind a Ray trial's group."""
        group_id = self.assignments[trial_id]
        return self.searchers[self.groups[group_id]["cell"]].optuna_trial(group_id)
