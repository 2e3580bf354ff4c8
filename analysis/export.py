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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tune_schane.errors import BadInput
from tune_schane.finetune.config import dump_config
from tune_schane.store.records import config_from_row

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
    from .confirmed import search_part

    trials = search_part(trials)  # a config is chosen on val by the search, never on test by its confirm rows
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


def confirmed_numbers(trials: pd.DataFrame, trial_id: str) -> dict[str, Any] | None:
    """The confirm stage's test numbers for the config a search trial ran (None when it was not confirmed)."""
    from .confirmed import confirm_part, confirm_summary

    confirm = confirm_part(trials)
    if confirm.empty:
        return None
    mine = confirm[confirm["params"].fillna("{}").map(lambda t: trial_id in json.loads(t).get("source_trials", []))]
    table = confirm_summary(mine)
    if table.empty:
        return None
    row = table.iloc[0]
    return {"test_top1_mean": plain(row["test_mean"]), "ci95": [plain(row["ci_low"]), plain(row["ci_high"])],
            "n_seeds": int(row["n_seeds"]), "note": str(row["note"]) or None,
            "what": "mean test top-1 over fresh seeds (tune-schane confirm), t-interval over seeds: the number "
                    "to report for this config"}


def export_best(trials: pd.DataFrame, out: str | Path, by: str | None = None) -> list[Path]:
    """Write the best config(s) into folder ``out`` with :func:`tune_schane.finetune.config.dump_config`.

    One file per group (see :func:`export_name`); returns the paths written, in group order. The
    config is the search's choice (best on val); where the confirm stage retrained it, its test numbers
    come first in the provenance, and the search's value is labelled selection (optimistic).
    """
    out = Path(out)
    best = best_trials(trials, by)
    if best.empty:
        raise BadInput("no completed trial with an objective to export")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for _, row in best.iterrows():
        path = out / export_name(by, row)
        provenance = provenance_of(row)
        confirm = confirmed_numbers(trials, str(row["trial_id"]))
        provenance = {"confirm": confirm, **provenance} if confirm else provenance
        provenance["selection"] = ("best_objective is this trial's best epoch on val, the value the search picked "
                                   "it by: selection (optimistic)")
        dump_config(config_from_row(row), path, provenance)
        paths.append(path)
    return paths
