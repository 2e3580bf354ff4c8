"""Best-config export: YAML files that ``tune-schane train`` reruns, with where they came from.

The exported config is the trial's full resolved config (every ``config_*`` column), including
``epochs`` as the trial was configured (``config_epochs``, not ``epochs_run``) and its ``seed``, so
``tune-schane train best.yaml`` repeats the same run. The number that rerun reproduces is the
trial's ``final_objective`` (the value at its last epoch), not ``best_objective`` (the best epoch,
which the rerun also reaches but which selection on it biases upwards); the provenance says so.
Only completed trials are exported: a pruned trial's best needs fewer epochs than it was
configured for, so rerunning its config would not reproduce anything recorded.
"""

from __future__ import annotations

import json
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tune_schane.config import TrialConfig, dump_config, field_types
from tune_schane.errors import BadInput

from .sensitivity import objective_mode
from .values import plain

GROUPS = {"loss": "config_loss", "batch_size": "config_batch_size"}


def best_trials(trials: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """The best completed trial overall (one row) or per group (``by`` = ``loss`` or ``batch_size``).

    Best follows ``objective_mode``; ties go to the earliest (smallest) ``trial_id`` so the choice is
    stable across reruns of the analysis. Empty when there is no completed trial with an objective.
    """
    if by is not None and by not in GROUPS:
        raise BadInput(f"--by {by!r}: expected one of {sorted(GROUPS)}")
    objective = pd.to_numeric(trials["best_objective"], errors="coerce")
    done = trials[(trials["status"].astype(str) == "completed") & objective.notna()].copy()
    mode = objective_mode(done)
    done["_objective"] = pd.to_numeric(done["best_objective"]).astype("float64")
    done["_tid"] = done["trial_id"].astype(str)
    ranked = done.sort_values(["_objective", "_tid"], ascending=[mode == "min", True], kind="stable")
    if by is not None:
        ranked = ranked.groupby(GROUPS[by], sort=True).head(1).sort_values(GROUPS[by], kind="stable")
    else:
        ranked = ranked.head(1)
    return ranked.drop(columns=["_objective", "_tid"]).reset_index(drop=True)


def config_from_row(row: pd.Series) -> TrialConfig:
    """The trial's :class:`TrialConfig` from its ``config_*`` columns, validated and resolved.

    Null columns become None; a null in a field that may not be None (a column added to TrialConfig
    after the trial was written, read back as null) falls back to the field's default. Columns of
    fields TrialConfig no longer has are ignored.
    """
    hints = typing.get_type_hints(TrialConfig)
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


def provenance_of(row: pd.Series) -> dict[str, Any]:
    """Where an exported config came from, and which number a rerun should reproduce."""
    try:
        versions = json.loads(row.get("versions") or "{}")
    except (TypeError, ValueError):
        versions = {}
    epochs_run, configured = plain(row.get("epochs_run")), plain(row.get("config_epochs"))
    full = epochs_run is not None and configured is not None and int(epochs_run) >= int(configured)
    return {
        "sweep_id": str(row["sweep_id"]),
        "trial_id": str(row["trial_id"]),
        "status": str(row["status"]),
        "objective_name": str(plain(row.get("objective_name")) or "val_top1"),
        "objective_mode": str(plain(row.get("objective_mode")) or "max"),
        "best_objective": plain(row.get("best_objective")),
        "final_objective": plain(row.get("final_objective")),
        "epochs_run": epochs_run,
        "commit": plain(row.get("commit")),
        "versions": versions if isinstance(versions, dict) else {},
        "reproduce": (
            "`tune-schane train` on this file reruns the trial (same seed and epochs); compare its final "
            "objective with final_objective (up to GPU nondeterminism)"
            if full else "the trial stopped before its configured epochs: a rerun runs all of them and "
            "is not comparable with the recorded objective"
        ),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def export_name(by: str | None, row: pd.Series) -> str:
    """``best.yaml``, ``best-loss-<family>.yaml`` or ``best-batch_size-<n>.yaml``."""
    if by is None:
        return "best.yaml"
    return f"best-{by}-{plain(row[GROUPS[by]])}.yaml"


def export_best(trials: pd.DataFrame, out: str | Path, by: str | None = None) -> list[Path]:
    """Write the best config(s) into folder ``out`` with :func:`tune_schane.config.dump_config`.

    One file per group (see :func:`export_name`); returns the paths written, in group order.
    """
    out = Path(out)
    best = best_trials(trials, by)
    if best.empty:
        raise BadInput("no completed trial with an objective to export")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for _, row in best.iterrows():
        path = out / export_name(by, row)
        dump_config(config_from_row(row), path, provenance_of(row))
        paths.append(path)
    return paths
