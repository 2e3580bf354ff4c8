"""Every finished sweep trial into the store: the store callback, and reconciliation after a resume.

Both record a trial the same way (:func:`record_ray_trial`): its resolved config and history from the
files the trial wrote beside its latest checkpoint (:func:`tune_schane.records.read_outputs`), its
end from its last result, then :func:`tune_schane.records.record_trial`. A trial with no checkpoint
never finished an epoch (every epoch's report carries one, and so does an early stop's): it is
recorded with the config Ray gave it and no epochs.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from ..config import TrialConfig
from ..faults import fault_point
from ..records import read_outputs, record_trial
from ..space import SearchSpace
from ..store import TrialStore
from .trainable import CONFIG_KEY, ERROR_KEY, trial_status


def record_ray_trial(store: TrialStore, sweep_id: str, space: SearchSpace, *, trial_id: str, config: dict,
                     result: dict | None, checkpoint: tune.Checkpoint | None, error: str | None) -> None:
    """Write one Ray trial (``config``: its Ray config; ``error``: the exception's text when it errored)."""
    result = result or {}
    outputs = read_outputs(checkpoint.filesystem, checkpoint.path) if checkpoint is not None else None
    trial_config, history = outputs or (TrialConfig.from_dict(config[CONFIG_KEY]), [])
    message = _last_line(error) if error is not None else (result.get(ERROR_KEY) or None)
    record_trial(store, sweep_id=sweep_id, trial_id=trial_id,
                 status=trial_status(result, error is not None, space.max_epochs), config=trial_config,
                 history=history, resources=config.get("resources"), error=message,
                 objective=space.objective_metric, mode=space.objective_mode,
                 wall_seconds=float(result.get("time_total_s", math.nan)), node=result.get("node_ip"),
                 params=config.get("params"))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trial errored"


class StoreCallback(tune.Callback):
    """Writes each trial to the store when it ends: completed, pruned, diverged, oom or error."""

    def __init__(self, store_uri: str, sweep_id: str, space: SearchSpace) -> None:
        self.store_uri, self.sweep_id, self.space = store_uri, sweep_id, space

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        fault_point("result")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._write(trial, error=_error_text(trial))

    def _write(self, trial, error: str | None) -> None:
        record_ray_trial(TrialStore(self.store_uri), self.sweep_id, self.space, trial_id=trial.trial_id,
                         config=trial.config, result=trial.last_result, checkpoint=trial.checkpoint, error=error)


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
    known = set(store.load_trials(sweep_id)["trial_id"])
    missing = [r for r in results if r.metrics and r.metrics.get("trial_id") not in known]
    for result in missing:
        record_ray_trial(store, sweep_id, space, trial_id=result.metrics["trial_id"], config=result.config,
                         result=result.metrics, checkpoint=result.checkpoint,
                         error=str(result.error) if result.error else None)
    return len(missing)
