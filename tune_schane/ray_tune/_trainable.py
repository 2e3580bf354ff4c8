"""The trial under Ray Tune, and the keys of what it reports.

One trainable for every trial. Thin, as in Ray's own examples: config dict -> :class:`TrialConfig`,
the plain loop of :mod:`tune_schane.finetune.trial`, one report per epoch with every metric key every
time and a checkpoint (the model state plus the trial's outputs: resolved config and history, which
the store is written from). A trial that stops early (diverged, out of memory) makes one last report
that carries its status and a checkpoint too, so even a trial stopped inside its first epoch records
the config it ran.

The three steps every trial takes live here once, whoever runs them:

- :func:`placed_trial`: the trial as Ray placed it (threads from its CPU share, a memory budget from
  its share of the card);
- :func:`resume`: from the latest checkpoint, when there is one;
- :func:`report_epochs`: one report per epoch, and the last report of a stopped trial.

A ``workers: 1`` trial runs them in the Tune trial's own process (:func:`trainable`). A
``workers: N > 1`` trial is a Ray Train group (:mod:`._train_group`): what it adds is only what
differs (starting the group, forwarding rank 0's reports to Tune, freeing the group's placement).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from ..finetune.config import TrialConfig
from ..finetune.outcomes import METRIC_KEYS
from ..search.reports import CELL_KEY, CONFIG_KEY, STATUS_KEY, trial_status  # noqa: F401  (the keys Ray trials report)

if TYPE_CHECKING:  # torch and the trial load in the trial's process only: the sweep's driver never needs them
    import torch

    from ..finetune.train import TrialStopped
    from ..finetune.trial import Trial

ERROR_KEY = "trial_error"
GPU_IDS_KEY = "gpu_ids"  # "0,1": the GPU ids Ray assigned (CUDA_VISIBLE_DEVICES of the trial)
CODE_PATH_KEY = "code_path"  # the tune_schane folder the trial imported
STAGE_KEY = "stage"  # search (absent) or confirm: the store's `stage` column
JOB_KEY = "confirm_job"  # a confirm trial's job key (tune_schane.search.confirm): one row per key, ever
WORKER_NODES_KEY = "worker_nodes"  # "ip,ip": the node of each worker, in rank order (workers > 1)
PLACEMENT_KEY = "train_placement_group"  # hex id of a worker group's placement group (workers > 1)


def trainable(config: dict[str, Any]) -> None:
    """Run one trial under Ray Tune; resume from Tune's checkpoint when there is one."""
    trial_config = TrialConfig.from_dict(config[CONFIG_KEY]).resolved()
    if trial_config.workers > 1:  # a Ray Train group of data-parallel workers
        from ._train_group import run_group  # imports this module: only what differs lives there

        return run_group(config, trial_config)
    trial = placed_trial(trial_config, config.get("resources", {}))
    resume(trial, tune.get_checkpoint())
    # Which (logical) GPUs Ray gave this trial: reported so packing can be checked from the results;
    # and where its code came from (the shipped copy on a cluster, see connect.py).
    placement = {GPU_IDS_KEY: ",".join(str(g) for g in ray.get_gpu_ids()), "started_at": time.time(),
                 CODE_PATH_KEY: os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    report_epochs(trial, placement, lambda metrics: report_with_checkpoint(trial, metrics, tune.report))


def placed_trial(trial_config: TrialConfig, resources: dict[str, Any], device: torch.device | None = None,
                 replica=None) -> Trial:
    """The trial on the resources Ray gave it.

    Threads follow the CPU share unless the config names them (a reused worker keeps its first
    trial's thread count). With a GPU share and no ``memory_budget_mb``, the budget is that share of
    the card, so a batch that would not fit is gradient-cached, not failed. ``device`` (a Train
    worker's) overrides the config's when given.
    """
    import torch

    from ..finetune.trial import Trial

    changes: dict[str, Any] = {}
    if trial_config.num_threads is None:
        torch.set_num_threads(max(1, int(float(resources.get("cpu", 1)))))
    on_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    gpu_share = float(resources.get("gpu", 0.0))
    if trial_config.memory_budget_mb is None and gpu_share > 0 and on_cuda:
        card = torch.cuda.get_device_properties(device if device is not None else 0).total_memory / 2**20
        changes["memory_budget_mb"] = min(1.0, gpu_share) * card
    if device is not None:
        changes["device"] = str(device) if device.type == "cuda" else "cpu"
    return Trial(dataclasses.replace(trial_config, **changes), replica)


def resume(trial: Trial, checkpoint) -> None:
    """Load the trial's latest checkpoint (Tune's, handed to every worker of a group), if any."""
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trial.load_checkpoint(directory)


def report_epochs(trial: Trial, placement: dict[str, Any], report: Callable[[dict[str, Any]], None],
                  reraise: Callable[[TrialStopped], bool] = lambda stop: False) -> None:
    """Run the trial, one ``report`` per epoch; a stopped trial's last report carries its status.

    The objective of that last report is the worst possible value so the scheduler ranks it last;
    the store keeps the real (NaN) objective from the epochs. ``reraise(stop)`` says which stops
    must end the process instead (a worker's real OOM inside a collective).
    """
    from ..finetune.train import TrialStopped

    try:
        for metrics in trial.run():
            report({**metrics, **placement, STATUS_KEY: "running", ERROR_KEY: "", "reported_at": time.time()})
    except TrialStopped as stop:
        if reraise(stop):
            raise
        report({**stopped_metrics(trial.epoch + 1), **placement, STATUS_KEY: stop.status, ERROR_KEY: str(stop)})


def stopped_metrics(epoch: float) -> dict[str, float]:
    """Every metric key of a report, for a trial that stopped at ``epoch``: NaN, and -inf as the objective."""
    worst = {key: math.nan for key in METRIC_KEYS}
    worst.update(epoch=float(epoch), val_top1=-math.inf)
    return worst


def report_with_checkpoint(trial: Trial, metrics: dict[str, Any], report: Callable[..., None]) -> None:
    """``report`` (Tune's or Train's: the same Checkpoint class) with the trial's state as the checkpoint."""
    with tempfile.TemporaryDirectory() as directory:
        trial.save_checkpoint(directory)
        report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

