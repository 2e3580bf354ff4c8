"""The search over a grid: a searcher per cell, ``repeats`` seeds per config, cells that share.

- Each grid cell has its own searcher (:mod:`._optuna_search`: a TPE or random Optuna study, or the
  grid list), so a batch-size ablation gives every cell its own study instead of letting one TPE
  abandon the small batches; cells take turns.
- Each sampled config becomes ``repeats`` trials with consecutive seeds; the cell's searcher hears
  the mean of the group.
- Neighbouring cells share (:mod:`tune_schane.search.cell_sharing`): a cell's new incumbent is queued as a
  warm start in the cells at the adjacent batch sizes, and a cell whose incumbent has not moved for
  ``patience`` configs stops sampling.

Nothing here imports Ray. :class:`CellSearch` speaks the ``Searcher`` protocol of Ray Tune (``suggest``,
``on_trial_result``, ``on_trial_complete``, ``FINISHED``); the Ray glue
(:class:`tune_schane.ray_tune._searchers.CellSearcher`) adds only Ray's base class and its checkpoints,
and the replay benchmark (``benchmarks/replay``) drives this very class on simulated time.
"""

from __future__ import annotations

import json

import pandas as pd

from ..faults import fault_point
from ..space.search_space import SearchSpace
from ..space.storage import cell_key
from .cell_sharing import CellSharing, Offer, covers
from .ledger import ResumeLedger
from .optuna_search import PruningAwareOptunaSearch, TrialHandle, make_cell_searcher
from .reports import CELL_KEY, CONFIG_KEY, STATUS_KEY, trial_status


class CellSearch:
    """Round-robin over grid cells, one searcher each; every suggestion becomes ``repeats`` trials."""

    FINISHED = "FINISHED"  # what suggest returns once every cell is done (Ray's Searcher.FINISHED)

    def __init__(self, space: SearchSpace, sweep_id: str | None = None, store_uri: str | None = None,
                 trial_handle: TrialHandle | None = None) -> None:
        self.objective = space.objective_metric
        self.space, self.sweep_id, self.store_uri = space, sweep_id, store_uri
        self.cells = space.cells()
        self.searchers = [make_cell_searcher(space, cell, i, sweep_id, trial_handle)
                          for i, cell in enumerate(self.cells)]
        self.budget = [space.num_samples] * len(self.cells)  # configs still to sample per cell
        self.turn = 0
        self.queue: list[tuple[str, int, dict]] = []  # (group id, repeat index, params) waiting
        self.groups: dict[str, dict] = {}  # group id -> {cell, params, pending, values, statuses}
        self.trial_group: dict[str, str] = {}  # running trials
        self.assignments: dict[str, str] = {}  # every trial id -> its group id
        self.sharing = CellSharing(space)  # warm starts between neighbouring cells, per-cell patience

    def adopt_unknown_trials(self) -> int:
        """Book the trials the store holds but this restored state never handed out; return how many.

        Ray snapshots the searcher with its experiment state about once a second; a trial handed out
        and ended within that second before the driver died is in the store but not in the snapshot,
        and the resumed sweep would hand its slot out again (one trial too many). Each such trial is
        booked as it was: its seed taken off its group's queue, or its group made again with its
        config (the cell's study asked for exactly that config), then told how it ended.
        """
        rows = ResumeLedger.read(getattr(self, "store_uri", None), getattr(self, "sweep_id", None)).trials
        if rows.empty:
            return 0
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
            offer = self.sharing.sampled(cell_index, sampled)
            self._add_group(group_id, cell_index, sampled, offer)
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
            result = {STATUS_KEY: "running", "epoch": epochs, self.objective: float(row.final_objective)}
        self.on_trial_complete(row.trial_id, result, error=row.status == "error")
        return True

    def _new_group(self) -> bool:
        """Sample the next config (a neighbour's warm start when one waits), from the next cell that still samples."""
        for _ in range(len(self.cells)):
            cell_index = self.turn % len(self.cells)
            self.turn += 1
            if self.budget[cell_index] <= 0 or not self.sharing.keeps_sampling(cell_index):
                continue
            group_id = f"g{len(self.groups)}"
            offer = self.sharing.next_offer(cell_index)
            params = self.searchers[cell_index].suggest(group_id, fixed=offer.params if offer else None)
            if params is None:
                self.budget[cell_index] = 0
                continue
            if offer is not None and not covers(params, offer.params):
                self.sharing.give_back(cell_index, offer)  # a trial left by a killed driver came first
                offer = None
            self.sharing.sampled(cell_index, params)
            self.budget[cell_index] -= 1
            self._add_group(group_id, cell_index, params, offer)
            self.queue.extend((group_id, r, params) for r in range(self.space.repeats))
            return True
        return False

    def _add_group(self, group_id: str, cell_index: int, params: dict, offer: Offer | None) -> None:
        origin = None if offer is None else cell_key(self.cells[offer.source])
        self.groups[group_id] = {"cell": cell_index, "params": params, "pending": self.space.repeats,
                                 "values": [], "statuses": [], "trials": [], "warm_start_from": origin}
        if origin is not None:
            self.searchers[cell_index].note(group_id, "warm_start_from", origin)

    def suggest(self, trial_id: str) -> dict | None:
        if not self.queue and not self._new_group():
            if self.trial_group and self.space.warm_start > 0 and any(b > 0 for b in self.budget):
                return None  # not now: a running config may become an incumbent whose neighbours borrow it
            return self.FINISHED
        fault_point("sample")
        group_id, repeat, params = self.queue.pop(0)
        self.trial_group[trial_id] = self.assignments[trial_id] = group_id
        group = self.groups[group_id]
        group.setdefault("trials", []).append(trial_id)  # (setdefault: a searcher pickled before this key)
        self.searchers[group["cell"]].note(group_id, "ray_trial_ids", list(group["trials"]))
        cell = self.cells[group["cell"]]
        config = self.space.trial_config(params, cell, repeat)
        return {CONFIG_KEY: config.to_dict(), "params": {**cell, **params}, "repeat": repeat, "group": group_id,
                CELL_KEY: group["cell"], "resources": self.space.resources_for(config.batch_size),
                "warm_start_from": group.get("warm_start_from")}

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
            group["values"].append(result[self.objective])
        if group["pending"] > 0:
            return
        searcher = self.searchers[group["cell"]]
        statuses = group["statuses"]
        completed = all(s == "completed" for s in statuses)
        mean = sum(group["values"]) / len(group["values"]) if completed else None
        self.sharing.ended(group["cell"], group["params"], mean)
        if completed:  # the searcher hears the mean over seeds
            searcher.on_trial_complete(group_id, {self.objective: mean, "epoch": self.space.max_epochs})
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
