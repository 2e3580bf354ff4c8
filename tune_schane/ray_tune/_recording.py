"""Every finished sweep trial into the store: the store callback, and reconciliation after a resume.

Both record a trial the same way (:func:`record_ray_trial`): its resolved config and history from the
files the trial wrote beside its latest checkpoint (:func:`tune_schane.store.records.read_outputs`), its
end from its last result, then :func:`tune_schane.store.records.record_trial`. A trial with no checkpoint
never finished an epoch (every epoch's report carries one, and so does an early stop's): it is
recorded with the config Ray gave it and no epochs.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune

from ..faults import fault_point
from ..finetune.config import TrialConfig
from ..search.ledger import ResumeLedger
from ..space.search_space import SearchSpace
from ..store.records import read_evaluation, read_outputs, record_trial
from ..store.trial_store import TrialStore, open_filesystem
from ._trainable import CONFIG_KEY, ERROR_KEY, JOB_KEY, STAGE_KEY, WORKER_NODES_KEY, trial_status


def record_ray_trial(store: TrialStore, sweep_id: str, space: SearchSpace, *, trial_id: str, config: dict,
                     result: dict | None, checkpoint: tune.Checkpoint | None, error: str | None,
                     status: str | None = None) -> None:
    """Write one Ray trial (``config``: its Ray config; ``error``: the exception's text when it errored;
    ``status``: how it ended when known otherwise than from ``result``)."""
    result = result or {}
    outputs = read_outputs(checkpoint.filesystem, checkpoint.path) if checkpoint is not None else None
    trial_config, history = outputs or (TrialConfig.from_dict(config[CONFIG_KEY]), [])
    evaluation = read_evaluation(checkpoint.filesystem, checkpoint.path) if checkpoint is not None else None
    message = _last_line(error) if error is not None else (result.get(ERROR_KEY) or None)
    record_trial(store, sweep_id=sweep_id, trial_id=trial_id,
                 status=status or trial_status(result, error is not None, space.max_epochs), config=trial_config,
                 history=history, resources=config.get("resources"), error=message,
                 objective=space.objective_metric, mode=space.objective_mode,
                 wall_seconds=float(result.get("time_total_s", math.nan)),
                 node=result.get(WORKER_NODES_KEY) or result.get("node_ip"),  # a data-parallel trial: its workers
                 params=config.get("params"), stage=config.get(STAGE_KEY, "search"),
                 confirm_job=config.get(JOB_KEY), evaluation=evaluation)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trial errored"


class StoreCallback(tune.Callback):
    """Writes each trial to the store when it ends: completed, pruned, diverged, oom or error.

    With ``prune_checkpoints``, an ended trial's checkpoints go (its latest one stays, for the sweep
    end's ``keep_checkpoints``) once its row is in the store *and* Ray has saved an experiment state
    after the trial ended. Until then a driver killed now resumes from an older experiment state, which
    can name the trial running at a checkpoint a few epochs back (Ray saves it at most every
    driver.EXPERIMENT_STATE_PERIOD_S, and short epochs pass faster); Ray restores that checkpoint, so it
    must still exist, or the resumed trial errors and its row overwrites the good one. Once a saved
    state names the trial terminated, a resume leaves it alone. :func:`drop_sweep_checkpoints` at the
    end of the sweep decides about the rest.
    """

    def __init__(self, store_uri: str, sweep_id: str, space: SearchSpace, *, prune_checkpoints: bool = True) -> None:
        self.store_uri, self.sweep_id, self.space = store_uri, sweep_id, space
        self.prune_checkpoints = prune_checkpoints
        self.ended: list[tuple[Any, float]] = []  # (trial, when its row landed): checkpoints still to drop
        self._looked = 0.0
        self.settled: set[str] = set()

    def setup(self, **info: Any) -> None:
        """At the start of a run, a resumed one too (Ray restores this object pickled with the run).

        Trials that had ended before the driver died: the saved state Ray resumes from may be older
        than their end and run them again; their first ending stands (the Optuna study keeps it too),
        so a rerun is not written over it. Errored trials are retried on purpose: not settled.
        """
        self.ended, self.settled = [], ResumeLedger.read(self.store_uri, self.sweep_id).settled()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        fault_point("result")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=_error_text(trial))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.ended and time.monotonic() - self._looked >= 1.0:  # one listing per second at most
            self._looked = time.monotonic()
            self._drop_ended_checkpoints()

    def _write(self, trial, error: str | None) -> None:
        if trial.trial_id in self.settled:
            return  # ended before the resume: that row stands (see __init__)
        record_ray_trial(TrialStore(self.store_uri), self.sweep_id, self.space, trial_id=trial.trial_id,
                         config=trial.config, result=trial.last_result, checkpoint=trial.checkpoint, error=error)
        if self.prune_checkpoints:  # only after the row landed: until then the checkpoint is the record
            self.ended.append((trial, time.time()))

    def _drop_ended_checkpoints(self) -> None:
        """Drop the checkpoints of the ended trials that a saved experiment state knows as ended."""
        storage = self.ended[0][0].storage
        saved = saved_state_time(storage.storage_filesystem, storage.experiment_fs_path)
        waiting = []
        for trial, ended in self.ended:
            if saved is not None and saved > ended + 0.5:  # margin: file times may be coarse
                drop_checkpoints(trial.storage.storage_filesystem, trial.storage.trial_fs_path, keep_latest=1)
            else:
                waiting.append((trial, ended))
        self.ended = waiting


def saved_state_time(filesystem, experiment_path: str) -> float | None:
    """When Ray last saved the experiment state (``experiment_state-*.json``), as a Unix time."""
    import pyarrow.fs as pafs

    infos = filesystem.get_file_info(pafs.FileSelector(experiment_path, allow_not_found=True))
    times = [i.mtime.timestamp() for i in infos
             if i.base_name.startswith("experiment_state") and i.base_name.endswith(".json") and i.mtime]
    return max(times, default=None)


def drop_checkpoints(filesystem, trial_path: str, *, keep: str | None = None, keep_latest: int = 0) -> int:
    """Delete the ``checkpoint_*`` folders of one trial on its storage filesystem, except the folder
    ``keep`` and the ``keep_latest`` newest (Ray numbers them in order: ``checkpoint_000003``)."""
    folders = checkpoint_folders(filesystem, trial_path)
    kept = set(folders[len(folders) - keep_latest:]) if keep_latest else set()
    gone = [path for path in folders if path not in kept and (keep is None or path.rstrip("/") != keep.rstrip("/"))]
    for path in gone:
        filesystem.delete_dir(path)
    return len(gone)


def checkpoint_folders(filesystem, trial_path: str) -> list[str]:
    """A trial's ``checkpoint_*`` folders, oldest first (Ray numbers them in order: ``checkpoint_000003``)."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(trial_path, allow_not_found=True)
    return sorted(info.path for info in filesystem.get_file_info(selector)
                  if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"))


def drop_sweep_checkpoints(results: tune.ResultGrid, *, keep: str, metric: str, mode: str) -> int:
    """At the end of a sweep: ``keep="best"`` leaves the best trial's latest checkpoint, ``"none"`` nothing."""
    best_path = None
    if keep == "best":
        try:
            best = results.get_best_result(metric=metric, mode=mode, scope="all")
            best_path = best.checkpoint.path if best.checkpoint is not None else None
        except RuntimeError:  # no trial reported the metric
            best_path = None
    dropped = 0
    for result in results:
        if result.path and result.filesystem is not None:
            dropped += drop_checkpoints(result.filesystem, result.path, keep=best_path)
    return dropped


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return str(getattr(trial, "error_msg", None) or "trial errored")


def reconcile_store(results: tune.ResultGrid, store_uri: str, sweep_id: str, space: SearchSpace) -> int:
    """Write the trials Ray finished but the store lacks; return how many.

    A driver killed between Ray marking a trial finished and the store callback's part file
    landing (or during that write) would otherwise lose the trial's row on resume, because Ray
    does not finish a finished trial twice. Ray's own results are the source here.
    """
    store = TrialStore(store_uri)
    known = ResumeLedger.read(store_uri, sweep_id).known()
    missing = [r for r in results if r.metrics and r.metrics.get("trial_id") not in known]
    for result in missing:
        record_ray_trial(store, sweep_id, space, trial_id=result.metrics["trial_id"], config=result.config,
                         result=result.metrics, checkpoint=result.checkpoint,
                         error=str(result.error) if result.error else None)
    return len(missing)


def record_told_trials(experiment: str, store_uri: str, sweep_id: str, space: SearchSpace) -> int:
    """Write the trials an Optuna storage was told ended but the store lacks; return how many.

    Ray tells the searcher that a trial ended before the callbacks write its row
    (``TuneController.stop_trial``). A driver killed inside that write, for a trial that started after
    Ray's last saved experiment state, leaves the trial told in a persistent study, unknown to the
    resumed Ray and without a row: the resumed sweep would sample a replacement and the study would
    end with one trial more than the store. What the row needs is still on storage: the trial's latest
    checkpoint (its resolved config and history; checkpoints are only dropped once the row landed),
    how it ended (the study's state) and its params (the study's, with the cell's grid values). The
    driver's own files of the trial (``params.json``, ``result.json``) may have died with it unflushed,
    so they are used only when whole. Called before Ray restores the searcher, which then books the
    row like any trial its saved state missed (``CellSearcher.adopt_unknown_trials``). A trial told
    FAIL is left out (diverged, oom or an exception cannot be told apart without its last result).
    """
    if space.optuna_storage is None or space.searcher == "grid":
        return 0
    import optuna
    from optuna.trial import TrialState

    from ..space.storage import open_storage, study_name

    ended = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}
    storage, told = open_storage(space.optuna_storage), {}
    for cell in space.cells():
        try:
            study = optuna.load_study(study_name=study_name(sweep_id, cell), storage=storage)
        except KeyError:  # the driver died before this cell's study was made
            continue
        for frozen in study.get_trials(deepcopy=False, states=tuple(ended)):
            for ray_id in frozen.user_attrs.get("ray_trial_ids", ()):
                told[ray_id] = (ended[frozen.state], {**cell, **frozen.params})
    missing = sorted(set(told) - ResumeLedger.read(store_uri, sweep_id).known())
    if not missing:
        return 0
    filesystem, root = open_filesystem(experiment, "sweep storage")
    store, written = TrialStore(store_uri), 0
    for trial_id in missing:
        folder = f"{root}/trial_{trial_id}"
        checkpoints = checkpoint_folders(filesystem, folder)
        outputs = read_outputs(filesystem, checkpoints[-1]) if checkpoints else None
        if outputs is None:
            continue  # it never reported (a config handed out again under another id ran instead)
        status, params = told[trial_id]
        config = _read_json(filesystem, f"{folder}/params.json") or {
            "params": params, "resources": space.resources_for(outputs[0].batch_size),
            CONFIG_KEY: outputs[0].to_dict()}
        record_ray_trial(store, sweep_id, space, trial_id=trial_id, config=config, result=None,
                         checkpoint=tune.Checkpoint(checkpoints[-1], filesystem), error=None, status=status)
        written += 1
    return written


def _read_json(filesystem, path: str) -> dict | None:
    import json

    try:
        with filesystem.open_input_stream(path) as src:
            return json.loads(src.read())
    except (OSError, ValueError):
        return None
