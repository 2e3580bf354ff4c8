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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tune_schane.outcomes import TRIAL_STATUSES as STATUSES

KEYS = ["loss", "batch_size"]
TABLE_COLUMNS = ["loss", "batch_size", "n_trials", "n_used", *[f"n_{s}" for s in STATUSES], "best", "mean",
                 "ci_low", "ci_high", "delta_best_vs_ce", "delta_mean_vs_ce"]
TREND_STATS = ("slope_best", "drop_best", "slope_mean", "drop_mean")
TREND_COLUMNS = ["loss", "n_batch_sizes", *TREND_STATS, *[f"{c}_vs_ce" for c in TREND_STATS]]
PAIRED_COLUMNS = ["loss", "baseline", "batch_size", "n_pairs", "mean_diff", "ci_low", "ci_high"]


def tidy(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns the analysis uses under short names: trial_id, loss, batch_size, seed, status, objective."""
    return pd.DataFrame({
        "trial_id": trials["trial_id"].astype(str),
        "loss": trials["config_loss"].astype(str),
        "batch_size": pd.to_numeric(trials["config_batch_size"]).astype("int64"),
        "seed": pd.to_numeric(trials["config_seed"]).astype("int64"),
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


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``): (v, v) for one value, (nan, nan) for none.

    The percentile bootstrap makes no normality assumption, which matters for accuracies near a
    ceiling; with a handful of seeds it is optimistic, so the report shows ``n_used`` beside it.
    """
    from scipy import stats

    values = np.asarray(values, dtype="float64")
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1 or np.all(values == values[0]):  # scipy needs two distinct values
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=ci, method="percentile",
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def batch_size_table(
    trials: pd.DataFrame,
    *,
    statuses: tuple[str, ...] = ("completed",),
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (loss, batch size) seen in ``trials``, including cells where every trial failed.

    Columns: loss, batch_size, n_trials, n_used (trials that count, see the module docstring),
    n_<status> for every status, best, mean, ci_low/ci_high (percentile bootstrap of the mean of
    the usable trials' ``best_objective``; NaN when none, equal to the mean for one trial), and
    delta_best_vs_ce / delta_mean_vs_ce (this row minus CE's at the same batch size; NaN when CE has
    no usable trial there).
    """
    mode = objective_mode(trials)
    data = tidy(trials)
    data["usable"] = usable_mask(trials, statuses).to_numpy()
    rows = []
    for (loss, batch), cell in data.groupby(KEYS, sort=True):
        usable = cell.loc[cell["usable"], "objective"].to_numpy()
        low, high = bootstrap_ci(usable, n_boot=n_boot, ci=ci, seed=seed)
        row = {"loss": loss, "batch_size": int(batch), "n_trials": len(cell), "n_used": len(usable)}
        row.update({f"n_{s}": int((cell["status"] == s).sum()) for s in STATUSES})
        if len(usable):
            best = float(usable.max() if mode == "max" else usable.min())
            row.update(best=best, mean=float(usable.mean()), ci_low=low, ci_high=high)
        else:
            row.update(best=np.nan, mean=np.nan, ci_low=np.nan, ci_high=np.nan)
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


def paired_comparison(
    trials: pd.DataFrame,
    *,
    baseline: str = "ce",
    statuses: tuple[str, ...] = ("completed",),
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    pooled: bool = False,
) -> pd.DataFrame:
    """Each family against ``baseline`` at the same batch size and the same seed (``config_seed``).

    Pairing on the seed removes the variance the seed adds to both sides (init, data order,
    augmentations), which unpaired means at a handful of seeds cannot. Within a (loss, batch size,
    seed) the best usable trial stands for that seed, so a sweep that samples several configs per
    cell compares the tuned result of each family seed by seed. One row per (loss, batch size) with
    at least one pair (``pooled=True`` adds one row per loss with ``batch_size`` NA pooling the pairs
    of every batch size); ``mean_diff`` = family - baseline with a percentile bootstrap CI. Empty (with these
    columns) when no pair exists, e.g. a sweep without repeats over seeds.
    """
    mode = objective_mode(trials)
    data = tidy(trials)[usable_mask(trials, statuses).to_numpy()]
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in PAIRED_COLUMNS}).astype(
        {"loss": "object", "baseline": "object", "batch_size": "Int64", "n_pairs": "int64"})
    if data.empty:
        return empty
    pick = data.groupby(["loss", "batch_size", "seed"])["objective"].agg("max" if mode == "max" else "min")
    per_seed = pick.unstack("loss")
    if baseline not in per_seed:
        return empty
    rows = []
    for loss in per_seed.columns:
        if loss == baseline:
            continue
        pairs = per_seed[[loss, baseline]].dropna()
        if pairs.empty:
            continue
        groups = [(int(b), part) for b, part in pairs.groupby(level="batch_size")]
        if pooled:
            groups.append((pd.NA, pairs))
        for batch, part in groups:
            diffs = (part[loss] - part[baseline]).to_numpy(dtype="float64")
            low, high = bootstrap_ci(diffs, n_boot=n_boot, ci=ci, seed=seed)
            rows.append({"loss": loss, "baseline": baseline, "batch_size": batch, "n_pairs": len(diffs),
                         "mean_diff": float(diffs.mean()), "ci_low": low, "ci_high": high})
    if not rows:
        return empty
    out = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    return out.astype({"batch_size": "Int64", "n_pairs": "int64"})


SLOPE_CI_COLUMNS = ["loss", "baseline", "n_batch_sizes", "n_used", "slope_mean", "ci_low", "ci_high",
                    "slope_mean_vs_baseline", "vs_baseline_ci_low", "vs_baseline_ci_high"]


def slope_intervals(
    trials: pd.DataFrame,
    *,
    baseline: str = "ce",
    statuses: tuple[str, ...] = ("completed",),
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per loss: the slope of the cell means per doubling of the batch size, with percentile bootstrap CIs.

    ``scipy.stats.bootstrap`` resamples the usable trials of every (loss, batch size) cell
    independently; each replicate recomputes the cell means and refits the least-squares slope
    against log2(batch size) (:func:`batch_size_trend`'s ``slope_mean``). ``slope_mean_vs_baseline``
    is the family's slope minus the baseline's, both refitted in the same replicate: a CI that excludes
    zero says the slopes differ (which one is flatter: compare each slope's distance from zero). With a few
    trials per cell these intervals are wide and optimistic (the percentile bootstrap under-covers
    at small n); ``n_used`` says how many trials carry them. A row needs two batch sizes with data.
    """
    data = tidy(trials)[usable_mask(trials, statuses).to_numpy()]
    cells: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
    for loss, part in data.groupby("loss", sort=True):
        groups = [(int(b), g["objective"].to_numpy(dtype="float64")) for b, g in part.groupby("batch_size")]
        if len(groups) >= 2:
            x = np.log2([b for b, _ in groups])
            cells[loss] = ((x - x.mean()) / ((x - x.mean()) @ (x - x.mean())), [v for _, v in groups])
    options = {"n_boot": n_boot, "ci": ci, "seed": seed}
    rows = []
    for loss, (weights, values) in cells.items():
        slope = _slopes_statistic([(weights, values)])
        point, low, high = _percentile_ci(values, slope, **options)
        row = {"loss": loss, "baseline": baseline, "n_batch_sizes": len(values), "n_used": sum(map(len, values)),
               "slope_mean": point, "ci_low": low, "ci_high": high,
               "slope_mean_vs_baseline": np.nan, "vs_baseline_ci_low": np.nan, "vs_baseline_ci_high": np.nan}
        if loss != baseline and baseline in cells:
            difference = _slopes_statistic([(weights, values), cells[baseline]], signs=(1.0, -1.0))
            point, low, high = _percentile_ci([*values, *cells[baseline][1]], difference, **options)
            row.update(slope_mean_vs_baseline=point, vs_baseline_ci_low=low, vs_baseline_ci_high=high)
        rows.append(row)
    return pd.DataFrame(rows, columns=SLOPE_CI_COLUMNS)


def _slopes_statistic(fits: list[tuple[np.ndarray, list[np.ndarray]]], signs: tuple[float, ...] = (1.0,)):
    """``statistic(*cells, axis)``: the signed sum of each fit's slope of its cells' means (vectorised)."""
    sizes = [len(values) for _, values in fits]

    def statistic(*cells: np.ndarray, axis: int = -1) -> np.ndarray:
        total, start = 0.0, 0
        for (weights, _), size, sign in zip(fits, sizes, signs, strict=True):
            means = np.stack([cell.mean(axis=axis) for cell in cells[start:start + size]], axis=-1)
            total = total + sign * (means @ weights)
            start += size
        return total

    return statistic


def _percentile_ci(samples: list[np.ndarray], statistic, *, n_boot: int, ci: float,
                   seed: int) -> tuple[float, float, float]:
    """(point, low, high) of ``statistic`` with every sample resampled independently (scipy's bootstrap).

    A sample of one value, or of equal values, resamples to itself: it is held fixed (scipy needs
    two distinct values), and with every sample fixed the interval is the point.
    """
    from scipy import stats

    point = float(statistic(*samples))
    varying = [i for i, s in enumerate(samples) if len(s) > 1 and not np.all(s == s[0])]
    if not varying:
        return point, point, point

    def on_varying(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = resampled[0].shape[:-1]
        full = [np.broadcast_to(s, (*shape, len(s))) for s in samples]
        for i, values in zip(varying, resampled, strict=True):
            full[i] = values
        return statistic(*full, axis=axis)

    result = stats.bootstrap(tuple(samples[i] for i in varying), on_varying, n_resamples=n_boot,
                             confidence_level=ci, method="percentile", vectorized=True,
                             rng=np.random.default_rng(seed))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)
