"""The objective against one hyperparameter, and where the scheduler (ASHA) spent its epochs.

Slices answer "which τ/β/λ/lr worked" without a model of the response surface: every trial is one
point. The budget table answers "how much did early stopping save": a sweep's cost is the epochs it
ran, and ASHA's promise is that pruned trials cost few of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SLICE_PARAMS = ("tau", "beta", "lam", "lr")
BUDGET_COLUMNS = ["trial_id", "loss", "batch_size", "status", "epochs_run", "epochs_configured", "epochs_logged",
                  "best_objective"]
TOTAL_COLUMNS = ["status", "trials", "epochs", "mean_epochs", "share_of_epochs"]


def slice_frame(trials: pd.DataFrame, param: str) -> pd.DataFrame:
    """Columns (value, objective, loss, status, batch_size): trials with ``param`` set and a finite objective.

    Trials whose family does not use ``param`` (τ for ce, β for supcon, ...) store it as null and are
    left out rather than drawn at some made-up value. Pruned trials are kept and carry their status,
    so a plot can tell their lower-fidelity objective apart.
    """
    column = f"config_{param}"
    if column not in trials:
        raise KeyError(f"no column {column!r} in the trials table")
    out = pd.DataFrame({
        "value": pd.to_numeric(trials[column], errors="coerce").astype("float64"),
        "objective": pd.to_numeric(trials["best_objective"], errors="coerce").astype("float64"),
        "loss": trials["config_loss"].astype(str),
        "status": trials["status"].astype(str),
        "batch_size": pd.to_numeric(trials["config_batch_size"], errors="coerce").astype("float64"),
    })
    out = out[np.isfinite(out["value"]) & np.isfinite(out["objective"])]
    return out.sort_values(["loss", "value"], kind="stable").reset_index(drop=True)


def budget_per_trial(trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial: status, epochs run, epochs it was configured for and epochs logged.

    ``epochs_run`` (from the trials table) is what the budget counts; ``epochs_logged`` (rows in the
    epochs table) is there to spot trials whose epochs were lost or re-run. Sorted by epochs run,
    most first, so the table reads like the budget plot.
    """
    if epochs is not None and len(epochs):
        logged = epochs.groupby("trial_id")["epoch"].count()
    else:
        logged = pd.Series(dtype="int64")
    out = pd.DataFrame({
        "trial_id": trials["trial_id"].astype(str),
        "loss": trials["config_loss"].astype(str),
        "batch_size": pd.to_numeric(trials["config_batch_size"], errors="coerce"),
        "status": trials["status"].astype(str),
        "epochs_run": pd.to_numeric(trials["epochs_run"], errors="coerce").fillna(0).astype("int64"),
        "epochs_configured": pd.to_numeric(trials["config_epochs"], errors="coerce") if "config_epochs" in trials
        else np.nan,
        "best_objective": pd.to_numeric(trials["best_objective"], errors="coerce").astype("float64"),
    })
    out["epochs_logged"] = out["trial_id"].map(logged).fillna(0).astype("int64")
    out = out.sort_values(["epochs_run", "trial_id"], ascending=[False, True], kind="stable")
    return out[BUDGET_COLUMNS].reset_index(drop=True)


def budget_table(trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ASHA budget by status: trials, epochs spent in total and per trial, share of all epochs.

    The last row (``status == "all"``) totals the sweep. Pruned trials with a small share of the
    epochs is the scheduler doing its job; a large share spent on ``oom``/``error`` trials is budget
    lost to failures. The per-trial view is :func:`budget_per_trial`.
    """
    budget = budget_per_trial(trials, epochs)
    if budget.empty:
        return pd.DataFrame(columns=TOTAL_COLUMNS)
    grouped = budget.groupby("status", sort=True)["epochs_run"]
    out = grouped.agg(trials="count", epochs="sum", mean_epochs="mean").reset_index()
    total = pd.DataFrame([{"status": "all", "trials": len(budget), "epochs": int(budget["epochs_run"].sum()),
                           "mean_epochs": float(budget["epochs_run"].mean())}])
    out = pd.concat([out, total], ignore_index=True)
    out["share_of_epochs"] = out["epochs"] / max(1, int(budget["epochs_run"].sum()))
    return out[TOTAL_COLUMNS]
