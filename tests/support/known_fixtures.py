"""Hand-built trial tables with known answers, and a small real store, for tests/analysis/test_analysis_known.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from tune_schane.finetune.config import TrialConfig
from tune_schane.store import TrialStore
from tune_schane.store.records import trial_row


def trial(trial_id: str, loss: str, batch: int, objective: float | None, *, status: str = "completed",
          seed: int = 0, mode: str = "max", **config) -> dict:
    """One trials-table row with the columns the analysis reads."""
    defaults = {"tau": None if loss == "ce" else 0.1, "beta": 1.0 if loss in ("schane", "clce") else None,
                "lam": 0.5 if loss == "clce" else None, "lr": 1e-3}
    defaults.update(config)
    row = {"sweep_id": "s", "trial_id": trial_id, "status": status, "config_loss": loss,
           "config_batch_size": batch, "config_seed": seed, "objective_name": "val_top1", "objective_mode": mode,
           "best_objective": math.nan if objective is None else objective,
           "final_objective": math.nan if objective is None else objective,
           "epochs_run": 4 if status == "completed" else (1 if status == "pruned" else 0),
           "params": json.dumps({"loss": loss, "batch_size": batch}), "versions": "{}", "commit": "abc"}
    row.update({f"config_{k}": (math.nan if v is None else v) for k, v in defaults.items()})
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def sloped(slope: float, intercept: float = 50.0, losses=("ce", "schane")) -> pd.DataFrame:
    """best = intercept + slope·log2(batch) (+5 for non-CE families), one completed trial per cell."""
    rows = []
    for loss in losses:
        for batch in (16, 32, 64, 128):
            value = intercept + slope * math.log2(batch) + (5.0 if loss != "ce" else 0.0)
            rows.append(trial(f"{loss}-{batch}", loss, batch, value))
    return frame(rows)


def real_store(path, *, sweep: str = "s1", n_per_family: int = 3, seed: int = 0) -> TrialStore:
    """A store written through the real API: completed, pruned and OOM trials with epochs and a space."""
    rng = np.random.default_rng(seed)
    store = TrialStore(path)
    trials, epochs = [], []
    i = 0
    for loss in ("ce", "supcon", "schane", "clce"):
        for batch in (16, 32, 64):
            for k in range(n_per_family):
                i += 1
                status = "completed" if k < n_per_family - 1 else "pruned"
                if loss == "schane" and batch == 64:
                    status = "oom"
                n_epochs = {"completed": 3, "pruned": 1, "oom": 0}[status]
                lr = float(10 ** rng.uniform(-3, -2))
                base = 60 + 10 * (loss != "ce") + 5 * math.log2(batch / 16) + 400 * lr
                history = [{"epoch": e, "val_top1": base + 5 * e + rng.normal(0, 1)} for e in range(1, n_epochs + 1)]
                config = TrialConfig(loss=loss, batch_size=batch, lr=lr, epochs=3, seed=k,
                                     tau=0.1, beta=float(rng.uniform(0, 2)), lam=float(rng.uniform(0.1, 0.9)))
                trial_id = f"t{i:03d}"
                trials.append(trial_row(sweep_id=sweep, trial_id=trial_id, status=status, config=config.resolved(),
                                        history=history, error="out of memory" if status == "oom" else None,
                                        params={"loss": loss, "batch_size": batch, "lr": lr}))
                epochs += [{"sweep_id": sweep, "trial_id": trial_id, **h} for h in history]
    store.write_epochs(epochs)
    store.write_trials(trials)
    store.write_space(sweep, "name: demo\nparams: {lr: {loguniform: [1.0e-3, 1.0e-2]}}\n")
    return store
