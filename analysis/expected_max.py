"""Expected validation performance against the tuning budget: E[best of n trials].

Why: comparing families by the best of everything each one's search tried rewards whichever got
the larger (or luckier) budget. The expected maximum of n trials, as a curve over n, shows what
each family reaches for a given budget, and whether its lead holds at small budgets too (Dodge et
al. 2019, "Show Your Work: Improved Reporting of Experimental Results", EMNLP).

Two estimators from the N observed trial scores v_(1) ≤ … ≤ v_(N):

- :func:`expected_max_iid` (Dodge et al. 2019): the expected maximum of n draws *with
  replacement* from the empirical distribution, Σ_i v_(i)·[(i/N)^n − ((i−1)/N)^n]. Defined for any
  n ≥ 1, but biased: for n near or beyond N it reuses the few best trials.
- :func:`expected_max_tang` (Tang et al. 2020, "Showing Your Work Doesn't Always Work"; also in
  Dodge et al.'s follow-up): the average, over all C(N, n) subsets of n distinct trials, of their
  maximum, Σ_{i=n}^{N} v_(i)·C(i−1, n−1)/C(N, n). Unbiased for E[max of n] for 1 ≤ n ≤ N; the sample
  mean at n = 1 and the sample maximum at n = N.

Both assume the trials are i.i.d. draws from one distribution of configurations. Trials proposed by
TPE (or any adaptive searcher) are not: later trials depend on earlier ones, so the curve is then
a description of this search rather than an estimate for a fresh one (the caller flags that; a
``searcher: random`` sweep makes it exact). ``mode="min"`` gives the expected minimum (negating the
scores). Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

ESTIMATORS = ("tang", "iid")
CURVE_COLUMNS = ["n", "expected", "low", "high"]
TABLE_COLUMNS = ["loss", "batch_size", "n", "n_trials", "expected", "low", "high"]


def _scores(scores: Sequence[float] | np.ndarray | pd.Series, mode: str) -> np.ndarray:
    """Finite scores as float64, negated in ``min`` mode (so every estimator takes a maximum)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    array = np.asarray(scores, dtype="float64").ravel()
    array = array[~np.isnan(array)]
    if len(array) == 0:
        raise ValueError("expected maximum of no scores")
    return -array if mode == "min" else array


def _budgets(ns: int | Iterable[int]) -> np.ndarray:
    array = np.atleast_1d(np.asarray(ns))
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 1):
        raise ValueError(f"budgets n must be integers ≥ 1, got {ns!r}")
    return array.astype("int64")


def iid_weights(total: int, ns: int | Iterable[int]) -> np.ndarray:
    """Weights (len(ns), total) on the ascending scores: (i/N)^n − ((i−1)/N)^n, i = 1..N.

    P(the maximum of n draws with replacement is the i-th smallest score); each row sums to 1.
    """
    n = _budgets(ns)[:, None].astype("float64")
    i = np.arange(1, total + 1, dtype="float64")[None, :]
    return (i / total) ** n - ((i - 1) / total) ** n


def tang_weights(total: int, ns: int | Iterable[int]) -> np.ndarray:
    """Weights (len(ns), total) on the ascending scores: C(i−1, n−1)/C(N, n) for i ≥ n, else 0.

    The fraction of the C(N, n) subsets of n distinct trials whose maximum is the i-th smallest
    score. Computed in log space (``gammaln``) so that N in the thousands does not overflow; each
    row is renormalised to sum to exactly 1 (it does in exact arithmetic: the hockey-stick identity).
    """
    from scipy.special import gammaln

    n = _budgets(ns)
    if n.size and n.max() > total:
        raise ValueError(f"the unbiased (tang) estimator needs n ≤ N = {total}, got n = {int(n.max())}")
    n = n[:, None].astype("float64")
    i = np.arange(1, total + 1, dtype="float64")[None, :]
    valid = i >= n
    k = np.where(valid, i, n)  # keeps gammaln's arguments positive where the weight is 0 anyway
    log_choose = gammaln(k) - gammaln(n) - gammaln(k - n + 1)  # log C(i−1, n−1)
    log_total = gammaln(total + 1.0) - gammaln(n + 1) - gammaln(total - n + 1)  # log C(N, n)
    weights = np.where(valid, np.exp(log_choose - log_total), 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def _weights(estimator: str, total: int, ns: np.ndarray) -> np.ndarray:
    if estimator == "tang":
        return tang_weights(total, ns)
    if estimator == "iid":
        return iid_weights(total, ns)
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def expected_max_iid(scores: Sequence[float] | np.ndarray | pd.Series, n: int, *, mode: str = "max") -> float:
    """Expected maximum of ``n`` draws with replacement from the scores' empirical distribution (Dodge et al.).

    Any n ≥ 1. NaN scores are dropped. ``mode="min"``: the expected minimum.
    """
    values = np.sort(_scores(scores, mode))
    result = float(iid_weights(len(values), n)[0] @ values)
    return -result if mode == "min" else result


def expected_max_tang(scores: Sequence[float] | np.ndarray | pd.Series, n: int, *, mode: str = "max") -> float:
    """Unbiased expected maximum of ``n`` trials drawn without replacement (Tang et al. 2020).

    1 ≤ n ≤ N. Equals the sample mean at n = 1 and the sample maximum at n = N. NaN scores are
    dropped. ``mode="min"``: the expected minimum.
    """
    values = np.sort(_scores(scores, mode))
    result = float(tang_weights(len(values), n)[0] @ values)
    return -result if mode == "min" else result


def expected_max_curve(
    scores: Sequence[float] | np.ndarray | pd.Series,
    ns: Iterable[int] | None = None,
    estimator: str = "tang",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    mode: str = "max",
) -> pd.DataFrame:
    """E[best of n trials] for each budget n, with a percentile bootstrap band.

    ``ns`` defaults to 1..N; with ``estimator="tang"`` budgets above N are dropped (the unbiased
    estimator is undefined there). The band resamples the N scores with replacement ``n_boot``
    times and recomputes the estimator; it shows how much the curve depends on which trials
    happened to be drawn (it inherits the i.i.d. assumption, see the module docstring). Every
    bootstrap curve is non-decreasing in n (non-increasing in ``min`` mode), hence so are the band's
    edges. Near n = N the band is optimistic: a resample cannot exceed the observed maximum, so
    the band's top there is the sample maximum itself. Columns: n, expected, low, high.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    values = _scores(scores, mode)
    total = len(values)
    budgets = np.arange(1, total + 1) if ns is None else np.unique(_budgets(list(ns)))
    if estimator == "tang":
        budgets = budgets[budgets <= total]
    if budgets.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "n" else "float64") for c in CURVE_COLUMNS})
    weights = _weights(estimator, total, budgets)  # (len(budgets), N)
    expected = weights @ np.sort(values)
    rng = np.random.default_rng(seed)
    resampled = np.sort(values[rng.integers(0, total, size=(n_boot, total))], axis=1)
    replicates = resampled @ weights.T  # (n_boot, len(budgets))
    low, high = np.quantile(replicates, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    if mode == "min":
        expected, low, high = -expected, -high, -low
    return pd.DataFrame({"n": budgets.astype("int64"), "expected": expected, "low": low, "high": high})


def expected_max_table(
    df: pd.DataFrame,
    ns: Iterable[int] | None = None,
    estimator: str = "tang",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    mode: str = "max",
) -> pd.DataFrame:
    """Expected best-of-n curves per (loss, batch size), one row per budget n.

    ``df``: columns loss, batch_size, value, one row per search trial (NaN values, e.g. failed
    trials, are dropped; whether a failed trial should instead count as a spent budget is the
    caller's choice). Each cell gets :func:`expected_max_curve` on its own trials with the same
    ``ns`` (1..n_trials by default; capped at n_trials for ``tang``). Columns: loss, batch_size, n,
    n_trials, expected, low, high.

    The estimators assume the trials are i.i.d. draws; trials proposed by TPE are not (each
    depends on the ones before), so for a TPE sweep the table describes that search rather than a
    fresh one; the caller flags it. ``searcher: random`` makes it exact.
    """
    missing = [c for c in ("loss", "batch_size", "value") if c not in df]
    if missing:
        raise ValueError(f"expected_max_table needs columns loss, batch_size, value; missing {missing}")
    data = pd.DataFrame({"loss": df["loss"].astype(str), "batch_size": pd.to_numeric(df["batch_size"]),
                         "value": pd.to_numeric(df["value"], errors="coerce").astype("float64")})
    data = data[data["value"].notna()].astype({"batch_size": "int64"})
    budgets = None if ns is None else list(ns)
    parts = []
    for (loss, batch), cell in data.groupby(["loss", "batch_size"], sort=True):
        curve = expected_max_curve(cell["value"].to_numpy(), budgets, estimator, n_boot, ci, seed, mode=mode)
        curve.insert(0, "n_trials", len(cell))
        curve.insert(0, "batch_size", int(batch))
        curve.insert(0, "loss", loss)
        parts.append(curve)
    if not parts:
        return pd.DataFrame({"loss": pd.Series(dtype="object"), "batch_size": pd.Series(dtype="int64"),
                             "n": pd.Series(dtype="int64"), "n_trials": pd.Series(dtype="int64"),
                             **{c: pd.Series(dtype="float64") for c in ("expected", "low", "high")}})
    out = pd.concat(parts, ignore_index=True)[TABLE_COLUMNS]
    return out.astype({"batch_size": "int64", "n": "int64", "n_trials": "int64"})
