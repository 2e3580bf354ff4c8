"""The objective against one hyperparameter, and where ASHA spent its epochs."""

from __future__ import annotations

import pandas as pd

SLICE_PARAMS = ("tau", "beta", "lam", "lr")


def slice_frame(trials: pd.DataFrame, param: str) -> pd.DataFrame:
    """(value, objective, loss, status) for trials that have ``param`` set and a finite objective."""
    column = f"config_{param}"
    frame = pd.DataFrame({
        "value": pd.to_numeric(trials[column], errors="coerce"),
        "objective": pd.to_numeric(trials["best_objective"], errors="coerce"),
        "loss": trials["config_loss"].astype(str),
        "status": trials["status"].astype(str),
        "batch_size": trials["config_batch_size"].astype("int64"),
    })
    return frame.dropna(subset=["value", "objective"]).reset_index(drop=True)


def budget_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per status: trials, epochs spent in total and per trial (the ASHA budget picture)."""
    frame = pd.DataFrame({"status": trials["status"].astype(str), "epochs": trials["epochs_run"].astype("int64")})
    out = frame.groupby("status")["epochs"].agg(trials="count", epochs="sum", mean_epochs="mean").reset_index()
    out["share_of_epochs"] = out["epochs"] / max(1, out["epochs"].sum())
    return out
