"""Rows for the trial store, built the same way for single runs and for sweep trials."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from typing import Any

from .config import TrialConfig
from .outcomes import OBJECTIVE
from .provenance import git_commit, versions_json


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
