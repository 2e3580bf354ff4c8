"""Experiment trackers through Ray Tune's own logger callbacks (no logging code of ours).

- ``TBXLoggerCallback``: TensorBoard event files, one per trial in its folder
  (``<storage>/<sweep>/trial_<id>/events.out.tfevents.*``), every reported metric as a scalar
  ``ray/tune/<metric>`` per training iteration (= epoch); given explicitly so that
  ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` (which drops Ray's default loggers) cannot drop it.
- ``MLflowLoggerCallback`` with ``--mlflow URI``: one run per trial in the experiment named after the
  sweep, the trial's config as params and every epoch's metrics at step = epoch. It runs on the
  driver, so the URI must be reachable from the driver only.

A trial that stops early (diverged, out of memory, an error) ends with a report whose metrics are
placeholders (the objective at -inf so that schedulers rank it last, the rest NaN): the trackers drop
those and tell the status instead (an MLflow run ends FAILED), so no tracker plots a -inf accuracy.

They sit beside :class:`~tune_schane.ray_tune._recording.StoreCallback` in ``RunConfig.callbacks``;
Ray calls each in turn and none depends on another. W&B works the same way (README: "Use with
your tools").
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.logger import TBXLoggerCallback

from ..finetune.outcomes import METRIC_KEYS
from ._trainable import STATUS_KEY

FAILED = ("diverged", "oom", "error")


def without_placeholders(result: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(result, None)`` for a running trial's report; a stopped trial's last one without its metrics, and
    its status."""
    status = result.get(STATUS_KEY, "running")
    if status == "running":
        return result, None
    return {key: value for key, value in result.items() if key not in METRIC_KEYS}, status


class _TensorBoard(TBXLoggerCallback):
    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, without_placeholders(result)[0])


class _MLflow(MLflowLoggerCallback):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped: dict[str, str] = {}  # trial id -> the status its last report told

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        kept, status = without_placeholders(result)
        if status is not None:
            self.stopped[trial.trial_id] = status
        super().log_trial_result(iteration, trial, kept)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        super().log_trial_end(trial, failed=failed or self.stopped.pop(trial.trial_id, None) in FAILED)


def tracker_callbacks(sweep_id: str, mlflow_uri: str | None = None) -> list:
    callbacks = [_TensorBoard()]
    if mlflow_uri:
        callbacks.append(_MLflow(tracking_uri=mlflow_uri, experiment_name=sweep_id, tags={"sweep": sweep_id}))
    return callbacks
