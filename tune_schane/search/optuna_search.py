"""One cell's searcher: an Optuna study driven with ask/tell, or a fixed list for the grid baseline.

:class:`PruningAwareOptunaSearch` owns its ``optuna.Study`` (in memory, or in the sweep's Optuna
storage: :mod:`tune_schane.space.storage`). Ray's ``OptunaSearch`` tells COMPLETE whenever a trial
has a result, so trials stopped early by ASHA would reach TPE as complete with a truncated score;
here they are told PRUNED (TPE then uses their intermediate values as Optuna intends), and diverged,
out-of-memory and errored trials FAIL. Owning the study also means nothing reads Ray's private
searcher state. :class:`~tune_schane.search.cell_search.CellSearch` runs one of these per grid cell.

Nothing here imports Ray: the replay benchmark (``benchmarks/replay``) drives these very classes.
A trial asked before a restore (a study in a storage) is reached again through ``trial_handle``,
which needs a private Optuna API; the Ray glue passes the one wrapper of such APIs
(:func:`tune_schane.ray_tune._private_apis.optuna_trial_handle`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..space.search_space import SearchSpace
from ..space.storage import cell_key, study_name
from .reports import STATUS_KEY, trial_status

TrialHandle = Callable[[Any, int], Any]  # (study, trial number) -> a live optuna.Trial


class PruningAwareOptunaSearch:
    """An Optuna study asked for configs and told how each trial ended (COMPLETE, PRUNED or FAIL).

    The study lives in memory (pickled whole with Ray's searcher checkpoint) or, with ``storage``
    (a URL for :func:`tune_schane.space.storage.open_storage`), in that storage under
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

    trial_handle: TrialHandle | None = None  # (a class default: instances pickled before it existed have none)

    def __init__(self, *, space: Callable[[Any], dict[str, Any]], metric: str, mode: str, sampler: Any,
                 max_epochs: int, storage: str | None = None, study_name: str | None = None,
                 user_attrs: dict[str, Any] | None = None, trial_handle: TrialHandle | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if storage is not None and not study_name:
            raise ValueError("a study in a storage needs a study_name")
        self.define_by_run, self.metric, self.max_epochs = space, metric, max_epochs
        self.sampler, self.storage, self.study_name = sampler, storage, study_name
        self.trial_handle = trial_handle
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

        from ..space.storage import open_storage

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
        """The ``optuna.Trial`` of trial ``number`` (one asked before a restore has none: make it)."""
        if number not in self._handles:
            if self.trial_handle is None:
                raise RuntimeError(f"trial {number} was asked before a restore; reaching it again needs a trial_handle")
            self._handles[number] = self.trial_handle(self.study, number)
        return self._handles[number]

    def suggest(self, trial_id: str, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The next config; ``fixed``: params to run (a warm start; the rest sampled as usual).

        A trial left RUNNING by a killed driver is handed out first (``fixed`` then waits: the caller
        sees the config differ).
        """
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
        if fixed:
            study.enqueue_trial(fixed)
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


class ListSearch:
    """The ``grid`` baseline: hands out a fixed list of configs in order."""

    def __init__(self, points: list[dict]) -> None:
        self.points, self.next = points, 0

    def suggest(self, trial_id: str, fixed: dict[str, Any] | None = None) -> dict | None:
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


def make_cell_searcher(space: SearchSpace, cell: dict, index: int, sweep_id: str | None = None,
                       trial_handle: TrialHandle | None = None) -> PruningAwareOptunaSearch | ListSearch:
    """The cell's searcher; with ``space.optuna_storage`` its study is ``<sweep_id>/<cell key>`` there."""
    import optuna

    if space.searcher == "grid":
        return ListSearch([p for p in space.grid_points() if all(p.get(k) == v for k, v in cell.items())])
    seed = space.searcher_seed + index
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=space.startup_trials)
               if space.searcher == "optuna"
               else optuna.samplers.RandomSampler(seed=seed))
    stored = {}
    if space.optuna_storage is not None:
        if not sweep_id:
            raise ValueError("a space with optuna_storage needs the sweep id (it names the studies)")
        stored = {"storage": space.optuna_storage, "study_name": study_name(sweep_id, cell),
                  "user_attrs": {"sweep": sweep_id, "cell": cell_key(cell), "objective": space.objective_metric}}
    return PruningAwareOptunaSearch(space=space.define_by_run(cell), metric=space.objective_metric,
                                    mode=space.objective_mode, sampler=sampler, max_epochs=space.max_epochs,
                                    trial_handle=trial_handle, **stored)
