"""The confirm stage: each cell's finalists and its baseline retrained on fresh seeds, scored once on test.

A sweep chooses; it does not report (DESIGN.md section 5b). The search picks configs, epochs and cells on
``val``, so its best numbers carry the winner's curse: the maximum of many noisy estimates is biased
upwards by about the noise times the number of looks. Confirm removes that by re-running what was
chosen on data the choice never saw:

- **Finalists**: per grid cell the ``top`` configs by the search objective (the mean over a config's
  completed seeds of ``best_objective``, the number the searcher ranked them by), plus the baseline
  family's best config at the same cell (same grid values but the loss; ``ce`` where the sweep has it),
  so every family is paired with the baseline at every batch size.
- **Seeds**: ``seeds`` fresh seeds, never used by the search (:func:`confirm_seeds` starts at
  :data:`CONFIRM_SEED_BASE` and skips every seed the search's rows name), the same list for every
  family and batch size so results pair by seed. The seed moves the few-shot subset, the init and the
  data order together (``subset_seed``, ``init_seed``, ``order_seed`` left to follow it).
- **Budget**: the space's full ``max_epochs``, no pruning; the weights scored on test are the final
  epoch's (``epoch: final``, the default) or the best epoch on val (``best_val``), chosen before test
  is read. Test is scored once per trial (``score_test``); nothing else in a sweep can read it.

Every job has a key, ``<cell>/<role><rank>/s<seed>``, stored in the trial row's ``confirm_job``. The
store is the ledger: a job whose key is in the store with an ending (any status but error) is not run
again, so a killed confirm resumed (or simply run again) runs each job once. This module plans and
summarises; it does not import Ray (:mod:`tune_schane.ray_tune._confirm` runs the plan).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..finetune.config import TrialConfig
from ..space.storage import cell_key
from ..store.records import config_from_row, plain

if TYPE_CHECKING:
    import pandas as pd

    from ..space.search_space import SearchSpace

CONFIRM_SEED_BASE = 1000  # confirm seeds start here: far from a search's 0, 1, 2, ... (and checked against them)
SEED_COLUMNS = ("config_seed", "config_subset_seed", "config_init_seed", "config_order_seed")
BASELINE = "ce"
FINISHED = ("completed", "pruned", "diverged", "oom")  # a job that ended so is done; an errored one runs again


@dataclass(frozen=True)
class ConfirmJob:
    """One confirm trial: a chosen config retrained with one fresh seed."""

    key: str  # <cell>/<role><rank>/s<seed>: one store row per key
    cell: str  # the grid cell it was chosen in (cell_key)
    role: str  # finalist (top-k of its cell) | baseline (the baseline family's best at the same cell)
    rank: int  # 1 = the cell's best
    seed: int
    search_value: float  # the config's search objective on val (mean over its seeds): selection, optimistic
    source_trials: tuple[str, ...]  # the search trials (one per seed) of the config it retrains
    config: TrialConfig

    def ray_fields(self) -> dict[str, Any]:
        """What the confirm trial carries in its Ray config besides the TrialConfig (the store reads it)."""
        return {"cell_key": self.cell, "role": self.role, "rank": self.rank,
                "search_value": self.search_value, "source_trials": list(self.source_trials)}


def search_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows a search wrote (``stage`` search, or null in stores written before the column)."""
    if "stage" not in trials:
        return trials
    stage = trials["stage"].astype("object")
    return trials[(stage.isna() | stage.eq("search")).to_numpy(dtype=bool)]


def confirm_rows(trials: pd.DataFrame) -> pd.DataFrame:
    if "stage" not in trials:
        return trials.iloc[0:0]
    return trials[trials["stage"].astype("object").eq("confirm").to_numpy(dtype=bool)]  # null: not confirm


def used_seeds(trials: pd.DataFrame) -> set[int]:
    """Every seed the search's rows name (the trial seed and any split seed)."""
    rows = search_rows(trials)
    seeds: set[int] = set()
    for column in SEED_COLUMNS:
        if column in rows:
            seeds.update(int(v) for v in rows[column].dropna())
    return seeds


def confirm_seeds(used: set[int], n: int, start: int = CONFIRM_SEED_BASE) -> list[int]:
    """``n`` seeds from ``start`` on, skipping ``used``: the same list for every family and batch size."""
    seeds, seed = [], start
    while len(seeds) < n:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds


def ranked_configs(trials: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """One row per searched config (its seeds grouped), with its cell, value and search trials, best first.

    A config is identified by its searched params (the ``params`` column: the cell's values and the
    sampled ones); its value is the mean ``best_objective`` over its *completed* seeds (a pruned seed
    never reached the budget the finalist will be retrained for). Configs with no completed seed are left out.
    """
    import pandas as pd

    rows = search_rows(trials)
    rows = rows[(rows["status"].astype(str) == "completed") & rows["best_objective"].notna()]
    columns = ["cell", "loss", "others", "params", "value", "n_seeds", "trials", "row"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for params, group in rows.groupby(rows["params"].fillna("{}").astype(str), sort=False):
        first = group.sort_values("trial_id").iloc[0]
        cell = {axis: plain(first[f"config_{axis}"]) for axis in space.grid}
        others = {axis: value for axis, value in cell.items() if axis != "loss"}
        out.append({"cell": cell_key(cell), "loss": str(first["config_loss"]), "others": json.dumps(others),
                    "params": params, "value": float(group["best_objective"].astype(float).mean()),
                    "n_seeds": len(group), "trials": tuple(sorted(group["trial_id"].astype(str))), "row": first})
    table = pd.DataFrame(out, columns=columns)
    ascending = space.objective_mode == "min"
    return table.sort_values(["value", "params"], ascending=[ascending, True], kind="stable").reset_index(drop=True)


def plan_confirm(trials: pd.DataFrame, space: SearchSpace, *, top: int = 1, seeds: int = 5,
                 epoch: str = "final", baseline: str = BASELINE) -> list[ConfirmJob]:
    """The confirm jobs of a sweep's search rows (see the module docstring); BadInput if there is none."""
    if top < 1 or seeds < 1:
        raise BadInput(f"confirm: --top and --seeds must be >= 1, got {top} and {seeds}")
    ranked = ranked_configs(trials, space)
    if ranked.empty:
        raise BadInput("confirm: the sweep has no completed search trial to confirm")
    seed_list = confirm_seeds(used_seeds(trials), seeds)
    chosen: dict[str, tuple[str, int, str, Any]] = {}  # params -> (role, rank, cell, ranked row)
    for cell, group in ranked.groupby("cell", sort=False):
        for rank, (_, entry) in enumerate(group.head(top).iterrows(), start=1):
            chosen.setdefault(entry["params"], ("finalist", rank, cell, entry))
    for _, group in ranked.groupby("cell", sort=False):  # the baseline's best where each cell's others are
        same = ranked[(ranked["others"] == group["others"].iloc[0]) & (ranked["loss"] == baseline)]
        if not same.empty and same.iloc[0]["params"] not in chosen:
            entry = same.iloc[0]
            chosen[entry["params"]] = ("baseline", 1, entry["cell"], entry)
    jobs = []
    for role, rank, cell, entry in chosen.values():
        config = _confirm_config(config_from_row(entry["row"]), space, epoch)
        for seed in seed_list:
            jobs.append(ConfirmJob(key=f"{cell}/{role}{rank}/s{seed}", cell=cell, role=role, rank=rank, seed=seed,
                                   search_value=float(entry["value"]), source_trials=tuple(entry["trials"]),
                                   config=dataclasses.replace(config, seed=seed)))
    return sorted(jobs, key=lambda job: (job.seed, job.cell, job.role, job.rank))


def _confirm_config(config: TrialConfig, space: SearchSpace, epoch: str) -> TrialConfig:
    """The searched config at the full budget, scoring test; the split seeds follow the new seed."""
    split_seeds = {name: None for name in ("subset_seed", "init_seed", "order_seed")
                   if name in TrialConfig.__dataclass_fields__}
    return dataclasses.replace(config, epochs=space.max_epochs, score_test=True, test_epoch=epoch,
                               **split_seeds).resolved()


def pending_jobs(jobs: list[ConfirmJob], trials: pd.DataFrame) -> list[ConfirmJob]:
    """The jobs the store does not hold with an ending (an errored job runs again)."""
    done = done_keys(trials)
    return [job for job in jobs if job.key not in done]


def done_keys(trials: pd.DataFrame) -> set[str]:
    rows = confirm_rows(trials)
    if rows.empty or "confirm_job" not in rows:
        return set()
    return set(rows.loc[rows["status"].astype(str).isin(FINISHED), "confirm_job"].dropna().astype(str))
