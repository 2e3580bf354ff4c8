"""Experiment trackers through Ray Tune's own logger callbacks (no logging code of ours).

- ``TBXLoggerCallback``: TensorBoard event files, one per trial in its folder
  (``<storage>/<sweep>/trial_<id>/events.out.tfevents.*``), every reported metric as a scalar
  ``ray/tune/<metric>`` per training iteration (= epoch); given explicitly so that
  ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`` (which drops Ray's default loggers) cannot drop it.
- ``MLflowLoggerCallback`` with ``--mlflow URI``: one run per trial in the experiment named after the
  sweep, the trial's config as params and every epoch's metrics at step = epoch. It runs on the
  driver, so the URI must be reachable from the driver only.

They sit beside :class:`~tune_schane.ray_tune.recording.StoreCallback` in ``RunConfig.callbacks``;
Ray calls each in turn and none depends on another. W&B works the same way (README: "Use with
your tools").
"""

from __future__ import annotations

from ray.tune.logger import TBXLoggerCallback


def tracker_callbacks(sweep_id: str, mlflow_uri: str | None = None) -> list:
    callbacks = [TBXLoggerCallback()]
    if mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=mlflow_uri, experiment_name=sweep_id,
                                              tags={"sweep": sweep_id}))
    return callbacks
