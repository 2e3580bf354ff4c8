"""How a replayed sweep is judged against the table's truth, and the statistics over searcher seeds.

Per cell (loss family × batch size):

- *truth*: the best true value in the cell's pool, a config's true value being the mean over the
  table's seeds of its final val_top1 (what ``tune-schane train best.yaml`` reproduces on average);
- *pick*: the completed trial with the best ``best_objective`` (the analysis' and export's rule);
- *selection regret*: truth − the pick's true value (≥ 0; a cell without a completed trial is charged
  truth − its worst config's true value: no answer is as bad as the worst one);
- *reporting error*: the pick's ``best_objective`` − truth (signed);
- *optimism*: the pick's ``best_objective`` − the pick's own true value (> 0: the reported number
  promises more than its config delivers; the max over epochs and over trials is optimistic).

The *selection floor* of a cell: the regret of picking among every pool point by one seed's final value
(an exhaustive search with one seed per config): what one-seed selection cannot beat on this table.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from benchmarks.replay.simulate import Replay
from benchmarks.replay.table import Table


def regrets(table: Table, picks: list) -> np.ndarray:
    """Per-cell selection regret of ``picks`` (one completed trial or None per cell)."""
    means, truth = table.true_means(), table.truth()
    worst = means.min(axis=1)
    return np.array([truth[c] - (means[c, p.point] if p is not None else worst[c]) for c, p in enumerate(picks)])


def score(table: Table, rep: Replay) -> dict:
    picks = rep.picks(len(table.cells))
    regret = regrets(table, picks)
    truth = table.truth()
    errors = [p.best - truth[c] for c, p in enumerate(picks) if p is not None]
    means = table.true_means()
    optimism = [p.best - means[c, p.point] for c, p in enumerate(picks) if p is not None]
    return {"regret": float(regret.mean()), "per_cell": regret.tolist(),
            "report_error": float(np.mean(errors)) if errors else math.nan,
            "optimism": float(np.mean(optimism)) if optimism else math.nan,
            "missing": sum(p is None for p in picks), "epochs": rep.epochs, "trials": len(rep.trials),
            "snap": float(np.mean([t.snap for t in rep.trials])), "observed": [p.best if p else None for p in picks]}


def anytime(table: Table, rep: Replay, budgets: np.ndarray) -> np.ndarray:
    """Mean selection regret after each epoch budget: the picks among the trials ended by then."""
    times = np.array([t for t, _ in rep.reports])
    counts = np.array([n for _, n in rep.reports])
    spent = [int(counts[np.searchsorted(times, t.end, side="right") - 1]) for t in rep.trials]
    out = np.empty(len(budgets))
    for i, budget in enumerate(budgets):
        upto = int(np.searchsorted(spent, budget, side="right"))  # spent is non-decreasing in end order
        out[i] = regrets(table, rep.picks(len(table.cells), upto)).mean()
    return out


def iqm(x: np.ndarray) -> float:
    return float(stats.trim_mean(x, 0.25))


def ci(x: np.ndarray, statistic=np.mean, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI (10,000 resamples, fixed generator)."""
    if len(x) < 2 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), statistic, confidence_level=level, n_resamples=10_000, method="percentile",
                          rng=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """``a − b`` over the same seeds: mean with its bootstrap CI and the Wilcoxon signed-rank p-value."""
    d = np.asarray(a) - np.asarray(b)
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"mean_diff": float(d.mean()), "ci": ci(d), "p": p}


def rank_correlations(table: Table) -> np.ndarray:
    """``[cell, report]``: Spearman ρ over the pool between one seed's value at a report and the true value.

    One seed's early value is what ASHA ranks a trial by; averaged over the table's seeds.
    """
    truth = table.true_means()
    out = np.full((len(table.cells), table.reports), np.nan)
    for c in range(len(table.cells)):
        for r in range(table.reports):
            rhos = []
            for s in range(table.values.shape[2]):
                x = table.values[c, :, s, r]
                keep = ~np.isnan(x)
                if keep.sum() > 2 and np.ptp(x[keep]) > 0:
                    rhos.append(stats.spearmanr(x[keep], truth[c, keep]).statistic)
            out[c, r] = np.mean(rhos) if rhos else np.nan
    return out


def transfer_regret(table: Table, k: int = 3) -> np.ndarray:
    """``[source, target]``: regret in the target cell of the best of the source's top-``k`` configs run there."""
    means, truth = table.true_means(), table.truth()
    top = np.argsort(-means, axis=1)[:, :k]
    return np.array([[truth[t] - means[t, top[s]].max() for t in range(len(table.cells))]
                     for s in range(len(table.cells))])


def selection_floor(table: Table) -> np.ndarray:
    """``[cell]``: mean over seeds of the regret of the pool point with the best final value at that seed."""
    means, truth = table.true_means(), table.truth()
    final = np.nan_to_num(table.values[..., -1], nan=-np.inf)
    return np.array([np.mean([truth[c] - means[c, int(np.argmax(final[c, :, s]))] for s in range(final.shape[2])])
                     for c in range(len(table.cells))])


def seed_noise(table: Table) -> np.ndarray:
    """``[cell]``: the median over the pool of the standard deviation over seeds of the final val_top1."""
    final = table.values[..., -1]
    return np.nanmedian(np.nanstd(final, axis=2, ddof=1), axis=1)
