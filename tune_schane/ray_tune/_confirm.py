"""The confirm stage on Ray: a fixed list of jobs (tune_schane.search.confirm), FIFO, kill-safe through the store.

Runs like a sweep: the same trainable, resources by batch size, the store callback, ``--address`` and
``--resume``. Its Ray experiment is ``<sweep>-confirm`` beside the sweep's; its rows go into the sweep's
own id with ``stage = confirm``.

Exactly once: the searcher hands out the jobs in order and, when it starts or is restored from Ray's
snapshot, skips every job whose key the store already holds with an ending. A job handed out and ended
between Ray's last snapshot and a SIGKILL is in the store, so the resumed searcher does not hand it out
again; one handed out but unfinished is either resumed by Ray from its checkpoint (the snapshot knew it)
or handed out again (it did not, and no row exists), never both.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from ..faults import fault_point
from ..search.confirm import ConfirmJob, done_keys
from ..search.ledger import ResumeLedger
from ..space.search_space import SearchSpace
from ._driver import EXPERIMENT_STATE_PERIOD_S, _bundle, trial_dirname
from ._recording import StoreCallback, drop_sweep_checkpoints, reconcile_store
from ._searchers import PickledState
from ._train_group import ReleaseTrainResources
from ._trainable import CONFIG_KEY, JOB_KEY, STAGE_KEY, trainable


class ConfirmSearcher(PickledState, Searcher):
    """Hands out the confirm jobs in order, each once; the store says which are done."""

    def __init__(self, jobs: list[ConfirmJob], space: SearchSpace, store_uri: str, sweep_id: str) -> None:
        super().__init__(metric=space.objective_metric, mode=space.objective_mode)
        self.jobs, self.space, self.store_uri, self.sweep_id = jobs, space, store_uri, sweep_id
        self.handed: set[str] = set()  # job keys handed out (running or ended)
        self.skip_stored()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.skip_stored()

    def skip_stored(self) -> None:
        """Count as handed out every job the store holds with an ending (see the module docstring)."""
        rows = ResumeLedger.read(self.store_uri, self.sweep_id).trials
        if not rows.empty:
            self.handed |= done_keys(rows)

    def suggest(self, trial_id: str) -> dict | None:
        job = next((job for job in self.jobs if job.key not in self.handed), None)
        if job is None:
            return Searcher.FINISHED
        fault_point("sample")
        self.handed.add(job.key)
        return {CONFIG_KEY: job.config.to_dict(), "params": job.ray_fields(), STAGE_KEY: "confirm",
                JOB_KEY: job.key, "resources": self.space.resources_for(job.config.batch_size)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def experiment_name(sweep_id: str) -> str:
    return f"{sweep_id}-confirm"


def run_confirm(jobs: list[ConfirmJob], space: SearchSpace, *, sweep_id: str, store_uri: str, storage_path: str,
                resume: bool = False, max_failures: int = 2, verbose: int = 1) -> tune.ResultGrid | None:
    """Run the jobs the store does not hold yet; with ``resume``, continue the interrupted Ray experiment.

    Without ``resume`` an earlier confirm experiment's Ray folder is replaced (its finished jobs are in
    the store and are skipped; an unfinished one starts again from scratch). Returns None when every job
    is already in the store.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    name = experiment_name(sweep_id)
    experiment = os.path.join(storage_path, name)
    budget = dataclasses.replace(space, max_epochs=max(job.config.epochs for job in jobs))
    resources = tune.with_resources(trainable, lambda config: tune.PlacementGroupFactory([_bundle(config)]))
    if resume and os.path.isdir(experiment) and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable=resources, resume_unfinished=True, resume_errored=True)
    else:
        searcher = ConfirmSearcher(jobs, budget, store_uri, sweep_id)
        if all(job.key in searcher.handed for job in jobs):
            return None
        if os.path.isdir(experiment) and "://" not in storage_path:
            shutil.rmtree(experiment)
        callback = StoreCallback(store_uri, sweep_id, budget, prune_checkpoints=True)
        run_config = tune.RunConfig(
            name=name, storage_path=storage_path, callbacks=[callback, ReleaseTrainResources()], verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
        tuner = tune.Tuner(
            resources,
            tune_config=tune.TuneConfig(metric=space.objective_metric, mode=space.objective_mode,
                                        search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent),
                                        scheduler=FIFOScheduler(), num_samples=len(jobs),
                                        reuse_actors=space.max_workers() == 1, trial_dirname_creator=trial_dirname),
            run_config=run_config)
    results = tuner.fit()
    reconcile_store(results, store_uri, sweep_id, budget)
    drop_sweep_checkpoints(results, keep="none", metric=space.objective_metric, mode=space.objective_mode)
    return results
