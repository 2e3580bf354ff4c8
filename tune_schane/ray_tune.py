"""Everything that touches Ray: the only module that imports ``ray`` (DESIGN.md section 3).

- :func:`trainable` is thin, as in Ray's own examples: config dict -> :class:`TrialConfig`, call
  the plain loop in :mod:`tune_schane.trial`, report once per epoch with every metric key every
  time, with a small checkpoint.
- :class:`PruningAwareOptunaSearch` fixes what Ray's ``OptunaSearch`` tells Optuna: Ray tells
  COMPLETE whenever a trial has a result, so trials stopped early by ASHA would reach TPE as
  complete with a truncated score. Here they are told PRUNED (TPE then uses their intermediate
  values as Optuna intends), and diverged, out-of-memory and errored trials FAIL.
- :class:`CellSearcher` runs one searcher per grid cell (so a batch-size ablation gives every cell
  its own TPE study instead of letting TPE abandon the small batches) and expands each sampled
  config into ``repeats`` trials with consecutive seeds; the searcher hears the mean of a group.
- :class:`StoreCallback` writes every finished trial, whatever its end, to the Parquet store.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from .config import TrialConfig
from .faults import fault_point
from .records import epoch_rows, trial_row
from .space import SearchSpace
from .store import TrialStore
from .train import TrialStopped
from .trial import HISTORY_FILE, METRIC_KEYS, Trial

logger = logging.getLogger(__name__)

STATUS_KEY = "trial_status"  # running | diverged | oom, in every report
ERROR_KEY = "trial_error"
GPU_IDS_KEY = "gpu_ids"  # "0,1": the GPU ids Ray assigned (CUDA_VISIBLE_DEVICES of the trial)
CONFIG_KEY = "trial_config"  # the resolved TrialConfig as a dict, in the param space of every trial
CHUNK_KEY = "contrastive_chunk"  # the chunk the trial trains with (automatic ones included), NaN = none
BUDGET_KEY = "memory_budget_mb"  # the step memory budget it planned for, NaN = none
CELL_KEY = "cell"  # index of the trial's grid cell, for the per-cell ASHA


# ----------------------------------------------------------------------------------------- trainable
def trainable(config: dict[str, Any]) -> None:
    """Run one trial under Ray Tune; resume from Tune's checkpoint when there is one."""
    trial_config = TrialConfig.from_dict(config[CONFIG_KEY]).resolved()
    resources = config.get("resources", {})
    if trial_config.num_threads is None:  # a reused worker keeps its first trial's thread count
        torch.set_num_threads(max(1, int(resources.get("cpu", 1))))
    gpu_share = float(resources.get("gpu", 0.0))
    if trial_config.memory_budget_mb is None and gpu_share > 0 and torch.cuda.is_available():
        # The trial's share of its card: a batch that would not fit is gradient-cached, not failed.
        card = torch.cuda.get_device_properties(0).total_memory / 2**20
        trial_config = dataclasses.replace(trial_config, memory_budget_mb=min(1.0, gpu_share) * card)
    trial = Trial(trial_config)
    effective = {CHUNK_KEY: float(trial.config.contrastive_chunk or math.nan),
                 BUDGET_KEY: float(trial.config.memory_budget_mb or math.nan)}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trial.load_checkpoint(directory)
    # Which (logical) GPUs Ray gave this trial: reported so packing can be checked from the results.
    placement = {GPU_IDS_KEY: ",".join(str(g) for g in ray.get_gpu_ids()), "started_at": time.time(), **effective}
    try:
        for metrics in trial.run():
            with tempfile.TemporaryDirectory() as directory:
                trial.save_checkpoint(directory)
                tune.report({**metrics, **placement, STATUS_KEY: "running", ERROR_KEY: "", "reported_at": time.time()},
                            checkpoint=tune.Checkpoint.from_directory(directory))
    except TrialStopped as stop:
        # A last report carries the status; the objective is the worst possible value so the
        # scheduler ranks it last. The store keeps the real (NaN) objective from the epochs.
        worst = {key: math.nan for key in METRIC_KEYS}
        worst.update(epoch=float(trial.epoch + 1), val_top1=-math.inf)
        tune.report({**worst, **placement, STATUS_KEY: stop.status, ERROR_KEY: str(stop)})


def _trial_status(result: dict | None, error: bool, max_epochs: int) -> str:
    if error:
        return "error"
    if not result:
        return "pruned"
    status = result.get(STATUS_KEY, "running")
    if status != "running":
        return status
    return "completed" if int(result.get("epoch", 0)) >= max_epochs else "pruned"


# ----------------------------------------------------------------------------------------- searchers
class PruningAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells Optuna PRUNED for scheduler-stopped trials and FAIL for failures."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(STATUS_KEY, "running") == "running":  # never report a failure's placeholder
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        status = _trial_status(result, error, self._max_epochs)
        ot_trial = self._ot_trials[trial_id]
        if status == "completed":
            self._ot_study.tell(ot_trial, result[self.metric], state=optuna.trial.TrialState.COMPLETE)
        elif status == "pruned":
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        self._completed_trials.add(trial_id)

    @property
    def study(self):
        return self._ot_study


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


def _make_cell_searcher(space: SearchSpace, cell: dict, index: int):
    import optuna

    if space.searcher == "grid":
        return _ListSearch([p for p in space.grid_points() if all(p.get(k) == v for k, v in cell.items())])
    seed = space.searcher_seed + index
    sampler = (optuna.samplers.TPESampler(seed=seed) if space.searcher == "optuna"
               else optuna.samplers.RandomSampler(seed=seed))
    return PruningAwareOptunaSearch(space=space.define_by_run(cell), metric=space.objective_metric,
                                    mode=space.objective_mode, sampler=sampler, max_epochs=space.max_epochs)


class _PickledState:
    """Ray checkpoints searchers and schedulers through save/restore; the whole state pickles."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class CellSearcher(_PickledState, Searcher):
    """Round-robin over grid cells, one searcher each; every suggestion becomes ``repeats`` trials."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(metric=space.objective_metric, mode=space.objective_mode)
        self.space = space
        self.cells = space.cells()
        self.searchers = [_make_cell_searcher(space, cell, i) for i, cell in enumerate(self.cells)]
        self.budget = [space.num_samples] * len(self.cells)  # configs still to sample per cell
        self.turn = 0
        self.queue: list[tuple[str, int, dict]] = []  # (group id, repeat index, params) waiting
        self.groups: dict[str, dict] = {}  # group id -> {cell, members, results, params}
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
        sampled = {**cell, **params}
        config = self.space.trial_config(params, cell, repeat)
        return {CONFIG_KEY: config.to_dict(), "params": sampled, "repeat": repeat, "group": group_id,
                CELL_KEY: self.groups[group_id]["cell"],
                "resources": self.space.resources_for(config.batch_size)}

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
        status = _trial_status(result, error, self.space.max_epochs)
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
        """The Optuna trial (as the study now records it) behind a Ray trial, for single-repeat spaces."""
        group_id = self.assignments[trial_id]
        searcher = self.searchers[self.groups[group_id]["cell"]]
        number = searcher._ot_trials[group_id].number
        return searcher.study.trials[number]


# ----------------------------------------------------------------------------------------- scheduler
class CellASHA(_PickledState, FIFOScheduler):
    """One ASHA per grid cell: trials compete only with trials of their own cell.

    A single ASHA over a loss × batch-size grid compares a small-batch SupCon trial with a
    large-batch CE trial at each rung and stops the weaker family wholesale, so the cells the
    batch-size analysis needs most end with no completed trial. Without a grid this is plain ASHA.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.by_cell: dict[int, ASHAScheduler] = {}
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
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        stopped = sum(a._num_stopped for a in self.by_cell.values())
        return f"ASHA per grid cell ({len(self.by_cell)} cells): {stopped} trials stopped early"



# ----------------------------------------------------------------------------------------- store
class StoreCallback(tune.Callback):
    """Writes each trial to the store when it ends: completed, pruned, diverged, oom or error."""

    def __init__(self, store_uri: str, sweep_id: str, space: SearchSpace) -> None:
        self.store_uri, self.sweep_id, self.space = store_uri, sweep_id, space
        self.histories: dict[str, list[dict]] = {}
        self.written: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        fault_point("result")
        if result.get(STATUS_KEY, "running") == "running":
            if trial.trial_id not in self.histories:  # after a driver restart: epochs reported before it
                self.histories[trial.trial_id] = _history_from_ray(trial)
            history = self.histories[trial.trial_id]
            epoch = int(result["epoch"])
            history[:] = [h for h in history if int(h["epoch"]) < epoch]  # a retry re-reports epochs
            history.append({key: float(result[key]) for key in METRIC_KEYS})

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=True)

    def _write(self, trial, error: bool) -> None:
        result = trial.last_result or {}
        config = effective_config(TrialConfig.from_dict(trial.config[CONFIG_KEY]), result)
        status = _trial_status(result, error, self.space.max_epochs)
        message = result.get(ERROR_KEY) or None
        if error:
            message = _error_text(trial)
        history = _checkpoint_history(trial.checkpoint)
        if history is None:  # no checkpoint (stopped inside its first epoch): what this driver saw
            history = self.histories.get(trial.trial_id) or _history_from_ray(trial)
        resources = trial.placement_group_factory.required_resources
        store = TrialStore(self.store_uri)
        # Epochs first: a reader that sees the trial row also sees its epochs.
        store.write_epochs(epoch_rows(self.sweep_id, trial.trial_id, history))
        store.write_trials([trial_row(
            sweep_id=self.sweep_id, trial_id=trial.trial_id, status=status, config=config, history=history,
            error=message, objective=self.space.objective_metric, mode=self.space.objective_mode,
            wall_seconds=float(result.get("time_total_s", math.nan)),
            resources_cpu=float(resources.get("CPU", 0.0)), resources_gpu=float(resources.get("GPU", 0.0)),
            node=result.get("node_ip"), params=trial.config.get("params"))])
        self.written.add(trial.trial_id)


def effective_config(config: TrialConfig, result: dict) -> TrialConfig:
    """The config as the trial ran it: with the chunk and memory budget it reported (set automatically)."""
    changes = {}
    for key in (CHUNK_KEY, BUDGET_KEY):
        value = result.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            changes[key] = int(value) if key == CHUNK_KEY else float(value)
    return dataclasses.replace(config, **changes) if changes else config


def reconcile_store(results: tune.ResultGrid, store_uri: str, sweep_id: str, space: SearchSpace) -> int:
    """Write the trials Ray finished but the store lacks; return how many.

    A driver killed between Ray marking a trial finished and the store callback's part file
    landing (or during that write) would otherwise lose the trial's row on resume, because Ray
    does not finish a finished trial twice. Ray's own results are the source here.
    """
    store = TrialStore(store_uri)
    known = set(store.load_trials(sweep_id)["trial_id"])
    missing = [r for r in results if r.metrics and r.metrics.get("trial_id") not in known]
    for result in missing:
        trial_id = result.metrics["trial_id"]
        history = _checkpoint_history(result.checkpoint) or _history_from_frame(result.metrics_dataframe)
        status = _trial_status(result.metrics, result.error is not None, space.max_epochs)
        error = str(result.error).strip().splitlines()[-1] if result.error else (result.metrics.get(ERROR_KEY) or None)
        config = effective_config(TrialConfig.from_dict(result.config[CONFIG_KEY]), result.metrics)
        resources = result.config.get("resources", {})
        store.write_epochs(epoch_rows(sweep_id, trial_id, history))
        store.write_trials([trial_row(
            sweep_id=sweep_id, trial_id=trial_id, status=status, config=config, history=history, error=error,
            objective=space.objective_metric, mode=space.objective_mode,
            wall_seconds=float(result.metrics.get("time_total_s", math.nan)),
            resources_cpu=float(resources.get("cpu", 0.0)), resources_gpu=float(resources.get("gpu", 0.0)),
            node=result.metrics.get("node_ip"), params=result.config.get("params"))])
    return len(missing)


def _checkpoint_history(checkpoint: tune.Checkpoint | None) -> list[dict] | None:
    """Per-epoch metrics saved beside the trial's latest checkpoint (``history.json``), or None."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{HISTORY_FILE}") as src:
            history = json.loads(src.read())
    except (OSError, ValueError):
        return None
    return [{key: float(h.get(key, math.nan)) for key in METRIC_KEYS} for h in history]


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        with open(path) as fh:
            lines = [line for line in fh.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else "trial errored"
    except OSError:
        return str(getattr(trial, "error_msg", None) or "trial errored")


def _history_from_ray(trial) -> list[dict]:
    """Epochs reported before a driver restart, read back from Ray's own progress file."""
    import pandas as pd

    path = os.path.join(trial.local_path or "", "progress.csv")
    if not os.path.exists(path):
        return []
    return _history_from_frame(pd.read_csv(path))


def _history_from_frame(frame) -> list[dict]:
    """Per-epoch metrics from a frame of Ray results: real epochs only, the last report of each."""
    if frame is None or frame.empty:
        return []
    if STATUS_KEY in frame:
        frame = frame[frame[STATUS_KEY] == "running"]
    frame = frame.drop_duplicates("epoch", keep="last")
    return [{key: float(row[key]) for key in METRIC_KEYS} for _, row in frame.iterrows()]


# ----------------------------------------------------------------------------------------- driver
def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> dict:
    """Join ``address`` or start a local Ray (dashboard bound to 127.0.0.1); return cluster resources."""
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", logging_level=logging.WARNING)
    return ray.cluster_resources()


# Ray saves the experiment state (which names each trial's latest checkpoint) at most every
# TUNE_GLOBAL_CHECKPOINT_S seconds. A driver killed between two saves resumes each trial from the
# checkpoint the last save named; if `num_to_keep` had deleted it since, the trial errors with
# "checkpoint does not exist on storage anymore". Keeping a few per trial and saving the state
# every 5 s makes that impossible unless 4 epochs finish within 5 s.
CHECKPOINTS_KEPT = 4
EXPERIMENT_STATE_PERIOD_S = "5"


def run_sweep(
    space: SearchSpace,
    *,
    sweep_id: str,
    store_uri: str,
    storage_path: str,
    resume: bool = False,
    max_failures: int = 2,
    verbose: int = 1,
) -> tuple[tune.ResultGrid, CellSearcher | None]:
    """Run (or resume) a sweep; every trial ends up in the store (see CHECKPOINTS_KEPT for resume safety).

    Returns Ray's results and the searcher (None on resume: Ray restores its own copy), whose
    Optuna studies tests inspect.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    resources = tune.with_resources(
        trainable, lambda config: tune.PlacementGroupFactory([_bundle(config["resources"])]))
    callback = StoreCallback(store_uri, sweep_id, space)
    run_config = tune.RunConfig(
        name=sweep_id, storage_path=storage_path, callbacks=[callback], verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT))
    experiment = os.path.join(storage_path, sweep_id)
    cell_searcher = None
    if resume:
        tuner = tune.Tuner.restore(experiment, trainable=resources, resume_unfinished=True,
                                   resume_errored=True)
    else:
        cell_searcher = CellSearcher(space)
        searcher = ConcurrencyLimiter(cell_searcher, max_concurrent=space.max_concurrent)
        scheduler = CellASHA(space) if space.scheduler == "asha" else FIFOScheduler()
        total = len(space.cells()) * space.num_samples * space.repeats
        tuner = tune.Tuner(
            resources,
            tune_config=tune.TuneConfig(metric=space.objective_metric, mode=space.objective_mode,
                                        search_alg=searcher, scheduler=scheduler, num_samples=total,
                                        reuse_actors=True),
            run_config=run_config)
    results = tuner.fit()
    reconcile_store(results, store_uri, sweep_id, space)
    return results, cell_searcher


def _bundle(resources: dict) -> dict:
    bundle = {"CPU": float(resources.get("cpu", 1))}
    if resources.get("gpu"):
        bundle["GPU"] = float(resources["gpu"])
    return bundle


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
