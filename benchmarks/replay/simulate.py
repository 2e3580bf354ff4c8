"""The replay driver: a sweep's own searcher and scheduler on simulated time, each result read from the table.

No Ray, no training. What a real sweep of ``benchmarks/search_space.yaml`` runs is driven here as Ray
Tune drives it, with the same objects:

- the searcher is :class:`tune_schane.search.cell_search.CellSearch` (per-cell TPE or random, warm
  starts, patience: what :class:`tune_schane.ray_tune._searchers.CellSearcher` is under Ray);
- the scheduler is one :class:`tune_schane.search.group_asha.GroupASHA` per cell, built as
  :class:`tune_schane.ray_tune._scheduler.CellASHA` builds it (``GroupASHA.for_space``), or none (FIFO);
- the anchor (``ray-optuna+asha``) is Ray's ``OptunaSearch`` semantics over the whole space (one TPE
  study, cell axes categorical, every trial that reported told COMPLETE with its last value) with one
  ``GroupASHA`` over every trial (with one seed per group it decides as Ray's ``ASHAScheduler``:
  tests/search/test_group_asha.py). Ray's own ``OptunaSearch`` draws the same configs
  (tests/benchmarks/test_replay.py).

Time: ``workers`` trial slots (the space's ``max_concurrent``, 2). A free slot asks the searcher for a
trial; a trial's epoch ``e`` report arrives at its start time plus the table's elapsed seconds at that
epoch. Reports are handled in time order as Ray's controller does: the scheduler decides (continue or
stop), the searcher hears the result (``on_trial_result``) or the ending (``on_trial_complete``: Ray
skips ``on_trial_result`` for the result it stops on). ``suggest`` returning None (a cell waits for a
running config's result) leaves the slot idle until the next report.

Which table run is a trial's result: its sampled params are snapped to the nearest pool point of its
cell (distance in the unit cube of the active parameters, log scale for log-uniform ones; logged),
and its seed is drawn from (searcher seed, cell, point, repeat): common random numbers, so two
strategies that run the same config at the same searcher seed see the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from benchmarks.replay.table import SEEDS, Table

FINISHED = "FINISHED"


@dataclass
class TrialRun:
    trial_id: str
    cell: int
    point: int
    seed: int  # index into the table's seeds
    snap: float  # distance from the sampled params to the pool point run
    start: float
    epochs: int = 0  # epochs reported
    values: list[float] = field(default_factory=list)  # val_top1 at each reported epoch
    status: str = "running"  # completed | pruned | diverged, once ended
    end: float = math.nan

    @property
    def best(self) -> float:
        """``best_objective`` as the store records it: the best over the reported epochs."""
        return max(self.values) if self.values else math.nan


@dataclass
class Replay:
    """One strategy's replayed sweep at one searcher seed: its trials, in the order they ended."""

    trials: list[TrialRun]
    reports: list[tuple[float, int]]  # (time, epochs reported so far by every trial), one per epoch report

    def picks(self, n_cells: int, upto: int | None = None) -> list[TrialRun | None]:
        """Per cell, the completed trial with the best ``best_objective`` among the first ``upto`` ended."""
        best: list[TrialRun | None] = [None] * n_cells
        for trial in self.trials[:upto]:
            if trial.status == "completed" and (best[trial.cell] is None or trial.best > best[trial.cell].best):
                best[trial.cell] = trial
        return best

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.trials)


def unit(space, name: str, value: float) -> float:
    spec = space.params[name]
    if spec.kind == "loguniform":
        return (math.log(value) - math.log(spec.low)) / (math.log(spec.high) - math.log(spec.low))
    return (value - spec.low) / (spec.high - spec.low)


class Snapper:
    """The nearest pool point of a cell to sampled params, in the unit cube of the cell's active parameters."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.names = [list(params[0]) for params in table.params]  # active parameters per cell
        self.coords = [np.array([[unit(table.space, n, p[n]) for n in names] for p in params])
                       for names, params in zip(self.names, table.params, strict=True)]

    def __call__(self, cell: int, params: dict) -> tuple[int, float]:
        x = np.array([unit(self.table.space, n, params[n]) for n in self.names[cell]])
        distance = np.linalg.norm(self.coords[cell] - x, axis=1)
        point = int(np.argmin(distance))
        return point, float(distance[point])


def crn_seed(searcher_seed: int, cell: str, point: int, repeat: int) -> int:
    """The table seed a trial gets: fixed by (searcher seed, cell, point, repeat), whatever the strategy."""
    text = f"{searcher_seed}/{cell}/{point}".encode()
    return (int(hashlib.sha1(text).hexdigest()[:8], 16) + repeat) % len(SEEDS)


class AnchorSearch:
    """Ray's ``OptunaSearch`` over the whole space, as :mod:`tune_schane.ray_tune._anchor` configures it.

    One TPE study (Optuna's default start-up, the searcher seed); the grid axes are categorical
    parameters; intermediate results are reported at their epoch; a trial that ended with a result is
    told COMPLETE with its last value (PRUNED without one, FAIL on error), as Ray's ``OptunaSearch`` does.
    """

    def __init__(self, space) -> None:
        import optuna

        from tune_schane.space.search_space import DefineByRun

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.define = space, DefineByRun
        self.study = optuna.create_study(direction="maximize" if space.objective_mode == "max" else "minimize",
                                         sampler=optuna.samplers.TPESampler(seed=space.searcher_seed))
        self.left = len(space.cells()) * space.num_samples
        self.running: dict[str, object] = {}
        self.cells = space.cells()

    def suggest(self, trial_id: str):
        from tune_schane.search.reports import CELL_KEY

        if self.left <= 0:
            return FINISHED
        self.left -= 1
        trial = self.study.ask()
        cell = {axis: trial.suggest_categorical(axis, list(values)) for axis, values in self.space.grid.items()}
        sampled = self.define(self.space, cell)(trial)
        self.running[trial_id] = trial
        return {"params": {**cell, **sampled}, CELL_KEY: self.cells.index(cell), "repeat": 0}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.running[trial_id].report(result[self.space.objective_metric], step=result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        trial = self.running.pop(trial_id)
        value = None if not result else result.get(self.space.objective_metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.study.tell(trial, state=TrialState.FAIL if error or result else TrialState.PRUNED)
        else:
            self.study.tell(trial, value)


def make_search(space, kind: str):
    """The searcher a real sweep of this strategy runs: ``CellSearch`` or the anchor's."""
    if kind == "ray-optuna":
        return AnchorSearch(space)
    from tune_schane.search.cell_search import CellSearch

    return CellSearch(space)


def replay(table: Table, space, kind: str, searcher_seed: int, workers: int | None = None,
           snapper: Snapper | None = None) -> Replay:
    """Run one strategy's sweep on simulated time; ``kind`` is ``cells`` or ``ray-optuna`` (the anchor)."""
    from tune_schane.search.group_asha import STOP, GroupASHA
    from tune_schane.search.reports import CELL_KEY, STATUS_KEY

    space = dataclasses.replace(space, searcher_seed=searcher_seed)
    if space.repeats != 1:
        raise ValueError("the replay runs one seed per config (repeats: 1), as the search benchmark does")
    snapper = snapper or Snapper(table)
    search = make_search(space, kind)
    asha: dict[int, GroupASHA] = {}

    def scheduler(cell: int) -> GroupASHA | None:
        if space.scheduler != "asha":
            return None
        key = 0 if kind == "ray-optuna" else cell  # the anchor: one ASHA over every trial
        if key not in asha:
            asha[key] = GroupASHA.for_space(space)
        return asha[key]

    metric, max_epochs = space.objective_metric, space.max_epochs
    epoch_values = table.epoch_values()
    epoch_elapsed = table.epoch_elapsed()
    events: list[tuple[float, int, str]] = []
    running: dict[str, TrialRun] = {}
    ended: list[TrialRun] = []
    reports: list[tuple[float, int]] = []
    clock, issued, reported, free, sequence = 0.0, 0, 0, workers or space.max_concurrent, 0
    exhausted = False
    while True:
        while free > 0 and not exhausted:
            trial_id = f"t{issued:05d}"
            suggestion = search.suggest(trial_id)
            if suggestion is None:
                break  # a cell waits for a running config; ask again after the next report
            if suggestion == FINISHED:
                exhausted = True
                break
            issued += 1
            cell = int(suggestion[CELL_KEY])
            params = {k: v for k, v in suggestion["params"].items() if k not in space.grid}
            point, snap = snapper(cell, params)
            seed = crn_seed(searcher_seed, table.cells[cell], point, int(suggestion.get("repeat", 0)))
            run = running[trial_id] = TrialRun(trial_id, cell, point, seed, snap, start=clock)
            if (asha_of := scheduler(cell)) is not None:
                asha_of.add(trial_id, str(suggestion.get("group", trial_id)), 1)
            heapq.heappush(events, (clock + _seconds(epoch_elapsed, run, 1), sequence, trial_id))
            sequence += 1
            free -= 1
        if not events:
            break
        clock, _, trial_id = heapq.heappop(events)
        run = running[trial_id]
        epoch = run.epochs + 1
        value = float(epoch_values[run.cell, run.point, run.seed, epoch - 1])
        run.epochs = epoch
        reported += 1
        reports.append((clock, reported))
        asha_of = scheduler(run.cell)
        if math.isnan(value):  # diverged during this epoch: the trial's last report says so
            result, stop = {STATUS_KEY: "diverged", "epoch": epoch, metric: math.nan}, True
            run.status = "diverged"
        else:
            run.values.append(value)
            result = {STATUS_KEY: "running", "epoch": epoch, metric: value}
            if asha_of is not None:
                decision, _ = asha_of.result(trial_id, epoch, value)
                stop = decision == STOP or epoch >= max_epochs
            else:
                stop = epoch >= max_epochs
            run.status = "completed" if epoch >= max_epochs else "pruned"
        if not stop:
            search.on_trial_result(trial_id, result)
            heapq.heappush(events, (run.start + _seconds(epoch_elapsed, run, epoch + 1), sequence, trial_id))
            sequence += 1
            continue
        search.on_trial_complete(trial_id, result)
        if asha_of is not None:
            asha_of.ended(trial_id, epoch)
        run.end = clock
        ended.append(running.pop(trial_id))
        free += 1
    return Replay(ended, reports)


def _seconds(elapsed: np.ndarray, run: TrialRun, epoch: int) -> float:
    """Seconds from a trial's start to its ``epoch`` report (the last finite one if it diverged before)."""
    row = elapsed[run.cell, run.point, run.seed]
    finite = row[~np.isnan(row)]
    return float(row[epoch - 1]) if not math.isnan(row[epoch - 1]) else float(finite[-1] if finite.size else 1.0)
