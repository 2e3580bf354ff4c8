"""What a trial of ``workers: N > 1`` adds to the one trainable: a Ray Train data-parallel group.

The trial's own steps (placed on its resources, resumed, one report per epoch, the stopped trial's
last report) are :mod:`._trainable`'s; this module only starts the group, forwards its reports and
frees its placement.

Ray Train V2's pattern for Tune ("Hyperparameter Tuning with Ray Tune" in the Train guide): the
Tune trial function builds a :class:`~ray.train.torch.TorchTrainer` and calls ``fit()``; the Train
controller starts ``N`` workers with the process group set up (gloo on CPUs, NCCL on GPUs), each
worker runs :func:`worker_loop`, and every report goes back to Tune. Ray's own
``TuneReportCallback`` forwards metrics and a checkpoint *path* only; here the Tune trial
re-reports each Train checkpoint as a Tune checkpoint (:class:`_Forward` + :func:`run_group`),
so everything a one-worker trial relies on holds unchanged: the store callback reads the trial's
resolved config and history from its latest checkpoint, ASHA and the searcher see the same report
keys, and a retried or resumed trial (``Tuner.restore`` after a driver kill, a lost node) starts
from its latest Tune checkpoint, which every worker loads.

Process groups: Ray Train's default group is gloo (a GPU in the resources may be logical, as on the
loopback test cluster, where NCCL cannot start); workers that see a CUDA device run the training
collectives in an NCCL group of their own.

Resources: the space's rule gives each *worker's* CPU and GPU; the Tune trial itself (the trainer's
driver) holds only ``TRAIN_DRIVER_CPU`` (:mod:`tune_schane.space.search_space`). Ray places the workers
(``PACK``: one node when they fit, several when a node cannot hold them all), so a trial spans nodes
when its resources say so.

Statuses: a diverged loss and the simulated OOM are decided on the global batch, so every worker
stops at the same step and rank 0 reports the status with a checkpoint, as a one-worker trial
does; a real out-of-memory error on one worker fails the Train job, which becomes status ``oom``
here; any other worker failure errors the trial (Tune retries it from its checkpoint).

A Train job belongs to its Tune trial's process: when Tune stops the trial (ASHA), the trial's
actor goes and the controller, its workers and their placement group with it. The driver turns
actor reuse off for spaces with such trials (:func:`tune_schane.ray_tune._driver.run_sweep`).
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from ..finetune.config import TrialConfig
from ._private_apis import ray_placement_group, torch_trainer_without_pg_cleaner
from ._trainable import (
    ERROR_KEY,
    GPU_IDS_KEY,
    PLACEMENT_KEY,
    STATUS_KEY,
    WORKER_NODES_KEY,
    placed_trial,
    report_epochs,
    report_with_checkpoint,
    resume,
    stopped_metrics,
)

if TYPE_CHECKING:
    from ..finetune.train import TrialStopped


class ReleaseTrainResources(tune.Callback):
    """On the sweep's driver: remove a data-parallel trial's worker placement group when the trial ends.

    A Train job's placement group lives as long as the *job* (the sweep's driver), not as long as its
    controller. When Tune stops a trial early (ASHA) it ends the trial's actor and with it the
    controller and the workers, but the reservation would stay until the sweep ends and starve the
    next data-parallel trials. Ray Train's own ``PlacementGroupCleaner`` removes it by watching the
    controller through the State API, which needs the dashboard (``ray[default]``); without it that
    detached actor warns every second and outlives the sweep, so :func:`._private_apis.torch_trainer_without_pg_cleaner`
    leaves it out
    and this callback does its job from the id that rank 0 reports. Removing a group that the
    controller already removed (a trial that ended normally) is a no-op.
    """

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _release(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        _release(trial)


def _release(trial) -> None:
    from ray.util.placement_group import placement_group_table, remove_placement_group

    pg_hex = (trial.last_result or {}).get(PLACEMENT_KEY)
    if not pg_hex:
        return
    group = ray_placement_group(pg_hex)
    try:
        if placement_group_table(group).get("state") not in (None, "REMOVED"):
            remove_placement_group(group)
    except Exception:  # already gone, or the GCS answered late: nothing left to free
        pass


class _Forward(ray.train.UserCallback):
    """In the Train controller (on the Tune trial's node): each report of rank 0 onto a queue for Tune."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        self.queue.put((metrics[0], checkpoint))


def run_group(config: dict[str, Any], trial_config: TrialConfig) -> None:
    """The Tune trial function's body for ``trial_config.workers > 1`` (see the module docstring)."""
    from ray.train.torch import TorchConfig
    from ray.util.queue import Queue

    resources = dict(config.get("resources", {}))
    cpu, gpu = float(resources.get("cpu", 1)), float(resources.get("gpu", 0))
    per_worker = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    reports = Queue(actor_options={"num_cpus": 0})
    storage = tune.get_context().get_storage()
    run_name = f"train-{uuid.uuid4().hex[:8]}"  # one per attempt: a retry never picks up an old run's state
    loop_config = {"trial": trial_config.to_dict(), "resources": resources, "resume": tune.get_checkpoint()}
    trainer = torch_trainer_without_pg_cleaner()(
        worker_loop, train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=trial_config.workers, use_gpu=gpu > 0,
                                               resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="gloo"),  # NCCL for the training collectives: see worker_loop
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage.trial_fs_path, storage_filesystem=storage.storage_filesystem,
            callbacks=[_Forward(reports)], failure_config=ray.train.FailureConfig(max_failures=0),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)))
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the trial's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    last: dict[str, Any] = {}
    while True:
        try:
            metrics, checkpoint = reports.get(timeout=0.5)
        except stdlib_queue.Empty:  # ray.util.queue.Empty subclasses it
            if thread.is_alive() or not reports.empty():
                continue
            break
        last = metrics
        forwarded = tune.Checkpoint(checkpoint.path, checkpoint.filesystem) if checkpoint is not None else None
        tune.report(metrics, checkpoint=forwarded)
    thread.join()
    _drop_run(storage.storage_filesystem, f"{storage.trial_fs_path}/{run_name}")
    error = outcome.get("error")
    if error is None:
        return
    failures = getattr(error, "worker_failures", None) or {}
    from ..finetune.train import is_out_of_memory

    if not any(is_out_of_memory(exc) or "out of memory" in str(exc).lower() for exc in failures.values()):
        raise error
    # One worker ran out of memory and the job ended: the trial ends `oom`, never retried smaller.
    message = f"out of memory at batch size {trial_config.batch_size} on one of {trial_config.workers} workers"
    tune.report({**stopped_metrics(float(last.get("epoch", 0.0)) + 1.0), STATUS_KEY: "oom", ERROR_KEY: message})


def _drop_run(filesystem, path: str) -> None:
    """The Train run's own folder: every checkpoint in it was copied into the Tune trial's."""
    try:
        filesystem.delete_dir(path)
    except OSError:
        pass


def worker_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: its share of every global batch (tune_schane/finetune/distributed.py).

    The trial's steps are the one-worker trial's (:mod:`._trainable`); what differs: the device Ray
    Train gives the worker, the process group, every worker calling report (a barrier) with rank 0's
    checkpoint, and a real OOM ending the job.
    """
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device

    from ..finetune.distributed import Replica

    # get_device() names a CUDA device for every GPU Ray assigned, logical ones included.
    device = get_device() if torch.cuda.is_available() else torch.device("cpu")
    # Ray sets up a gloo group (a GPU in the resources may be a logical one, as on the test cluster);
    # on real GPUs the gathers and all-reduces run in an NCCL group over the same workers.
    group = dist.new_group(backend="nccl") if device.type == "cuda" else None
    replica = Replica(dist.get_rank(), dist.get_world_size(), group)
    trial_config = TrialConfig.from_dict(loop_config["trial"]).resolved()
    trial = placed_trial(trial_config, loop_config["resources"], device, replica)
    resume(trial, loop_config.get("resume"))
    nodes: list[str] = [""] * replica.world_size
    dist.all_gather_object(nodes, ray.util.get_node_ip_address())
    placement_group = ray.util.get_current_placement_group()
    placement = {WORKER_NODES_KEY: ",".join(nodes), GPU_IDS_KEY: ",".join(str(g) for g in ray.get_gpu_ids()),
                 PLACEMENT_KEY: placement_group.id.hex() if placement_group is not None else "",
                 "started_at": time.time()}

    def report(metrics: dict[str, Any]) -> None:  # every worker calls it (a barrier); rank 0's checkpoint
        if replica.rank == 0:
            report_with_checkpoint(trial, metrics, ray.train.report)
        else:
            ray.train.report(metrics)

    # One worker's real OOM: the others may be inside a collective, so the job must end (run_group
    # turns it into status oom); the simulated one is decided on the global batch, by every worker.
    report_epochs(trial, placement, report, reraise=lambda stop: stop.status == "oom" and not _simulated(stop))


def _simulated(stop: TrialStopped) -> bool:
    """The injected OOM of TUNE_SCHANE_SIMULATE_OOM_AT_BATCH is decided on the global batch (every worker)."""
    return "simulated out of memory" in str(stop)
