"""Seed-level statistics: the seed (one few-shot training subset) is the independent unit.

Why not rows: in the loss-family study each seed picks a distinct few-shot training subset, and
several rows share one seed (several configs, or several batch sizes, trained on the same subset).
The subset moves every row trained on it together (an "easy" subset lifts all of them), and it also
moves one family against another (a subset can suit SupCon and not CE). Rows that share a subset
are therefore correlated, and a bootstrap that resamples rows as if they were independent counts
two subsets trained three times each as six pairs: its interval is too narrow and covers the truth
far less often than it claims (:func:`row_bootstrap_interval` is that old way, kept so the tests can
show it). Here every statistic is first reduced to one number per seed, and intervals are taken
over seeds.

Input frame (tidy): ``loss``, ``batch_size`` (int), ``seed`` (int, the independent unit) and
``value`` (float, e.g. test top-1 in percent; higher is better, negate a loss-like metric first).
Rows whose value is NaN are ignored. Rows that repeat a (loss, batch size, seed) are averaged first:
they share the seed, so they are one observation of it, measured more precisely, not several.

Intervals default to Student's t over the per-seed values: with five seeds a percentile bootstrap
under-covers (it cannot see beyond the five values it resamples and uses the biased ``1/n``
variance), whereas the t-interval is exact for normal per-seed values and close to nominal for mild
departures. Below ``MIN_SEEDS`` seeds no interval is given at all (the mean still is), with a note
saying why. Pure functions: DataFrame in, DataFrame or dict out, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MIN_SEEDS = 5
NOT_ENOUGH = "not enough seeds for an interval"
METHODS = ("t", "bootstrap")
KEYS = ["loss", "batch_size", "seed"]
DIFF_COLUMNS = ["loss", "batch_size", "seed", "diff"]
PAIRED_TABLE_COLUMNS = ["loss", "baseline", "batch_size", "n_seeds", "mean_diff", "ci_low", "ci_high", "method",
                        "note"]
SEED_SLOPE_COLUMNS = ["loss", "seed", "n_batch_sizes", "slope", "slope_vs_baseline"]
SLOPE_TABLE_COLUMNS = ["loss", "n_seeds", "n_batch_sizes", "slope", "ci_low", "ci_high", "slope_vs_baseline",
                       "vs_baseline_ci_low", "vs_baseline_ci_high", "note"]


def per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (loss, batch size, seed): the mean ``value`` of its non-NaN rows.

    Repeats of a (loss, batch size, seed) share the seed's subset, so they are averaged into one
    observation rather than counted as independent ones. Columns: loss, batch_size, seed, value.
    """
    missing = [c for c in [*KEYS, "value"] if c not in df]
    if missing:
        raise ValueError(f"seed statistics need columns {[*KEYS, 'value']}; missing {missing}")
    data = pd.DataFrame({
        "loss": df["loss"].astype(str),
        "batch_size": pd.to_numeric(df["batch_size"]),
        "seed": pd.to_numeric(df["seed"]),
        "value": pd.to_numeric(df["value"], errors="coerce").astype("float64"),
    })
    data = data[data["value"].notna()]
    data = data.astype({"batch_size": "int64", "seed": "int64"})
    return data.groupby(KEYS, sort=True, as_index=False)["value"].mean()


def _percentile_bootstrap_mean(values: np.ndarray, *, n_boot: int, ci: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap of the mean: resample ``values`` with replacement ``n_boot`` times."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def interval(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    method: str = "t",
    ci: float = 0.95,
    min_seeds: int = MIN_SEEDS,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Mean and ``ci`` interval of one value per seed: ``{n, mean, low, high, method, note}``.

    ``method="t"`` (default): mean ± t_{(1+ci)/2, n-1} · s/√n with the sample standard deviation
    ``s`` (ddof=1). ``method="bootstrap"``: percentile bootstrap resampling whole seeds (each value
    is a seed); it under-covers at a handful of seeds, hence not the default. NaNs are dropped.
    With fewer than ``min_seeds`` values ``low``/``high`` are NaN and ``note`` says "not enough seeds
    for an interval" (the mean is still given; NaN for no value). ``note`` is "" otherwise.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    array = np.asarray(values, dtype="float64").ravel()
    array = array[~np.isnan(array)]
    n = len(array)
    mean = float(array.mean()) if n else float("nan")
    out = {"n": n, "mean": mean, "low": float("nan"), "high": float("nan"), "method": method, "note": ""}
    if n < max(min_seeds, 2):
        out["note"] = NOT_ENOUGH
        return out
    if method == "t":
        from scipy import stats

        half = float(stats.t.ppf((1 + ci) / 2, df=n - 1)) * float(array.std(ddof=1)) / np.sqrt(n)
        out.update(low=mean - half, high=mean + half)
    else:
        out["low"], out["high"] = _percentile_bootstrap_mean(array, n_boot=n_boot, ci=ci, seed=seed)
    return out


def row_bootstrap_interval(
    diffs: Sequence[float] | np.ndarray | pd.Series,
    *,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """The OLD, wrong way: a percentile bootstrap over rows treated as independent.

    Kept only so the tests can show that it under-covers when rows share a seed: resampling the
    rows of two subsets trained three times each treats them as six independent pairs, so the
    interval ignores that the subset moves all of its rows together. Use :func:`interval` on
    per-seed values (e.g. :func:`paired_table`) instead. Same keys as :func:`interval`; ``n`` counts
    rows, and any two rows give an interval (the old analysis had no minimum).
    """
    array = np.asarray(diffs, dtype="float64").ravel()
    array = array[~np.isnan(array)]
    n = len(array)
    out = {"n": n, "mean": float(array.mean()) if n else float("nan"), "low": float("nan"), "high": float("nan"),
           "method": "row bootstrap", "note": "rows treated as independent (under-covers when rows share a seed)"}
    if n >= 2:
        out["low"], out["high"] = _percentile_bootstrap_mean(array, n_boot=n_boot, ci=ci, seed=seed)
    return out


def paired_differences(df: pd.DataFrame, baseline: str = "ce") -> pd.DataFrame:
    """Long table of ``diff`` = family − ``baseline`` at the same batch size and the same seed.

    Pairing on the seed cancels what the subset does to both families alike (an easy subset lifts
    both), leaving the family × subset interaction and the run noise. Only (batch size, seed) cells
    that both have a value give a row. Columns: loss, batch_size, seed, diff (empty when the
    baseline is absent).
    """
    data = per_seed(df)
    empty = pd.DataFrame({"loss": pd.Series(dtype="object"), "batch_size": pd.Series(dtype="int64"),
                          "seed": pd.Series(dtype="int64"), "diff": pd.Series(dtype="float64")})
    base = data[data["loss"] == baseline].drop(columns="loss").rename(columns={"value": "base"})
    other = data[data["loss"] != baseline]
    if base.empty or other.empty:
        return empty
    merged = other.merge(base, on=["batch_size", "seed"], how="inner")
    if merged.empty:
        return empty
    merged["diff"] = merged["value"] - merged["base"]
    return merged[DIFF_COLUMNS].sort_values(KEYS, kind="stable").reset_index(drop=True)


def paired_table(
    df: pd.DataFrame,
    baseline: str = "ce",
    method: str = "t",
    ci: float = 0.95,
    min_seeds: int = MIN_SEEDS,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each family against ``baseline``: mean paired difference with an interval over seeds.

    One row per (family, batch size) — its seeds' differences at that batch size — and one pooled
    row per family (``batch_size`` <NA>). The pooled row first averages, per seed, that seed's
    differences over the batch sizes where it has one (they share the seed's subset, so they are
    one observation of it), then takes the interval over seeds: its ``n_seeds`` is the number of
    seeds, never seeds × batch sizes. Columns: loss, baseline, batch_size (Int64), n_seeds,
    mean_diff, ci_low, ci_high, method, note (see :func:`interval`).
    """
    diffs = paired_differences(df, baseline)
    options = {"method": method, "ci": ci, "min_seeds": min_seeds, "n_boot": n_boot, "seed": seed}
    rows = []
    for loss, part in diffs.groupby("loss", sort=True):
        groups: list[tuple[object, np.ndarray]] = [
            (int(batch), cell["diff"].to_numpy(dtype="float64")) for batch, cell in part.groupby("batch_size")]
        groups.append((pd.NA, part.groupby("seed")["diff"].mean().to_numpy(dtype="float64")))
        for batch, values in groups:
            result = interval(values, **options)
            rows.append({"loss": loss, "baseline": baseline, "batch_size": batch, "n_seeds": result["n"],
                         "mean_diff": result["mean"], "ci_low": result["low"], "ci_high": result["high"],
                         "method": method, "note": result["note"]})
    table = pd.DataFrame(rows, columns=PAIRED_TABLE_COLUMNS)
    return table.astype({"loss": "object", "baseline": "object", "batch_size": "Int64", "n_seeds": "int64",
                         "mean_diff": "float64", "ci_low": "float64", "ci_high": "float64", "method": "object",
                         "note": "object"})


def _pair_probability(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix K[i, j] = 1[a_i > b_j] + ½·1[a_i = b_j] (the Mann–Whitney kernel)."""
    return (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])


def prob_improvement(
    df: pd.DataFrame,
    a: str,
    b: str,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    min_seeds: int = MIN_SEEDS,
) -> dict:
    """Probability that family ``a`` beats family ``b``, with a seed bootstrap: ``{n_seeds, p, low, high}``.

    rliable's probability of improvement (Agarwal et al. 2021, "Deep RL at the Edge of the
    Statistical Precipice"): per task (here a batch size), P(A > B) = mean over all pairs
    (a_i, b_j) of 1[a_i > b_j] + ½·1[a_i = b_j], then the average over tasks. It says how often A
    wins, not by how much, so one lucky seed cannot dominate it the way it can dominate a mean.

    Only seeds that both families have at a batch size enter that task. The percentile bootstrap
    resamples seeds: a replicate draws a list of seeds with replacement, and the same list serves A
    and B (seeds pair) and every batch size (a seed's subset is shared across batch sizes too). A
    task that a replicate leaves without a seed is skipped in that replicate's average.
    ``n_seeds`` counts the distinct seeds used; below ``min_seeds`` low/high are NaN.
    Higher ``value`` is better.
    """
    data = per_seed(df)
    wide = data[data["loss"].isin([a, b])].pivot_table(index=["batch_size", "seed"], columns="loss", values="value")
    if a not in wide or b not in wide:
        return {"n_seeds": 0, "p": float("nan"), "low": float("nan"), "high": float("nan")}
    wide = wide[[a, b]].dropna()
    seeds = np.unique(wide.index.get_level_values("seed"))
    n = len(seeds)
    if n == 0:
        return {"n_seeds": 0, "p": float("nan"), "low": float("nan"), "high": float("nan")}
    tasks = []  # per batch size: positions of its seeds in ``seeds`` and the kernel matrix
    for _, cell in wide.groupby(level="batch_size"):
        positions = np.searchsorted(seeds, cell.index.get_level_values("seed"))
        tasks.append((positions, _pair_probability(cell[a].to_numpy("float64"), cell[b].to_numpy("float64"))))

    def statistic(counts: np.ndarray) -> np.ndarray:
        """P(A > B) for each row of ``counts`` (how often each seed was drawn)."""
        per_task = []
        for positions, kernel in tasks:
            c = counts[:, positions]
            total = c.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_task.append(np.einsum("ri,ij,rj->r", c, kernel, c) / total.astype("float64") ** 2)
        stacked = np.vstack(per_task)
        present = ~np.isnan(stacked)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present, stacked, 0.0).sum(axis=0) / present.sum(axis=0)

    p = float(statistic(np.ones((1, n)))[0])
    out = {"n_seeds": n, "p": p, "low": float("nan"), "high": float("nan")}
    if n >= max(min_seeds, 2):
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(n_boot, n))
        counts = np.zeros((n_boot, n))
        np.add.at(counts, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1.0)
        replicates = statistic(counts)
        replicates = replicates[~np.isnan(replicates)]
        out["low"], out["high"] = (float(q) for q in np.quantile(replicates, [(1 - ci) / 2, (1 + ci) / 2]))
    return out


def _slope_per_doubling(batch_sizes: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` on log2(batch size); NaN below two distinct batch sizes."""
    x = np.log2(batch_sizes.astype("float64"))
    if len(np.unique(x)) < 2:
        return float("nan")
    centred = x - x.mean()
    return float(centred @ (values - values.mean()) / (centred @ centred))


def seed_slopes(df: pd.DataFrame, baseline: str = "ce") -> pd.DataFrame:
    """Per (loss, seed): the slope of value on log2(batch size), in points per doubling of the batch.

    A seed needs at least two batch sizes for a slope (NaN otherwise). ``slope_vs_baseline`` is, for
    a family other than ``baseline``, the slope of the seed's paired difference (family − baseline
    at the same batch size) over the batch sizes both have; negative = the family gains less per
    doubling than the baseline on that subset. NaN for the baseline itself. Fitting per seed and
    then averaging over seeds keeps the seed the unit for the intervals in :func:`slope_table`.
    Columns: loss, seed, n_batch_sizes, slope, slope_vs_baseline.
    """
    data = per_seed(df)
    diffs = paired_differences(df, baseline).set_index(["loss", "seed"]).sort_index()
    rows = []
    for (loss, seed), part in data.groupby(["loss", "seed"], sort=True):
        row = {"loss": loss, "seed": int(seed), "n_batch_sizes": len(part),
               "slope": _slope_per_doubling(part["batch_size"].to_numpy(), part["value"].to_numpy("float64")),
               "slope_vs_baseline": float("nan")}
        if loss != baseline and (loss, seed) in diffs.index:
            paired = diffs.loc[[(loss, seed)]]
            row["slope_vs_baseline"] = _slope_per_doubling(paired["batch_size"].to_numpy(),
                                                           paired["diff"].to_numpy("float64"))
        rows.append(row)
    out = pd.DataFrame(rows, columns=SEED_SLOPE_COLUMNS)
    return out.astype({"loss": "object", "seed": "int64", "n_batch_sizes": "int64", "slope": "float64",
                       "slope_vs_baseline": "float64"})


def slope_table(
    df: pd.DataFrame,
    baseline: str = "ce",
    method: str = "t",
    ci: float = 0.95,
    min_seeds: int = MIN_SEEDS,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per loss: mean slope per doubling over seeds, and the mean slope of the paired difference, with CIs.

    Built on :func:`seed_slopes`: each seed's slope is one observation, and :func:`interval` takes
    the interval over seeds (so three batch sizes of one subset are never three observations).
    ``n_seeds`` counts seeds with a slope (≥ 2 batch sizes); ``n_batch_sizes`` the distinct batch
    sizes the family has. ``slope_vs_baseline`` < 0 with an interval below zero: the family is
    less batch-size sensitive than the baseline. ``note`` is :func:`interval`'s, prefixed with
    "vs baseline: " when only the paired-difference slope lacks seeds. NaN for the baseline's own
    vs-baseline columns.
    """
    data = per_seed(df)
    slopes = seed_slopes(df, baseline)
    options = {"method": method, "ci": ci, "min_seeds": min_seeds, "n_boot": n_boot, "seed": seed}
    rows = []
    for loss, part in slopes.groupby("loss", sort=True):
        own = interval(part["slope"], **options)
        row = {"loss": loss, "n_seeds": own["n"],
               "n_batch_sizes": int(data.loc[data["loss"] == loss, "batch_size"].nunique()),
               "slope": own["mean"], "ci_low": own["low"], "ci_high": own["high"],
               "slope_vs_baseline": float("nan"), "vs_baseline_ci_low": float("nan"),
               "vs_baseline_ci_high": float("nan"), "note": own["note"]}
        if loss != baseline:
            versus = interval(part["slope_vs_baseline"], **options)
            row.update(slope_vs_baseline=versus["mean"], vs_baseline_ci_low=versus["low"],
                       vs_baseline_ci_high=versus["high"])
            if versus["note"] and not own["note"]:
                row["note"] = f"vs baseline: {versus['note']}"
        rows.append(row)
    out = pd.DataFrame(rows, columns=SLOPE_TABLE_COLUMNS)
    return out.astype({"loss": "object", "n_seeds": "int64", "n_batch_sizes": "int64", "note": "object"})
