"""Batch-size sensitivity per loss family: does hard-negative mining need smaller batches?

Which trials count: by default only ``completed`` ones with a finite ``best_objective``. Pruned
trials stopped early at a lower fidelity (fewer epochs), so their best is not comparable with a
full run; pass ``statuses=("completed", "pruned")`` to include them anyway. Failed trials
(``diverged``, ``oom``, ``error``) never carry an objective, but they are counted per cell, so a
batch size where every trial ran out of memory shows up with its counts and a NaN objective
instead of silently vanishing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STATUSES = ("completed", "pruned", "diverged", "oom", "error")
KEYS = ["loss", "batch_size"]


def tidy(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns the analysis uses, with short names: loss, batch_size, seed, status, objective, mode."""
    out = pd.DataFrame({
        "trial_id": trials["trial_id"].astype(str),
        "loss": trials["config_loss"].astype(str),
        "batch_size": trials["config_batch_size"].astype("int64"),
        "seed": trials["config_seed"].astype("int64"),
        "status": trials["status"].astype(str),
        "objective": pd.to_numeric(trials["best_objective"], errors="coerce").astype("float64"),
    })
    out["mode"] = trials["objective_mode"].astype(str).fillna("max") if "objective_mode" in trials else "max"
    return out.reset_index(drop=True)


def objective_mode(trials: pd.DataFrame) -> str:
    modes = set(trials.get("objective_mode", pd.Series(["max"])).dropna().astype(str))
    return modes.pop() if len(modes) == 1 else "max"


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. One value: (v, v). None: (nan, nan)."""
    values = np.asarray(values, dtype="float64")
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    alpha = (1 - ci) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def batch_size_table(
    trials: pd.DataFrame, *, statuses: tuple[str, ...] = ("completed",), n_boot: int = 2000, ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (loss, batch size) seen in ``trials``: counts by status, best, mean and its CI, delta to CE."""
    mode = objective_mode(trials)
    data = tidy(trials)
    rows = []
    for (loss, batch), cell in data.groupby(KEYS, sort=True):
        usable = cell[cell["status"].isin(statuses) & np.isfinite(cell["objective"])]["objective"].to_numpy()
        low, high = bootstrap_ci(usable, n_boot=n_boot, ci=ci, seed=seed)
        row = {"loss": loss, "batch_size": int(batch), "n_trials": len(cell), "n_used": len(usable)}
        row.update({f"n_{s}": int((cell["status"] == s).sum()) for s in STATUSES})
        best = (usable.max() if mode == "max" else usable.min()) if len(usable) else np.nan
        row.update(best=float(best), mean=float(usable.mean()) if len(usable) else np.nan, ci_low=low, ci_high=high)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["loss", "batch_size", "n_trials", "n_used", *[f"n_{s}" for s in STATUSES],
                                        "best", "mean", "ci_low", "ci_high"])
    ce = table[table["loss"] == "ce"].set_index("batch_size")
    for stat in ("best", "mean"):
        reference = table["batch_size"].map(ce[stat]) if not ce.empty else np.nan
        table[f"delta_{stat}_vs_ce"] = table[stat] - reference
    return table


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    if ok.sum() < 2 or len(np.unique(x[ok])) < 2:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def batch_size_trend(table: pd.DataFrame) -> pd.DataFrame:
    """Per loss: least-squares slope of best and mean against log2(batch size); drop from largest to smallest.

    ``drop_*`` = value at the largest batch size with data minus value at the smallest (positive: the
    family loses accuracy at small batches). ``*_vs_ce`` subtract CE's figure: negative means the family
    is less batch-sensitive than CE.
    """
    rows = []
    for loss, part in table.sort_values("batch_size").groupby("loss", sort=True):
        x = np.log2(part["batch_size"].to_numpy(dtype="float64"))
        row = {"loss": loss, "n_batch_sizes": int(np.isfinite(part["best"]).sum())}
        for stat in ("best", "mean"):
            y = part[stat].to_numpy(dtype="float64")
            row[f"slope_{stat}"] = _slope(x, y)
            finite = y[np.isfinite(y)]
            row[f"drop_{stat}"] = float(finite[-1] - finite[0]) if len(finite) >= 2 else float("nan")
        rows.append(row)
    trend = pd.DataFrame(rows, columns=["loss", "n_batch_sizes", "slope_best", "drop_best", "slope_mean",
                                        "drop_mean"])
    ce = trend.set_index("loss").loc["ce"] if "ce" in set(trend["loss"]) else None
    for col in ("slope_best", "drop_best", "slope_mean", "drop_mean"):
        trend[f"{col}_vs_ce"] = trend[col] - (ce[col] if ce is not None else np.nan)
    return trend


def paired_comparison(
    trials: pd.DataFrame, *, baseline: str = "ce", statuses: tuple[str, ...] = ("completed",), n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each family against ``baseline`` at the same batch size and seed (repeats): mean paired difference + CI.

    Within a (loss, batch size, seed) the best trial stands for that seed, so a sweep with several
    sampled configs per cell compares the tuned result of each family seed by seed.
    """
    columns = ["loss", "batch_size", "n_pairs", "mean_diff", "ci_low", "ci_high"]
    mode = objective_mode(trials)
    data = tidy(trials)
    data = data[data["status"].isin(statuses) & np.isfinite(data["objective"])]
    if data.empty:
        return pd.DataFrame(columns=columns)
    pick = data.groupby(["loss", "batch_size", "seed"])["objective"].agg("max" if mode == "max" else "min")
    per_seed = pick.unstack("loss")
    if baseline not in per_seed:
        return pd.DataFrame(columns=columns)
    rows = []
    for loss in per_seed.columns:
        if loss == baseline:
            continue
        for batch, part in per_seed[[loss, baseline]].dropna().groupby(level="batch_size"):
            diffs = (part[loss] - part[baseline]).to_numpy()
            low, high = bootstrap_ci(diffs, n_boot=n_boot, seed=seed)
            rows.append({"loss": loss, "batch_size": int(batch), "n_pairs": len(diffs), "mean_diff": diffs.mean(),
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=columns)
