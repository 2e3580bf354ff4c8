"""The trial under Ray Tune, and the keys of what it reports.

Thin, as in Ray's own examples: config dict -> :class:`TrialConfig`, the plain loop of
:mod:`tune_schane.finetune.trial`, one report per epoch with every metric key every time and a checkpoint
(the model state plus the trial's outputs: resolved config and history, which the store is written
from). A trial that stops early (diverged, out of memory) makes one last report that carries its
status and a checkpoint too, so even a trial stopped inside its first epoch records the config it ran.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from typing import Any

import ray
import torch
from ray import tune

from ..finetune.config import TrialConfig
from ..finetune.outcomes import METRIC_KEYS
from ..finetune.train import TrialStopped
from ..finetune.trial import Trial
from ._train_workers import run_workers

STATUS_KEY = "trial_status"  # running | diverged | oom, in every report
ERROR_KEY = "trial_error"
GPU_IDS_KEY = "gpu_ids"  # "0,1": the GPU ids Ray assigned (CUDA_VISIBLE_DEVICES of the trial)
CONFIG_KEY = "trial_config"  # the TrialConfig as a dict, in the param space of every trial
CELL_KEY = "cell"  # index of the trial's grid cell, for the per-cell ASHA
CODE_PATH_KEY = "code_path"  # the tune_schane folder the trial imported
STAGE_KEY = "stage"  # search (absent) or confirm: the store's `stage` column
JOB_KEY = "confirm_job"  # a confirm trial's job key (tune_schane.search.confirm): one row per key, ever


def trainable(config: dict[str, Any]) -> None:
    """Run one trial under Ray Tune; resume from Tune's checkpoint when there is one."""
    trial_config = TrialConfig.from_dict(config[CONFIG_KEY]).resolved()
    if trial_config.workers > 1:  # a Ray Train job of data-parallel workers
        return run_workers(config, trial_config, status_key=STATUS_KEY, error_key=ERROR_KEY)
    resources = config.get("resources", {})
    if trial_config.num_threads is None:  # a reused worker keeps its first trial's thread count
        torch.set_num_threads(max(1, int(resources.get("cpu", 1))))
    gpu_share = float(resources.get("gpu", 0.0))
    if trial_config.memory_budget_mb is None and gpu_share > 0 and torch.cuda.is_available():
        # The trial's share of its card: a batch that would not fit is gradient-cached, not failed.
        card = torch.cuda.get_device_properties(0).total_memory / 2**20
        trial_config = dataclasses.replace(trial_config, memory_budget_mb=min(1.0, gpu_share) * card)
    trial = Trial(trial_config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trial.load_checkpoint(directory)
    # Which (logical) GPUs Ray gave this trial: reported so packing can be checked from the results;
    # and where its code came from (the shipped copy on a cluster, see connect.py).
    placement = {GPU_IDS_KEY: ",".join(str(g) for g in ray.get_gpu_ids()), "started_at": time.time(),
                 CODE_PATH_KEY: os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    try:
        for metrics in trial.run():
            _report(trial, {**metrics, **placement, STATUS_KEY: "running", ERROR_KEY: "", "reported_at": time.time()})
    except TrialStopped as stop:
        # A last report carries the status; the objective is the worst possible value so the
        # scheduler ranks it last. The store keeps the real (NaN) objective from the epochs.
        worst = {key: math.nan for key in METRIC_KEYS}
        worst.update(epoch=float(trial.epoch + 1), val_top1=-math.inf)
        _report(trial, {**worst, **placement, STATUS_KEY: stop.status, ERROR_KEY: str(stop)})


def _report(trial: Trial, metrics: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        trial.save_checkpoint(directory)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def trial_status(result: dict | None, error: bool, max_epochs: int) -> str:
    """How a Ray trial ended, from its last result: completed, pruned (stopped early), diverged, oom or error."""
    if error:
        return "error"
    if not result:
        return "pruned"
    status = result.get(STATUS_KEY, "running")
    if status != "running":
        return status
    return "completed" if int(result.get("epoch", 0)) >= max_epochs else "pruned"
