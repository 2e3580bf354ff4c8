"""Rows for the trial store, built the same way for single runs and for sweep trials.

One path from a trial to the store: the trial writes its resolved config and its history beside its
checkpoint (:meth:`tune_schane.trial.Trial.write_outputs`), :func:`read_outputs` reads them back
from any ``pyarrow`` filesystem (a Ray checkpoint may live on shared storage), and
:func:`record_trial` writes the epochs and then the trial row. ``tune-schane train``, the sweep's
store callback and its reconciliation after a resume all call :func:`record_trial`.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml

from .config import TrialConfig
from .outcomes import CONFIG_FILE, HISTORY_FILE, METRIC_KEYS, OBJECTIVE
from .provenance import git_commit, versions_json

if TYPE_CHECKING:
    import pyarrow.fs

    from .store import TrialStore


def _finite(history: Sequence[dict], metric: str) -> list[float]:
    return [h[metric] for h in history if isinstance(h.get(metric), (int, float)) and math.isfinite(h[metric])]


def best_of(history: Sequence[dict], metric: str, mode: str) -> float:
    values = _finite(history, metric)
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def final_of(history: Sequence[dict], metric: str) -> float:
    values = _finite(history, metric)
    return values[-1] if values else math.nan


def trial_row(
    *,
    sweep_id: str,
    trial_id: str,
    status: str,
    config: TrialConfig,
    history: Sequence[dict],
    error: str | None = None,
    objective: str = OBJECTIVE,
    mode: str = "max",
    wall_seconds: float = math.nan,
    resources_cpu: float = math.nan,
    resources_gpu: float = 0.0,
    node: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One trials-table row (see trials/README.md for the schema)."""
    return {
        "sweep_id": sweep_id,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        "config": config.to_dict(),
        "objective_name": objective,
        "objective_mode": mode,
        "best_objective": best_of(history, objective, mode),
        "final_objective": final_of(history, objective),
        "epochs_run": len(history),
        "wall_seconds": wall_seconds,
        "resources_cpu": resources_cpu,
        "resources_gpu": resources_gpu,
        "node": node or platform.node(),
        "versions": versions_json(),
        "commit": git_commit(),
        "params": json.dumps(params or {}, sort_keys=True, default=str),
    }


def epoch_rows(sweep_id: str, trial_id: str, history: Sequence[dict]) -> list[dict[str, Any]]:
    """One epochs-table row per reported epoch."""
    return [{"sweep_id": sweep_id, "trial_id": trial_id, **h, "epoch": int(h["epoch"])} for h in history]


def read_outputs(filesystem: pyarrow.fs.FileSystem, folder: str) -> tuple[TrialConfig, list[dict]] | None:
    """The resolved config and per-epoch metrics a trial wrote into ``folder``; None when they are not there."""
    try:
        with filesystem.open_input_stream(f"{folder}/{CONFIG_FILE}") as src:
            config = TrialConfig.from_dict(yaml.safe_load(src.read()), source=f"{folder}/{CONFIG_FILE}")
        with filesystem.open_input_stream(f"{folder}/{HISTORY_FILE}") as src:
            history = json.loads(src.read())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return config, [{key: float(h.get(key, math.nan)) for key in METRIC_KEYS} for h in history]


def record_trial(
    store: TrialStore,
    *,
    sweep_id: str,
    trial_id: str,
    status: str,
    config: TrialConfig,
    history: Sequence[dict],
    resources: dict[str, float] | None = None,
    **row: Any,
) -> None:
    """Write one trial into the store: its epochs first, so a reader that sees the row also sees them.

    ``resources`` is ``{"cpu": x, "gpu": y}`` as a space's resource rule gives it; ``row`` holds the
    other keyword arguments of :func:`trial_row` (error, objective, mode, wall_seconds, node, params).
    """
    resources = resources or {}
    store.write_epochs(epoch_rows(sweep_id, trial_id, history))
    store.write_trials([trial_row(sweep_id=sweep_id, trial_id=trial_id, status=status, config=config,
                                  history=history, resources_cpu=float(resources.get("cpu", math.nan)),
                                  resources_gpu=float(resources.get("gpu", 0.0)), **row)])
