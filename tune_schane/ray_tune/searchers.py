"""Searchers: one Optuna study (or a fixed list) per grid cell, behind one Ray ``Searcher``.

- :class:`PruningAwareOptunaSearch` owns its ``optuna.Study`` (in memory, or in the sweep's Optuna
  storage: :mod:`tune_schane.optuna_storage`) and drives it with ``ask``/``tell``.
  Ray's ``OptunaSearch`` tells COMPLETE whenever a trial has a result, so trials stopped early by
  ASHA would reach TPE as complete with a truncated score; here they are told PRUNED (TPE then uses
  their intermediate values as Optuna intends), and diverged, out-of-memory and errored trials FAIL.
  Owning the study also means nothing reads Ray's private searcher state.
- :class:`CellSearcher` runs one searcher per grid cell (so a batch-size ablation gives every cell
  its own TPE study instead of letting TPE abandon the small batches) and expands each sampled
  config into ``repeats`` trials with consecutive seeds; the cell's searcher hears the mean of a group.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import pandas as pd
from ray.tune.search import Searcher

from ..faults import fault_point
from ..optuna_storage import cell_key, study_name
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
    """An Optuna study asked for configs and told how each trial ended (COMPLETE, PRUNED or FAIL).

    The study lives in memory (pickled whole with Ray's searcher checkpoint) or, with ``storage``
    (a URL for :func:`tune_schane.optuna_storage.open_storage`), in that storage under
    ``study_name``. The storage is then the record: a pickle holds only the bookkeeping, and the
    study is reopened from the storage when first used after a restore. A driver killed between two
    searcher checkpoints leaves the storage ahead of the restored bookkeeping, in two ways, both
    reconciled here:

    - a trial told after the checkpoint is told again when Ray reruns it: ``skip_if_finished``
      keeps the first ending (and reports on it are dropped), so nothing is told twice;
    - a trial asked after the checkpoint is ``RUNNING`` in the storage but unknown to Ray: it is
      handed out again (its stored params through ``FixedTrial``) before anything new is asked, so
      no trial is lost or left running for ever; the sampler is then reseeded, or it would
      draw the same config once more.
    """

    def __init__(self, *, space: Callable[[Any], dict[str, Any]], metric: str, mode: str, sampler: Any,
                 max_epochs: int, storage: str | None = None, study_name: str | None = None,
                 user_attrs: dict[str, Any] | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if storage is not None and not study_name:
            raise ValueError("a study in a storage needs a study_name")
        self.define_by_run, self.metric, self.max_epochs = space, metric, max_epochs
        self.sampler, self.storage, self.study_name = sampler, storage, study_name
        self.direction = "maximize" if mode == "max" else "minimize"
        self.running: dict[str, int] = {}  # trial id -> its trial number, until told
        self.numbers: dict[str, int] = {}  # every trial id -> its trial number in the study
        self._handles: dict[int, Any] = {}  # trial number -> optuna.Trial (never pickled with a storage)
        self._orphans: list[int] = []  # RUNNING in the storage, unknown to Ray (see the class docstring)
        self._study = self._open()
        for key, value in (user_attrs or {}).items():
            self._study.set_user_attr(key, value)

    def _open(self):
        import optuna

        from ..optuna_storage import open_storage

        storage = None if self.storage is None else open_storage(self.storage)
        return optuna.create_study(storage=storage, study_name=self.study_name, direction=self.direction,
                                   sampler=self.sampler, load_if_exists=True)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.storage is not None:  # the storage is the record: reopened on first use
            state.update(_study=None, _handles={}, _orphans=[])
        return state

    @property
    def study(self):
        if self._study is None:
            from optuna.trial import TrialState

            self._study = self._open()
            known = set(self.numbers.values())
            self._orphans = [t.number for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                             if t.number not in known]
            if self._orphans:
                self.sampler.reseed_rng()
        return self._study

    def _handle(self, number: int):
        """The ``optuna.Trial`` of trial ``number`` (one asked before a restore has none: make it).

        Optuna offers no public way back to a live ``Trial`` for a trial another process asked;
        ``Trial(study, storage trial id)`` is what ``Study.ask`` itself builds.
        """
        if number not in self._handles:
            import optuna

            frozen = self.study.get_trials(deepcopy=False)[number]
            self._handles[number] = optuna.trial.Trial(self.study, frozen._trial_id)
        return self._handles[number]

    def suggest(self, trial_id: str) -> dict[str, Any]:
        study = self.study
        while self._orphans:
            import optuna

            number = self._orphans.pop(0)
            try:
                config = self.define_by_run(optuna.trial.FixedTrial(study.get_trials(deepcopy=False)[number].params,
                                                                    number))
            except ValueError:  # killed while it was being sampled: some params are missing
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                continue
            self.running[trial_id], self.numbers[trial_id] = number, number
            return config
        trial = study.ask()
        self._handles[trial.number] = trial
        self.running[trial_id], self.numbers[trial_id] = trial.number, trial.number
        return self.define_by_run(trial)

    def note(self, trial_id: str, key: str, value: Any) -> None:
        """A user attribute on the trial's Optuna trial (``ray_trial_ids``: which Ray trials it is)."""
        from optuna.exceptions import UpdateFinishedTrialError

        number = self.running.get(trial_id)
        if number is not None:
            try:
                self._handle(number).set_user_attr(key, value)
            except UpdateFinishedTrialError:
                pass

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        import warnings

        from optuna.exceptions import UpdateFinishedTrialError

        number = self.running.get(trial_id)
        if number is not None and result.get(STATUS_KEY, "running") == "running":  # never a failure's placeholder
            try:
                with warnings.catch_warnings():  # a rerun epoch reports its step again: Optuna keeps the first
                    warnings.simplefilter("ignore")
                    self._handle(number).report(float(result[self.metric]), step=int(result["epoch"]))
            except UpdateFinishedTrialError:  # told before the driver restarted (see the class docstring)
                pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        number = self.running.pop(trial_id, None)
        if number is None:
            return
        self._handles.pop(number, None)
        status = trial_status(result, error, self.max_epochs)
        if status == "completed":
            self.study.tell(number, float(result[self.metric]), state=TrialState.COMPLETE, skip_if_finished=True)
        else:
            self.study.tell(number, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL,
                            skip_if_finished=True)

    def adopt(self, trial_id: str, params: dict[str, Any], ray_trial_id: str) -> None:
        """Book ``params`` as asked for ``trial_id``: a config handed out after the snapshot restored.

        In memory the restored study never saw it: it is asked again with exactly these params. In a
        storage it was asked there (and noted with its Ray trial id): that trial is booked instead.
        """
        from optuna.trial import TrialState

        self.sampler.reseed_rng()  # restored to the snapshot, it would draw this very config next
        if self.storage is None:
            self.study.enqueue_trial(params)
            trial = self.study.ask()
            self.define_by_run(trial)
            self._handles[trial.number] = trial
            self.running[trial_id] = self.numbers[trial_id] = trial.number
            return
        for frozen in self.study.get_trials(deepcopy=False):
            if ray_trial_id in frozen.user_attrs.get("ray_trial_ids", ()):
                if frozen.number in self._orphans:
                    self._orphans.remove(frozen.number)
                if frozen.state == TrialState.RUNNING:
                    self.running[trial_id] = frozen.number
                self.numbers[trial_id] = frozen.number
                return

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

    def note(self, trial_id: str, key: str, value: Any) -> None:
        pass

    def adopt(self, trial_id: str, params: dict[str, Any], ray_trial_id: str) -> None:
        if self.next < len(self.points) and self.points[self.next] == params:
            self.next += 1


def make_cell_searcher(space: SearchSpace, cell: dict, index: int,
                       sweep_id: str | None = None) -> PruningAwareOptunaSearch | _ListSearch:
    """The cell's searcher; with ``space.optuna_storage`` its study is ``<sweep_id>/<cell key>`` there."""
    import optuna

    if space.searcher == "grid":
        return _ListSearch([p for p in space.grid_points() if all(p.get(k) == v for k, v in cell.items())])
    seed = space.searcher_seed + index
    sampler = (optuna.samplers.TPESampler(seed=seed) if space.searcher == "optuna"
               else optuna.samplers.RandomSampler(seed=seed))
    stored = {}
    if space.optuna_storage is not None:
        if not sweep_id:
            raise ValueError("a space with optuna_storage needs the sweep id (it names the studies)")
        stored = {"storage": space.optuna_storage, "study_name": study_name(sweep_id, cell),
                  "user_attrs": {"sweep": sweep_id, "cell": cell_key(cell), "objective": space.objective_metric}}
    return PruningAwareOptunaSearch(space=space.define_by_run(cell), metric=space.objective_metric,
                                    mode=space.objective_mode, sampler=sampler, max_epochs=space.max_epochs,
                                    **stored)


class CellSearcher(PickledState, Searcher):
    """Round-robin over grid cells, one searcher each; every suggestion becomes ``repeats`` trials."""

    def __init__(self, space: SearchSpace, sweep_id: str | None = None, store_uri: str | None = None) -> None:
        super().__init__(metric=space.objective_metric, mode=space.objective_mode)
        self.space, self.sweep_id, self.store_uri = space, sweep_id, store_uri
        self.cells = space.cells()
        self.searchers = [make_cell_searcher(space, cell, i, sweep_id) for i, cell in enumerate(self.cells)]
        self.budget = [space.num_samples] * len(self.cells)  # configs still to sample per cell
        self.turn = 0
        self.queue: list[tuple[str, int, dict]] = []  # (group id, repeat index, params) waiting
        self.groups: dict[str, dict] = {}  # group id -> {cell, params, pending, values, statuses}
        self.trial_group: dict[str, str] = {}  # running trials
        self.assignments: dict[str, str] = {}  # every trial id -> its group id

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.adopt_unknown_trials()

    def adopt_unknown_trials(self) -> int:
        """Book the trials the store holds but this restored state never handed out; return how many.

        Ray snapshots the searcher with its experiment state about once a second; a trial handed out
        and ended within that second before the driver died is in the store but not in the snapshot,
        and the resumed sweep would hand its slot out again (one trial too many). Each such trial is
        booked as it was: its seed taken off its group's queue, or its group made again with its
        config (the cell's study asked for exactly that config), then told how it ended.
        """
        if not getattr(self, "store_uri", None) or not getattr(self, "sweep_id", None):
            return 0
        from ..store import TrialStore

        store = TrialStore(self.store_uri)
        if not store.exists():
            return 0
        rows = store.load_trials(self.sweep_id)
        return sum(self._adopt(row) for row in rows.itertuples() if row.trial_id not in self.assignments)

    def _adopt(self, row) -> bool:
        params = json.loads(row.params or "{}")
        cells = [i for i, c in enumerate(self.cells) if all(params.get(k) == v for k, v in c.items())]
        if not cells:
            return False
        cell_index, cell = cells[0], self.cells[cells[0]]
        sampled = {k: v for k, v in params.items() if k not in cell}
        repeat = int(row.config_seed) - self.space.trial_config(sampled, cell, 0).seed
        queued = [i for i, (g, r, p) in enumerate(self.queue)
                  if self.groups[g]["cell"] == cell_index and r == repeat and p == sampled]
        if queued:
            group_id = self.queue.pop(queued[0])[0]
        elif self.budget[cell_index] > 0:
            group_id = f"g{len(self.groups)}"
            self.searchers[cell_index].adopt(group_id, sampled, row.trial_id)
            self.budget[cell_index] -= 1
            self.groups[group_id] = {"cell": cell_index, "params": sampled, "pending": self.space.repeats,
                                     "values": [], "statuses": [], "trials": []}
            self.queue.extend((group_id, r, sampled) for r in range(self.space.repeats) if r != repeat)
        else:
            return False
        self.groups[group_id].setdefault("trials", []).append(row.trial_id)
        self.trial_group[row.trial_id] = self.assignments[row.trial_id] = group_id
        epochs = 0 if pd.isna(row.epochs_run) else int(row.epochs_run)
        if row.status in ("diverged", "oom"):
            result = {STATUS_KEY: row.status, "epoch": epochs}
        elif row.status == "error" or pd.isna(row.final_objective):
            result = None
        else:
            result = {STATUS_KEY: "running", "epoch": epochs, self.metric: float(row.final_objective)}
        self.on_trial_complete(row.trial_id, result, error=row.status == "error")
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
                                     "values": [], "statuses": [], "trials": []}
            self.queue.extend((group_id, r, params) for r in range(self.space.repeats))
            return True
        return False

    def suggest(self, trial_id: str) -> dict | None:
        if not self.queue and not self._new_group():
            return Searcher.FINISHED
        fault_point("sample")
        group_id, repeat, params = self.queue.pop(0)
        self.trial_group[trial_id] = self.assignments[trial_id] = group_id
        group = self.groups[group_id]
        group.setdefault("trials", []).append(trial_id)  # (setdefault: a searcher pickled before this key)
        self.searchers[group["cell"]].note(group_id, "ray_trial_ids", list(group["trials"]))
        cell = self.cells[group["cell"]]
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
        if result and self.space.repeats == 1:
            # The result that ends a trial (ASHA's stop, the last epoch) reaches the searcher only here:
            # Ray skips on_trial_result for a result it stops on.
            self.searchers[group["cell"]].on_trial_result(group_id, result)
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
