"""Batch-size sensitivity per loss family: does hard-negative mining need smaller batches?

Which trials count for the objective: by default only ``completed`` trials with a finite
``best_objective``. A pruned trial was stopped early by the scheduler, so its best is a
lower-fidelity value (fewer epochs) and mixing it with full runs would drag a cell's mean down in
proportion to how aggressively ASHA pruned there; pass ``statuses=("completed", "pruned")`` to include
them anyway. Failed trials (``diverged``, ``oom``, ``error``) carry no objective but are counted per
cell, so a batch size where every trial ran out of memory shows up with its counts and a NaN
objective instead of silently vanishing (which would bias the study towards batch sizes that fit).

``objective_mode`` is respected everywhere: in ``min`` mode the best of a cell is its minimum. Deltas
and differences are always ``family - reference`` in the objective's own units, whatever the mode.

Intervals treat the seed as the unit (:mod:`analysis.seed_stats`): a seed picks the few-shot subset
(``config_subset_seed`` where set, else ``config_seed``), and the trials that share it are one
observation of it, never several. A cell's interval is the t-interval over its per-seed means, with
``n_seeds`` beside it and none below five seeds. These tables describe the *search* stage, chosen
and scored on val: selection, optimistic; the confirm stage's tables (:mod:`analysis.confirmed`) are
the ones to report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tune_schane.finetune.outcomes import TRIAL_STATUSES as STATUSES

from .seed_stats import interval, paired_table, slope_table

KEYS = ["loss", "batch_size"]
TABLE_COLUMNS = ["loss", "batch_size", "n_trials", "n_used", "n_seeds", *[f"n_{s}" for s in STATUSES], "best",
                 "mean", "ci_low", "ci_high", "ci_note", "delta_best_vs_ce", "delta_mean_vs_ce"]
TREND_STATS = ("slope_best", "drop_best", "slope_mean", "drop_mean")
TREND_COLUMNS = ["loss", "n_batch_sizes", *TREND_STATS, *[f"{c}_vs_ce" for c in TREND_STATS]]


def subset_seed(trials: pd.DataFrame) -> pd.Series:
    """The seed that picked each trial's few-shot subset: ``config_subset_seed``, else ``config_seed``."""
    seed = pd.to_numeric(trials["config_seed"])
    if "config_subset_seed" in trials:
        seed = pd.to_numeric(trials["config_subset_seed"]).fillna(seed)
    return seed.astype("int64")


def tidy(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns the analysis uses under short names: trial_id, loss, batch_size, seed, status, objective.

    ``seed`` is the subset seed (:func:`subset_seed`): the independent unit of every interval.
    """
    return pd.DataFrame({
        "trial_id": trials["trial_id"].astype(str),
        "loss": trials["config_loss"].astype(str),
        "batch_size": pd.to_numeric(trials["config_batch_size"]).astype("int64"),
        "seed": subset_seed(trials).to_numpy(),
        "status": trials["status"].astype(str),
        "objective": pd.to_numeric(trials["best_objective"], errors="coerce").astype("float64"),
    }).reset_index(drop=True)


def objective_mode(trials: pd.DataFrame) -> str:
    """The sweep's objective mode (``max`` or ``min``); ``max`` when unrecorded.

    One sweep optimises one objective, so mixed modes mean rows of different sweeps were mixed:
    that is refused rather than silently ranking half of them backwards.
    """
    if "objective_mode" not in trials:
        return "max"
    modes = set(trials["objective_mode"].dropna().astype(str))
    if len(modes) > 1:
        raise ValueError(f"trials mix objective modes {sorted(modes)}: analyse one sweep at a time")
    return modes.pop() if modes else "max"


def usable_mask(trials: pd.DataFrame, statuses: tuple[str, ...] = ("completed",)) -> pd.Series:
    """Trials that count for the objective: one of ``statuses`` and a finite ``best_objective``."""
    objective = pd.to_numeric(trials["best_objective"], errors="coerce").astype("float64")
    return trials["status"].astype(str).isin(statuses) & np.isfinite(objective)


def batch_size_table(
    trials: pd.DataFrame,
    *,
    statuses: tuple[str, ...] = ("completed",),
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per (loss, batch size) seen in ``trials``, including cells where every trial failed.

    Columns: loss, batch_size, n_trials, n_used (trials that count, see the module docstring),
    n_seeds (distinct subset seeds among them), n_<status> for every status, best, mean (of the
    usable trials' ``best_objective``), ci_low/ci_high (t-interval of the mean over seeds: each seed's
    trials averaged first; NaN below five seeds, with ``ci_note`` saying so), and delta_best_vs_ce /
    delta_mean_vs_ce (this row minus CE's at the same batch size; NaN when CE has no usable trial there).
    """
    mode = objective_mode(trials)
    data = tidy(trials)
    data["usable"] = usable_mask(trials, statuses).to_numpy()
    rows = []
    for (loss, batch), cell in data.groupby(KEYS, sort=True):
        used = cell[cell["usable"]]
        usable = used["objective"].to_numpy()
        seeds = interval(used.groupby("seed")["objective"].mean(), ci=ci)
        row = {"loss": loss, "batch_size": int(batch), "n_trials": len(cell), "n_used": len(usable),
               "n_seeds": seeds["n"]}
        row.update({f"n_{s}": int((cell["status"] == s).sum()) for s in STATUSES})
        if len(usable):
            best = float(usable.max() if mode == "max" else usable.min())
            row.update(best=best, mean=float(usable.mean()), ci_low=seeds["low"], ci_high=seeds["high"],
                       ci_note=seeds["note"])
        else:
            row.update(best=np.nan, mean=np.nan, ci_low=np.nan, ci_high=np.nan, ci_note="no usable trial")
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:-2])
    ce = table[table["loss"] == "ce"].set_index("batch_size")
    for stat in ("best", "mean"):
        reference = table["batch_size"].map(ce[stat]).astype("float64") if not ce.empty else np.nan
        table[f"delta_{stat}_vs_ce"] = table[stat].astype("float64") - reference
    return table[TABLE_COLUMNS]


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    if ok.sum() < 2 or len(np.unique(x[ok])) < 2:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def batch_size_trend(table: pd.DataFrame) -> pd.DataFrame:
    """Per loss: how the objective moves with the batch size, from :func:`batch_size_table`.

    - ``slope_best`` / ``slope_mean``: least-squares slope against log2(batch size), i.e. the change
      per doubling of the batch (NaN with fewer than 2 batch sizes that have data). log2 because
      batch sizes are swept in powers of two and contrastive losses gain per doubling, not per image.
    - ``drop_best`` / ``drop_mean``: value at the largest batch size with data minus value at the
      smallest (positive in max mode: the family loses accuracy at small batches).
    - ``*_vs_ce``: the same figure minus CE's (less batch-sensitive than CE = a slope nearer zero than CE's).
    """
    rows = []
    for loss, part in table.sort_values("batch_size").groupby("loss", sort=True):
        x = np.log2(part["batch_size"].to_numpy(dtype="float64"))
        row = {"loss": loss, "n_batch_sizes": int(np.isfinite(part["best"].to_numpy(dtype="float64")).sum())}
        for stat in ("best", "mean"):
            y = part[stat].to_numpy(dtype="float64")
            row[f"slope_{stat}"] = _slope(x, y)
            finite = y[np.isfinite(y)]
            row[f"drop_{stat}"] = float(finite[-1] - finite[0]) if len(finite) >= 2 else float("nan")
        rows.append(row)
    trend = pd.DataFrame(rows, columns=TREND_COLUMNS[: 2 + len(TREND_STATS)])
    ce = trend.set_index("loss").loc["ce"] if "ce" in set(trend["loss"]) else None
    for column in TREND_STATS:
        difference = trend[column] - (ce[column] if ce is not None else np.nan)
        trend[f"{column}_vs_ce"] = difference.round(12) + 0.0  # equal slopes read 0, not 1e-17 (nor -0)
    return trend[TREND_COLUMNS]


def seed_values(trials: pd.DataFrame, statuses: tuple[str, ...] = ("completed",)) -> pd.DataFrame:
    """Per (loss, batch size, seed): the best usable trial's objective, as ``value`` for :mod:`analysis.seed_stats`.

    The best trial stands for its seed, so a search that samples several configs per cell compares the
    tuned result of each family seed by seed (selection on val: optimistic). ``min`` mode is negated,
    so ``value`` is always higher-is-better.
    """
    mode = objective_mode(trials)
    data = tidy(trials)[usable_mask(trials, statuses).to_numpy()]
    sign = 1.0 if mode == "max" else -1.0
    best = (data.assign(value=sign * data["objective"]).groupby(["loss", "batch_size", "seed"], as_index=False)["value"]
            .max())
    return best[["loss", "batch_size", "seed", "value"]]


def paired_seeds(trials: pd.DataFrame, *, baseline: str = "ce", statuses: tuple[str, ...] = ("completed",),
                 ci: float = 0.95) -> pd.DataFrame:
    """Each family minus ``baseline`` at the same batch size and seed; one pooled row per family (batch <NA>).

    :func:`analysis.seed_stats.paired_table` on :func:`seed_values`: the interval is over seeds (the
    pooled row averages a seed's differences over the batch sizes first), none below five seeds.
    """
    return paired_table(seed_values(trials, statuses), baseline=baseline, ci=ci)


def seed_slope_table(trials: pd.DataFrame, *, baseline: str = "ce", statuses: tuple[str, ...] = ("completed",),
                     ci: float = 0.95) -> pd.DataFrame:
    """Per family: the slope per doubling of the batch fitted per seed, its interval over seeds, and vs baseline."""
    return slope_table(seed_values(trials, statuses), baseline=baseline, ci=ci)
