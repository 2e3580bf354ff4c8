"""Best-config export: YAML files that ``tune-schane train`` reruns, with where they came from.

The exported config is the trial's full resolved config (every ``config_*`` column), including
``epochs`` as the trial was configured and its ``seed``. Rerunning it on the same device gives the
same ``final_objective`` up to floating-point nondeterminism; for a pruned trial the best would
need fewer epochs than configured, so only completed trials are exported.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tune_schane.config import TrialConfig, dump_config, field_types

GROUPS = {"loss": "config_loss", "batch_size": "config_batch_size"}


def best_trials(trials: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """The best completed trial overall (one row) or per group; ties go to the smallest trial id."""
    done = trials[(trials["status"] == "completed") & trials["best_objective"].notna()]
    mode = str(done["objective_mode"].iloc[0]) if len(done) else "max"
    ranked = done.sort_values(["best_objective", "trial_id"], ascending=[mode == "min", True])
    if by is None:
        return ranked.head(1).reset_index(drop=True)
    if by not in GROUPS:
        raise ValueError(f"by must be one of {sorted(GROUPS)}")
    return ranked.groupby(GROUPS[by], sort=True).head(1).sort_values(GROUPS[by]).reset_index(drop=True)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def config_from_row(row: pd.Series) -> TrialConfig:
    data = {}
    for name, kind in field_types().items():
        value = _plain(row.get(f"config_{name}"))
        if value is not None and kind is int:
            value = int(value)
        data[name] = value
    return TrialConfig.from_dict(data, source=f"trial {row.get('trial_id')}").resolved()


def provenance_of(row: pd.Series) -> dict[str, Any]:
    try:
        versions = json.loads(row.get("versions") or "{}")
    except ValueError:
        versions = {}
    return {
        "sweep_id": str(row["sweep_id"]), "trial_id": str(row["trial_id"]), "status": str(row["status"]),
        "objective_name": str(row.get("objective_name") or "val_top1"),
        "objective_mode": str(row.get("objective_mode") or "max"),
        "best_objective": _plain(row.get("best_objective")), "final_objective": _plain(row.get("final_objective")),
        "epochs_run": _plain(row.get("epochs_run")), "commit": _plain(row.get("commit")), "versions": versions,
        "reproduce": "tune-schane train THIS_FILE gives final_objective again (same seed, same device)",
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def export_best(trials: pd.DataFrame, out: str | Path, by: str | None = None) -> list[Path]:
    """Write ``best.yaml`` (or ``best-<by>-<value>.yaml`` per group) into folder ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for _, row in best_trials(trials, by).iterrows():
        name = "best.yaml" if by is None else f"best-{by}-{_plain(row[GROUPS[by]])}.yaml"
        path = out / name
        dump_config(config_from_row(row), path, provenance_of(row))
        paths.append(path)
    return paths
