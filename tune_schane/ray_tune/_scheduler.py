"""ASHA per grid cell: trials compete only with trials of their own cell; a config's seeds are judged as one."""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..search.group_asha import STOP, WAIT, GroupASHA
from ..search.ledger import ResumeLedger, replay_rungs
from ..space.search_space import SearchSpace
from ._searchers import PickledState
from ._trainable import CELL_KEY


class CellASHA(PickledState, FIFOScheduler):
    """One ASHA per grid cell, created when the cell's first trial arrives; a config's seeds as one.

    A single ASHA over a loss × batch-size grid compares a small-batch SupCon trial with a
    large-batch CE trial at each rung and stops the weaker family wholesale, so the cells the
    batch-size analysis needs most end with no completed trial. Without a grid this is plain ASHA.

    With ``repeats > 1`` the seeds of a sampled config are judged together on their mean
    (:class:`tune_schane.search.group_asha.GroupASHA`): a seed that reaches a rung first is PAUSED (Ray
    keeps its checkpoint and frees its resources) until its siblings get there, then all of them go
    on or all stop, so every completed config keeps all its seeds.
    """

    def __init__(self, space: SearchSpace, store_uri: str | None = None, sweep_id: str | None = None) -> None:
        super().__init__()
        self.space, self.store_uri, self.sweep_id = space, store_uri, sweep_id
        self.ledger: ResumeLedger | None = None  # read at the first restored trial (see _replay)
        self.by_cell: dict[int, GroupASHA] = {}
        self.stopped = 0  # trials stopped early, over every cell
        self.paused = 0  # times a seed waited for its siblings at a rung
        self.resumable: set[str] = set()  # paused trials whose group was continued: run them again
        self.doomed: set[str] = set()  # paused trials whose group was stopped: stop them
        self.trials: dict[str, Any] = {}  # trial id -> Ray trial, to stop or resume waiting seeds
        self._metric = space.objective_metric

    def _cell(self, trial) -> GroupASHA:
        cell = int(trial.config.get(CELL_KEY, 0))
        if cell not in self.by_cell:
            self.by_cell[cell] = GroupASHA.for_space(self.space)
        return self.by_cell[cell]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self.trials[trial.trial_id] = trial
        group = str(trial.config.get("group", trial.trial_id))  # the searcher's group: one config's seeds
        self._cell(trial).add(trial.trial_id, group, self.space.repeats if "group" in trial.config else 1)
        if getattr(trial, "last_result", None):  # restored by --resume (see _replay)
            self._replay(tune_controller, trial)

    def _replay(self, tune_controller, trial) -> None:
        """Record again the rung results a restored trial had reported (tune_schane.search.ledger).

        An ended trial's reports come from the store (else its last checkpoint, for one killed before its
        row landed); a trial that will run again from its checkpoint replays the reports up to it.
        """
        if self.ledger is None:
            self.ledger = ResumeLedger.read(self.store_uri, self.sweep_id, epochs=True)
        ended = trial.status == Trial.TERMINATED
        curve = (self.ledger.curve(trial.trial_id, self._metric) if ended else []) or _checkpoint_curve(
            trial, self._metric)
        last = curve[-1][0] if curve else int(trial.last_result.get("epoch") or 0)
        released = replay_rungs(self._cell(trial), trial.trial_id, curve, ended_after=last if ended else None)
        self._release(tune_controller, {t: go for t, go in released.items()
                                        if t in self.trials and self.trials[t].status != Trial.TERMINATED})

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.resumable.discard(trial.trial_id)
        value = result.get(self._metric)
        value = float("nan") if value is None else float(value)
        decision, released = self._cell(trial).result(trial.trial_id, int(result["epoch"]), value)
        self._release(tune_controller, released)
        if decision == WAIT:
            self.paused += 1
            return TrialScheduler.PAUSE
        self.stopped += decision == STOP and int(result["epoch"]) < self.space.max_epochs
        return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._ended(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._ended(tune_controller, trial, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._ended(tune_controller, trial, None)

    def _ended(self, tune_controller, trial, result: dict | None) -> None:
        self.resumable.discard(trial.trial_id)
        last = (result or getattr(trial, "last_result", None) or {}).get("epoch") or 0
        self._release(tune_controller, self._cell(trial).ended(trial.trial_id, int(last)))

    def _release(self, tune_controller, released: dict[str, bool]) -> None:
        """Waiting seeds whose group was just judged: resume them, or stop them where they paused."""
        for trial_id, go in released.items():
            if go:
                self.resumable.add(trial_id)
            else:
                self.stopped += 1
                self.doomed.add(trial_id)
        self._stop_doomed(tune_controller)

    def _stop_doomed(self, tune_controller) -> None:
        """Stop the judged-out seeds once they are paused.

        Not while Ray still saves the pause checkpoint (Ray's HyperBand stops those at once): until
        the save lands a trial stopped at its first rung has no checkpoint, and the store would
        record it without its epochs. ``choose_trial_to_run`` comes back here on every step.
        """
        if tune_controller is None:
            return
        for trial_id in sorted(self.doomed):
            trial = self.trials.get(trial_id)
            if trial is None or trial.status in (Trial.TERMINATED, Trial.ERROR):
                self.doomed.discard(trial_id)
            elif trial.status in (Trial.PAUSED, Trial.PENDING) and not getattr(trial, "is_saving", False):
                self.doomed.discard(trial_id)
                tune_controller.stop_trial(trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._stop_doomed(tune_controller)  # one that was still saving its checkpoint when judged
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED and trial.trial_id in self.resumable:
                return trial
        if not any(t.status in (Trial.PENDING, Trial.RUNNING) for t in trials):
            # Nothing else can report: judge every waiting group on the seeds it has (a safety valve:
            # the searcher queues a config's seeds together, but a concurrency limit can hold a sibling back).
            for asha in self.by_cell.values():
                for group in asha.waiting_groups():
                    self._release(tune_controller, asha.force(group))
            for trial in trials:
                if trial.status == Trial.PAUSED and trial.trial_id in self.resumable:
                    return trial
        return None

    def debug_string(self) -> str:
        waits = f", {self.paused} waits for sibling seeds" if self.paused else ""
        return f"ASHA per grid cell ({len(self.by_cell)} cells): {self.stopped} trials stopped early{waits}"


def _checkpoint_curve(trial, metric: str) -> list[tuple[int, float]]:
    """``(epoch, value)`` of the reports in a trial's latest checkpoint (its history file); none without one."""
    from ..store.records import read_outputs

    checkpoint = getattr(trial, "checkpoint", None)
    outputs = read_outputs(checkpoint.filesystem, checkpoint.path) if checkpoint is not None else None
    if outputs is None:
        return []
    return [(int(h["epoch"]), float(h[metric])) for h in outputs[1] if metric in h]
