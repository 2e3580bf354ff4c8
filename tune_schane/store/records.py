"""Rows for the trial store, built the same way for single runs and for sweep trials.

One path from a trial to the store: the trial writes its resolved config and its history beside its
checkpoint (:meth:`tune_schane.finetune.trial.Trial.write_outputs`), :func:`read_outputs` reads them back
from any ``pyarrow`` filesystem (a Ray checkpoint may live on shared storage), and
:func:`record_trial` writes the epochs and then the trial row. ``tune-schane train``, the sweep's
store callback and its reconciliation after a resume all call :func:`record_trial`.
"""

from __future__ import annotations

import json
import math
import platform
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml

from ..finetune.config import TrialConfig, field_hints, field_types
from ..finetune.outcomes import (
    CONFIG_FILE,
    EVALUATION_FILE,
    HISTORY_FILE,
    METRIC_KEYS,
    OBJECTIVE,
    TEST_METRICS,
    final_of,
    last_count,
    objective_of,
)
from .provenance import git_commit, versions_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.fs

    from .trial_store import TrialStore


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
    stage: str | None = None,
    confirm_job: str | None = None,
    evaluation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One trials-table row (see trials/README.md for the schema).

    ``evaluation`` is what the trial wrote in ``evaluation.json`` (:meth:`tune_schane.finetune.trial.Trial.evaluation`):
    where its val images came from and, for a confirm trial, its one score on the sealed test split.
    """
    return {
        **evaluation_columns(evaluation),
        "stage": stage,
        "confirm_job": confirm_job,
        "sweep_id": sweep_id,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        "config": config.to_dict(),
        "objective_name": objective,
        "objective_mode": mode,
        "best_objective": objective_of(history, objective, mode, config),
        "final_objective": final_of(history, objective),
        "epochs_run": len(history),
        "steps_run": last_count(history, "steps"),
        "samples_seen": last_count(history, "samples"),
        "wall_seconds": wall_seconds,
        "resources_cpu": resources_cpu,
        "resources_gpu": resources_gpu,
        "node": node or platform.node(),
        "versions": versions_json(),
        "commit": git_commit(),
        "params": json.dumps(params or {}, sort_keys=True, default=str),
    }


def evaluation_columns(evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The trial row's split and test columns from a trial's ``evaluation.json`` (all null when absent)."""
    evaluation = evaluation or {}
    splits, test = evaluation.get("splits") or {}, evaluation.get("test") or {}

    def number(mapping: dict, key: str, kind: type) -> Any:
        value = mapping.get(key)
        return kind(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    return {"val_from": splits.get("val_from"), "val_images": number(splits, "val_images", int),
            **{key: number(test, key, float) for key in TEST_METRICS},
            "test_epoch": number(test, "test_epoch", int), "test_images": number(test, "test_images", int),
            "test_epoch_pick": test.get("test_epoch_pick")}


def read_evaluation(filesystem: pyarrow.fs.FileSystem, folder: str) -> dict[str, Any] | None:
    """The ``evaluation.json`` a trial wrote into ``folder`` (None when absent: trials of older versions)."""
    try:
        with filesystem.open_input_stream(f"{folder}/{EVALUATION_FILE}") as src:
            data = json.loads(src.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plain(value: Any) -> Any:
    """A YAML-safe Python scalar from a store cell: numpy/pandas scalars unwrapped; NaN, None, NA and NaT -> None.

    A null config cell is a conditional parameter the trial did not use (τ for ce, λ for supcon).
    """
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def config_from_row(row: pd.Series) -> TrialConfig:
    """The trial's :class:`TrialConfig` from its ``config_*`` columns, validated and resolved.

    Null columns become None; a null in a field that may not be None (a column added to TrialConfig
    after the trial was written, read back as null) falls back to the field's default. Columns of
    fields TrialConfig no longer has are ignored.
    """
    hints = field_hints()
    data: dict[str, Any] = {}
    for name, kind in field_types().items():
        column = f"config_{name}"
        value = plain(row.get(column)) if column in row.index else None
        if value is None:
            if type(None) in typing.get_args(hints[name]) and column in row.index:
                data[name] = None
            continue
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        data[name] = value
    return TrialConfig.from_dict(data, source=f"trial {row.get('trial_id')}").resolved()


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
