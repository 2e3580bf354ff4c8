"""Hand-built trial tables and small real trial stores for the analysis tests.

The tables mimic what :meth:`TrialStore.load_trials` returns (every ``config_<field>`` column, pandas
``Int64`` for integers, JSON text for ``params``/``versions``) so that the analysis code is tested on
the shapes it meets in practice, while every objective value is chosen by hand so that each test
can state its expected answer exactly.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tune_schane.finetune.config import TrialConfig, field_types
from tune_schane.store import TrialStore
from tune_schane.store.records import epoch_rows, trial_row

SPACE_TEXT = """name: tiny
grid:
  loss: [ce, schane]
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: [schane]}}
  lr: {loguniform: [1.0e-3, 2.0e-2]}
  batch_size: {choice: [16, 32]}
num_samples: 2
# <script>alert("not code")</script> & friends must be escaped
"""

_counter = itertools.count()


def trial(
    loss: str = "ce",
    batch_size: int = 32,
    best: float | None = 0.5,
    *,
    status: str = "completed",
    seed: int = 0,
    trial_id: str | None = None,
    mode: str = "max",
    final: float | None = None,
    epochs_run: int | None = None,
    params: dict[str, Any] | None = None,
    sweep_id: str = "s1",
    **config: Any,
) -> dict[str, Any]:
    """One trials-table row as the store returns it; unused loss hyperparameters resolved to None."""
    cfg = TrialConfig(loss=loss, batch_size=batch_size, seed=seed, **config).resolved()
    failed = status in ("diverged", "oom", "error")
    best_value = math.nan if failed or best is None else float(best)
    row: dict[str, Any] = {
        "sweep_id": sweep_id,
        "trial_id": trial_id or f"t{next(_counter):05d}",
        "status": status,
        "error": "CUDA out of memory" if status == "oom" else None,
        **{f"config_{k}": v for k, v in cfg.to_dict().items()},
        "objective_name": "val_top1",
        "objective_mode": mode,
        "best_objective": best_value,
        "final_objective": best_value if final is None else float(final),
        "epochs_run": cfg.epochs if epochs_run is None else epochs_run,
        "wall_seconds": 1.0,
        "resources_cpu": 1.0,
        "resources_gpu": 0.0,
        "node": "node-a",
        "versions": json.dumps({"python": "3.x", "torch": "2.14.1"}),
        "commit": "abc123",
        "params": json.dumps(params if params is not None else {}),
    }
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame with the store's nullable dtypes (``Int64``/``boolean``/``string``)."""
    df = pd.DataFrame(rows)
    types = field_types()
    for name, kind in types.items():
        column = f"config_{name}"
        if column not in df:
            continue
        if kind is int:
            df[column] = df[column].astype("Int64")
        elif kind is bool:
            df[column] = df[column].astype("boolean")
        elif kind is float:
            df[column] = pd.to_numeric(df[column]).astype("float64")
        else:
            df[column] = df[column].astype("string")
    df["epochs_run"] = df["epochs_run"].astype("Int64")
    for column in ("sweep_id", "trial_id", "status", "objective_name", "objective_mode"):
        df[column] = df[column].astype("string")
    return df.sort_values(["sweep_id", "trial_id"], ignore_index=True)


def history(values: list[float], metric: str = "val_top1") -> list[dict[str, Any]]:
    """Per-epoch records (1-based) with the given objective values."""
    return [{"epoch": i + 1, metric: v, "train_loss": 1.0 / (i + 1)} for i, v in enumerate(values)]


def build_store(
    root: Path,
    sweep_id: str = "s1",
    *,
    statuses_only: str | None = None,
    space_text: str | None = SPACE_TEXT,
) -> str:
    """Write a small but complete sweep into a real store at ``root``; return its path.

    Two families (ce, schane) at batch sizes 16 and 32, two seeds each, plus one pruned trial and
    one OOM trial at batch size 64 (a cell with failed trials only). ``statuses_only`` writes every
    trial with that status instead (for the "no completed trial" error).
    """
    store = TrialStore(root)
    trials, epochs = [], []
    n = 0
    for loss, bs, seed in itertools.product(("ce", "schane"), (16, 32), (0, 1)):
        base = 0.6 + 0.05 * math.log2(bs / 16) + (0.05 if loss == "schane" else 0.0) + 0.01 * seed
        values = [base - 0.2, base - 0.05, base]
        extra = {"tau": 0.1 + 0.05 * seed} if loss == "schane" else {}
        cfg = TrialConfig(loss=loss, batch_size=bs, seed=seed, epochs=3, lr=1e-3 * (1 + n), **extra).resolved()
        status = statuses_only or "completed"
        hist = history(values) if status in ("completed", "pruned") else []
        tid = f"{sweep_id}-{n:03d}"
        params = {"loss": loss, "batch_size": bs, "lr": cfg.lr, **({"tau": cfg.tau} if cfg.tau else {})}
        trials.append(trial_row(sweep_id=sweep_id, trial_id=tid, status=status, config=cfg, history=hist,
                                params=params, error="boom" if status == "error" else None))
        epochs += epoch_rows(sweep_id, tid, hist)
        n += 1
    if statuses_only is None:
        cfg = TrialConfig(loss="schane", batch_size=64, seed=0, epochs=3, tau=0.2).resolved()
        hist = history([0.3])
        trials.append(trial_row(sweep_id=sweep_id, trial_id=f"{sweep_id}-{n:03d}", status="pruned", config=cfg,
                                history=hist, params={"loss": "schane", "batch_size": 64}))
        epochs += epoch_rows(sweep_id, f"{sweep_id}-{n:03d}", hist)
        cfg = TrialConfig(loss="ce", batch_size=64, seed=0, epochs=3).resolved()
        trials.append(trial_row(sweep_id=sweep_id, trial_id=f"{sweep_id}-{n + 1:03d}", status="oom", config=cfg,
                                history=[], error="CUDA out of memory", params={"loss": "ce", "batch_size": 64}))
    store.write_trials(trials)
    store.write_epochs(epochs)
    if space_text is not None:
        store.write_space(sweep_id, space_text)
    return str(root)
