"""Starting or joining Ray, and running (or resuming) one sweep with the pieces of this package."""

from __future__ import annotations

import logging
import os

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from ..space.search_space import TRAIN_DRIVER_CPU, SearchSpace
from ._anchor import ray_optuna_asha
from ._connect import checked_address, shipped_code
from ._recording import StoreCallback, drop_sweep_checkpoints, reconcile_store, record_told_trials
from ._scheduler import CellASHA
from ._searchers import CellSearcher
from ._trackers import tracker_callbacks
from ._train_group import ReleaseTrainResources
from ._trainable import CONFIG_KEY, trainable


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None,
             ship_code: bool = True) -> dict:
    """Join ``address`` (checked first, code shipped: see connect.py) or start a private local Ray.

    Returns the cluster's resources. The local Ray binds its dashboard to 127.0.0.1.
    """
    if not ray.is_initialized():
        if address:
            target = checked_address(address)
            with shipped_code(ship_code) as runtime_env:
                ray.init(address=target, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:  # "local": never the cluster in ray_current_cluster or RAY_ADDRESS (connect.py)
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     dashboard_host="127.0.0.1", logging_level=logging.WARNING)
    return ray.cluster_resources()


# Ray saves the experiment state (each trial and its latest checkpoint, and the searcher) at most
# every TUNE_GLOBAL_CHECKPOINT_S seconds. Two things go wrong for a driver killed between two saves:
# - a trial started after the last save is unknown to the resumed sweep, which samples its config
#   again under a new trial id; if it had already finished, the store holds it twice (seen with a
#   5 s period: the kill in the searcher came after a 1-epoch trial finished between two saves);
# - a trial resumes from the checkpoint the last save named; if `num_to_keep` had deleted it since,
#   it errors with "checkpoint does not exist on storage anymore".
# Saving every second narrows both windows; what is left is closed elsewhere: the restored searcher
# books trials the store holds but its saved state never handed out (CellSearcher.restore), a trial's
# checkpoints are only deleted once a saved state knows it ended (StoreCallback), and a trial that had
# ended before the resume keeps its row if the stale state runs it again (StoreCallback.settled). The cost is one
# small JSON write per second on the driver (Ray warns if a save takes long; on an object store,
# raise it with TUNE_GLOBAL_CHECKPOINT_S).
CHECKPOINTS_KEPT = 4
KEEP_CHECKPOINTS = ("best", "none", "all")  # what a finished sweep leaves (run_sweep's keep_checkpoints)
EXPERIMENT_STATE_PERIOD_S = "1"


def run_sweep(
    space: SearchSpace,
    *,
    sweep_id: str,
    store_uri: str,
    storage_path: str,
    resume: bool = False,
    max_failures: int = 2,
    verbose: int = 1,
    keep_checkpoints: str = "best",
    mlflow_uri: str | None = None,
    callbacks: list | None = None,
    strategy: str = "cells",
) -> tuple[tune.ResultGrid, CellSearcher | None]:
    """Run (or resume) a sweep; every trial ends up in the store (see CHECKPOINTS_KEPT for resume safety).

    Returns Ray's results and the searcher (None on resume: Ray restores its own copy), whose
    Optuna studies tests inspect. ``keep_checkpoints``: ``"best"`` (the best trial's last checkpoint
    stays), ``"none"`` or ``"all"`` (Ray's own rule: CHECKPOINTS_KEPT per trial). While trials run,
    CHECKPOINTS_KEPT stays in force (resume safety); an ended trial keeps only its latest once its row
    is in the store and a saved experiment state knows it ended (see StoreCallback), and the sweep's
    end applies ``keep_checkpoints``.
    Trackers (TensorBoard always, MLflow with ``mlflow_uri``, the Optuna storage of
    ``space.optuna_storage``): :mod:`tune_schane.search.tracking`; a resume keeps the ones the sweep started with.
    ``callbacks``: more Ray callbacks (e.g. ``WandbLoggerCallback``, README "Use with your tools").
    ``strategy``: ``"cells"`` (this package's search) or ``"ray-optuna"``, the benchmark's anchor (anchor.py).
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    resources = tune.with_resources(
        trainable, lambda config: tune.PlacementGroupFactory([_bundle(config)]))
    if keep_checkpoints not in KEEP_CHECKPOINTS:
        raise ValueError(f"keep_checkpoints: {keep_checkpoints!r} is not one of {KEEP_CHECKPOINTS}")
    callback = StoreCallback(store_uri, sweep_id, space, prune_checkpoints=keep_checkpoints != "all")
    callbacks = [callback, ReleaseTrainResources(), *tracker_callbacks(sweep_id, mlflow_uri), *(callbacks or [])]
    run_config = tune.RunConfig(
        name=sweep_id, storage_path=storage_path, callbacks=callbacks, verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT))
    experiment = os.path.join(storage_path, sweep_id)
    cell_searcher = None
    if resume:
        record_told_trials(experiment, store_uri, sweep_id, space)  # before Ray restores the searcher
        tuner = tune.Tuner.restore(experiment, trainable=resources, resume_unfinished=True,
                                   resume_errored=True)
    else:
        if strategy == "ray-optuna":
            searcher, scheduler, total = ray_optuna_asha(space)
        elif strategy == "cells":
            cell_searcher = CellSearcher(space, sweep_id, store_uri)
            searcher = ConcurrencyLimiter(cell_searcher, max_concurrent=space.max_concurrent)
            scheduler = CellASHA(space, store_uri, sweep_id) if space.scheduler == "asha" else FIFOScheduler()
            total = len(space.cells()) * space.num_samples * space.repeats
        else:
            raise ValueError(f"strategy: {strategy!r} is not 'cells' or 'ray-optuna'")
        tuner = tune.Tuner(
            resources,
            tune_config=tune.TuneConfig(metric=space.objective_metric, mode=space.objective_mode,
                                        search_alg=searcher, scheduler=scheduler, num_samples=total,
                                        reuse_actors=space.max_workers() == 1,  # see _train_group.py
                                        trial_dirname_creator=trial_dirname),
            run_config=run_config)
    results = tuner.fit()
    reconcile_store(results, store_uri, sweep_id, space)
    if keep_checkpoints != "all":
        drop_sweep_checkpoints(results, keep=keep_checkpoints, metric=space.objective_metric,
                               mode=space.objective_mode)
    return results, cell_searcher


def trial_dirname(trial) -> str:
    """``trial_<id>``: hyperparameters live in the store, not in folder names (Ray's default repeats the config)."""
    return f"trial_{trial.trial_id}"


def _bundle(config: dict) -> dict:
    """The trial's own bundle; a data-parallel trial holds only its Train driver's (workers get theirs)."""
    if int(config[CONFIG_KEY].get("workers", 1)) > 1:
        return {"CPU": TRAIN_DRIVER_CPU}
    resources = config["resources"]
    bundle = {"CPU": float(resources.get("cpu", 1))}
    if resources.get("gpu"):
        bundle["GPU"] = float(resources["gpu"])
    return bundle


def ray_running() -> bool:
    """Whether this process is already connected to a Ray (a notebook's, a test session's)."""
    return ray.is_initialized()


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
