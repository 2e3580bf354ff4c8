"""The tools a sweep writes to besides its store, checked before Ray starts (no Ray here).

- Optuna studies in a storage (``--optuna-storage`` or the space's ``optuna_storage``):
  :mod:`tune_schane.space.storage`;
- MLflow (``--mlflow URI``): Ray's own ``MLflowLoggerCallback`` on the driver, one run per trial in
  the experiment named after the sweep (:mod:`tune_schane.ray_tune._trackers`);
- TensorBoard: Ray's ``TBXLoggerCallback``, one event file per trial in its folder under the Ray
  storage (``<storage>/<sweep>/trial_<id>/events.out.tfevents.*``), always on.

A ``--resume`` continues with the trackers the sweep started with: Ray restores its searcher (and
so the Optuna storage) and its callbacks (and so the MLflow URI) from the interrupted run.
"""

from __future__ import annotations

import dataclasses
import sys

from ..errors import BadInput
from ..space.search_space import SearchSpace
from ..space.storage import absolute, check_storage

MLFLOW_HINT = "pip install mlflow-skinny (the client; see pyproject.toml's test extra)"


def check_trackers(space: SearchSpace, sweep_id: str, *, optuna_storage: str | None, mlflow: str | None,
                   resume: bool) -> SearchSpace:
    """The space with ``--optuna-storage`` applied, once the storage and the MLflow URI were found usable."""
    if optuna_storage is not None:
        if space.searcher == "grid":
            raise BadInput("--optuna-storage: the grid searcher has no Optuna study to store; use optuna or random")
        space = dataclasses.replace(space, optuna_storage=optuna_storage)
    if space.optuna_storage is not None:
        space = dataclasses.replace(space, optuna_storage=absolute(space.optuna_storage))
        check_storage(space.optuna_storage, sweep_id, resume=resume)
    if mlflow is not None:
        if resume:
            print("tune-schane: note: --resume keeps the MLflow logging the sweep started with; --mlflow is "
                  "not read again", file=sys.stderr)
        else:
            check_mlflow(mlflow)
    return space


def check_mlflow(uri: str) -> None:
    """The tracking URI answers (a file store MLflow refuses, a bad URI, a missing client: one line)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise BadInput(f"--mlflow {uri}: the mlflow package is not installed ({MLFLOW_HINT})") from None
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MlflowException, an unknown scheme, an unreachable server, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"--mlflow {uri}: {first}") from None


def tracker_lines(space: SearchSpace, sweep_id: str, storage: str, mlflow: str | None) -> list[str]:
    """What the sweep prints about where its trackers write."""
    lines = [f"  tensorboard: tensorboard --logdir {storage}/{sweep_id}"]
    if space.optuna_storage is not None:
        lines.append(f"  optuna studies: {sweep_id}/<cell> in {space.optuna_storage} "
                     f"(optuna-dashboard {space.optuna_storage})")
    if mlflow is not None:
        lines.append(f"  mlflow: experiment {sweep_id} at {mlflow}")
    return lines
