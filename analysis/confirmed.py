"""The confirm stage's numbers (the ones to report), the winner's curse, and the report's guard-rails.

Confirm rows (``stage == "confirm"``, written by ``tune-schane confirm``) retrain each cell's finalists
and the baseline on fresh seeds shared by every config, and score once on the sealed test split
(``test_top1``). Here the seed is the unit: each family is paired with the baseline at the same batch
size and seed, intervals are t-intervals over seeds (:mod:`analysis.seed_stats`), and a cell with
fewer than five seeds gets no interval. Search-stage numbers appear only beside them, labelled
"selection (optimistic)": they were chosen on the images they are scored on.

DataFrame in, DataFrame (or lines of text) out; no I/O.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from tune_schane.search.confirm import confirm_rows as confirm_part
from tune_schane.search.confirm import search_rows as search_part

from .seed_stats import MIN_SEEDS, interval, paired_table, prob_improvement, slope_table
from .sensitivity import subset_seed

SUMMARY_COLUMNS = ["cell", "role", "rank", "loss", "batch_size", "n_seeds", "test_mean", "ci_low", "ci_high",
                   "note", "selection_val", "val_minus_test", "vs_ci_low", "vs_ci_high"]
PROB_COLUMNS = ["loss", "baseline", "n_seeds", "p_better", "ci_low", "ci_high"]
SELECTION = "selection (optimistic)"


def stages(trials: pd.DataFrame) -> pd.Series:
    """Each row's stage; rows of stores written before the column are search rows."""
    if "stage" not in trials:
        return pd.Series("search", index=trials.index)
    return trials["stage"].astype("object").where(trials["stage"].notna(), "search")


def _meta(trials: pd.DataFrame, key: str) -> pd.Series:
    """A confirm row's job field (cell_key, role, rank, search_value), kept in its ``params`` JSON."""
    def one(text):
        try:
            return json.loads(text or "{}").get(key)
        except (TypeError, ValueError):
            return None

    return trials["params"].map(one) if "params" in trials else pd.Series(None, index=trials.index)


def confirm_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed confirm rows as ``cell, role, rank, loss, batch_size, seed, value`` (value = test top-1)."""
    rows = confirm_part(trials)
    rows = rows[rows["status"].astype(str) == "completed"]
    return pd.DataFrame({
        "cell": _meta(rows, "cell_key").to_numpy(), "role": _meta(rows, "role").to_numpy(),
        "rank": pd.to_numeric(_meta(rows, "rank")).to_numpy(),
        "selection_val": pd.to_numeric(_meta(rows, "search_value")).to_numpy(),
        "loss": rows["config_loss"].astype(str).to_numpy(),
        "batch_size": pd.to_numeric(rows["config_batch_size"]).astype("int64").to_numpy(),
        "seed": subset_seed(rows).to_numpy(),
        "value": pd.to_numeric(rows.get("test_top1"), errors="coerce").astype("float64").to_numpy(),
    })


def confirm_summary(trials: pd.DataFrame, *, ci: float = 0.95) -> pd.DataFrame:
    """Per confirmed config: the test mean over fresh seeds with its t-interval, and the winner's curse.

    ``selection_val`` is the config's search objective on val (the mean of its search seeds' best
    epochs): what the search reported. ``val_minus_test`` = selection_val − test_mean, with the interval
    ``vs_ci_*`` = selection_val − the test mean's interval (the search value is taken as given: it is the
    number that was printed). A positive difference is the optimism of picking on the scored images
    (plus any val/test shift).
    """
    data = confirm_frame(trials)
    rows = []
    for (cell, role, rank), group in data.groupby(["cell", "role", "rank"], sort=True):
        stats = interval(group.groupby("seed")["value"].mean(), ci=ci)
        selection = float(group["selection_val"].iloc[0])
        rows.append({"cell": cell, "role": role, "rank": int(rank), "loss": group["loss"].iloc[0],
                     "batch_size": int(group["batch_size"].iloc[0]), "n_seeds": stats["n"],
                     "test_mean": stats["mean"], "ci_low": stats["low"], "ci_high": stats["high"],
                     "note": stats["note"], "selection_val": selection,
                     "val_minus_test": selection - stats["mean"], "vs_ci_low": selection - stats["high"],
                     "vs_ci_high": selection - stats["low"]})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def headline(trials: pd.DataFrame) -> pd.DataFrame:
    """One config per (family, batch size) for the paired analyses: each cell's rank-1 finalist or baseline."""
    data = confirm_frame(trials)
    data = data[data["rank"] == 1]
    # With the loss a grid axis a family's config at a batch size is its cell's finalist; where the loss is
    # searched, a cell's finalist and its baseline differ by family. Either way one config per (loss, batch).
    first = data.sort_values(["loss", "batch_size", "role"]).groupby(["loss", "batch_size"])["cell"].first()
    keep = data.set_index(["loss", "batch_size"]).index.map(lambda key: first.get(key)) == data["cell"].to_numpy()
    return data[keep][["loss", "batch_size", "seed", "value"]]


def confirm_paired(trials: pd.DataFrame, baseline: str = "ce", ci: float = 0.95) -> pd.DataFrame:
    """Family − baseline on test, per batch size and pooled, the interval over seeds (confirm rows)."""
    return paired_table(headline(trials), baseline=baseline, ci=ci)


def confirm_slopes(trials: pd.DataFrame, baseline: str = "ce", ci: float = 0.95) -> pd.DataFrame:
    """The test accuracy's slope per doubling of the batch fitted per seed, with its interval over seeds."""
    return slope_table(headline(trials), baseline=baseline, ci=ci)


def confirm_prob_improvement(trials: pd.DataFrame, baseline: str = "ce") -> pd.DataFrame:
    """P(family > baseline) on test over seeds and batch sizes (rliable's probability of improvement)."""
    data = headline(trials)
    rows = []
    for loss in sorted(set(data["loss"]) - {baseline}):
        if baseline not in set(data["loss"]):
            break
        out = prob_improvement(data, loss, baseline)
        rows.append({"loss": loss, "baseline": baseline, "n_seeds": out["n_seeds"], "p_better": out["p"],
                     "ci_low": out["low"], "ci_high": out["high"]})
    return pd.DataFrame(rows, columns=PROB_COLUMNS)


def effort_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Search effort per family: trials, completed trials, cells and trials per cell (equal effort or not)."""
    search = search_part(trials)
    if search.empty:
        return pd.DataFrame(columns=["loss", "trials", "completed", "batch_sizes", "min_per_cell", "max_per_cell"])
    per_cell = search.groupby(["config_loss", "config_batch_size"]).size()
    rows = []
    for loss, part in search.groupby("config_loss", sort=True):
        cells = per_cell.loc[loss]
        rows.append({"loss": str(loss), "trials": len(part), "completed": int((part["status"] == "completed").sum()),
                     "batch_sizes": len(cells), "min_per_cell": int(cells.min()), "max_per_cell": int(cells.max())})
    return pd.DataFrame(rows)


def guard_rails(trials: pd.DataFrame, *, searcher: str | None = None, startup_trials: int | None = None,
                repeats: int | None = None) -> dict[str, str]:
    """Plain warnings, keyed by the result they affect (``headline``, ``epoch``, ``effort``, ``tpe``, ``val``).

    ``searcher``, ``startup_trials`` and ``repeats`` come from the sweep's space where it is recorded.
    """
    notes: dict[str, str] = {}
    search, confirm = search_part(trials), confirm_part(trials)
    done = confirm[confirm["status"].astype(str) == "completed"] if len(confirm) else confirm
    if done.empty:
        notes["headline"] = ("Every number in this report rests on the search stage only: configs, epochs and cells "
                             "were chosen on the same val images they are scored on, so they are "
                             f"{SELECTION}. Run `tune-schane confirm` for numbers to report.")
    if len(search):
        notes["epoch"] = ("Search-stage values are each trial's best epoch on val, picked and reported on the same "
                          "val images (best_objective): the epoch pick adds to the optimism.")
        if "val_from" not in search or search["val_from"].isna().all():
            notes["val"] = ("This store was written before val was carved from the training pool: its val images "
                            "were part of the dataset's test split, so search-stage numbers here are also "
                            "test-split numbers chosen on themselves.")
    effort = effort_table(trials)
    if len(effort) > 1 and (effort["trials"].nunique() > 1 or effort["min_per_cell"].nunique() > 1):
        listed = ", ".join(f"{r.loss} {r.trials}" for r in effort.itertuples())
        notes["effort"] = (f"Families had unequal numbers of search trials ({listed}): a best-of-n comparison "
                           "favours the family with more draws; see the expected-best-of-n curves.")
    if searcher == "optuna" and startup_trials and len(search):
        cells = search.groupby(["config_loss", "config_batch_size"]).size()
        configs = cells / max(repeats or 1, 1)
        short = configs[configs <= startup_trials]
        if len(short):
            notes["tpe"] = (f"TPE was still in its start-up phase in {len(short)} of {len(configs)} cells "
                            f"(at most {startup_trials} configs each, all drawn at random): no model-based "
                            "search happened there.")
    return notes


def summary_lines(trials: pd.DataFrame) -> list[str]:
    """The terminal summary of the confirm stage, confirm numbers first; empty when there is none."""
    table = confirm_summary(trials)
    if table.empty:
        return []
    shown = table[["loss", "batch_size", "role", "rank", "n_seeds", "test_mean", "ci_low", "ci_high",
                   "selection_val", "val_minus_test"]].rename(
        columns={"test_mean": "test_top1", "selection_val": "selection_val(optimistic)"})
    lines = [f"confirm stage (test split; mean over fresh seeds, 95% t-interval over seeds, none below "
             f"{MIN_SEEDS} seeds):"]
    lines += shown.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-").splitlines()
    paired = confirm_paired(trials)
    pooled = paired[paired["batch_size"].isna()] if len(paired) else paired
    for row in pooled.itertuples():
        ci = ("not enough seeds for an interval" if not math.isfinite(row.ci_low)
              else f"95% CI {row.ci_low:+.2f}..{row.ci_high:+.2f}")
        lines.append(f"{row.loss} - {row.baseline} on test, averaged over batch sizes per seed: "
                     f"{row.mean_diff:+.2f} points (n={row.n_seeds} seeds, {ci})")
    return lines
