"""The search-space YAML schema: parsing and validation of one mapping into typed pieces.

:mod:`tune_schane.space` owns the :class:`~tune_schane.space.search_space.SearchSpace` and what it compiles to;
this module and :mod:`tune_schane.space._params` (the ``params:`` section and the value checks) own the
file format, so that every rule about what a space file may say lives in one place. Every refusal is a
:class:`BadInput` whose message starts with the key at fault (``params.tau.when: ...``);
:func:`tune_schane.space.search_space.load_space` prefixes the file name.

Why each check exists (all run before Ray starts, where a mistake costs nothing):

- unknown keys anywhere: a typo (``grace_peroid``) would otherwise silently fall back to a default;
- values are coerced with :meth:`TrialConfig.from_dict`'s rules, so ``1e-4`` (a *string* in YAML 1.1)
  becomes a float but ``"abc"`` is refused, exactly as on the command line;
- a ``when`` may name only an earlier parameter, a grid axis or a fixed value: define-by-run samples
  in file order, so this rules out cycles and forward references by construction;
- ``epochs`` comes from ``scheduler.max_epochs`` alone: two sources of one number would disagree;
- a ``budget: {unit: steps | samples, value, reports}`` block holds the training length fixed in steps or
  images across batch sizes; the scheduler then counts in that unit (``grace_period: 60`` steps), its
  rungs land on report boundaries (``value / reports`` apart) and ``max_epochs`` is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput
from ..finetune.config import TrialConfig
from ..finetune.outcomes import EPOCH_METRICS, OBJECTIVE_MODES, TEST_EPOCH_PICKS
from ._params import (
    ParamSpec,
    config_field,
    config_value,
    distinct,
    integer,
    mapping,
    not_reserved_or_taken,
    number,
    only,
    parse_params,
)

__all__ = ["ParamSpec", "ResourceRule", "lookup", "parse_space_mapping"]

TOP_KEYS = ("name", "description", "fixed", "params", "grid", "objective", "searcher", "scheduler",
            "num_samples", "repeats", "max_concurrent", "resources", "lr_rule", "optuna_storage", "confirm", "budget")
BUDGET_KEYS = ("unit", "value", "reports")
CONFIRM_KEYS = ("top", "seeds", "epoch")
CONFIRM_DEFAULTS = {"top": 1, "seeds": 5, "epoch": "final"}  # tune-schane confirm's defaults too
SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "fifo")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ResourceRule:
    """CPU and GPU per trial: a number, or a table by batch size (the first key >= the batch size).

    A table lets small-batch trials share a GPU (4 × 0.25) while big ones get a whole card.
    """

    cpu: float | dict[int, float] = 1.0
    gpu: float | dict[int, float] = 0.0

    def for_batch(self, batch_size: int) -> dict[str, float]:
        return {"cpu": lookup(self.cpu, batch_size, "cpu"), "gpu": lookup(self.gpu, batch_size, "gpu")}

    def describe(self) -> str:
        def one(rule: float | dict[int, float]) -> str:
            if isinstance(rule, dict):
                return "{" + ", ".join(f"<={k}: {v:g}" for k, v in sorted(rule.items())) + "}"
            return f"{rule:g}"

        return f"cpu {one(self.cpu)}, gpu {one(self.gpu)}"


def lookup(rule: float | dict[int, float], batch_size: int, kind: str) -> float:
    """The amount for one batch size; BadInput above the table's largest key."""
    if not isinstance(rule, dict):
        return float(rule)
    for key in sorted(rule):
        if batch_size <= key:
            return float(rule[key])
    raise BadInput(f"resources.{kind}: the by_batch_size table stops at {max(rule)} but the space can produce "
                   f"batch_size {batch_size}")


# ------------------------------------------------------------------------------------ parsing
def parse_space_mapping(data: dict[str, Any], default_name: str) -> dict[str, Any]:
    """Validate a space mapping; return the keyword arguments of SearchSpace (less source and path)."""
    only(data, TOP_KEYS, "top level")
    fixed = _fixed(data)
    budget = _budget(data.get("budget"), fixed)
    scheduler = _scheduler(data.get("scheduler"), fixed, budget)
    searcher, seed, sharing = _searcher(data.get("searcher"))
    grid = _grid(data.get("grid"), fixed)
    params = parse_params(data.get("params"), fixed, grid, searcher)
    metric, mode = _objective(data.get("objective"))
    return {
        "name": _name(data.get("name", default_name)),
        "description": _description(data.get("description")),
        "fixed": fixed, "params": params, "grid": grid,
        "objective_metric": metric, "objective_mode": mode,
        "searcher": searcher, "searcher_seed": seed, **sharing, **scheduler,
        "num_samples": _num_samples(data, searcher),
        "repeats": integer(data.get("repeats", 1), "repeats", 1),
        "max_concurrent": integer(data.get("max_concurrent", 1), "max_concurrent", 1),
        "resources": _resources(data.get("resources")),
        "optuna_storage": _optuna_storage(data.get("optuna_storage"), searcher),
        "confirm": parse_confirm(data.get("confirm")),
        "budget": budget,
    }


def parse_confirm(raw: Any) -> dict[str, Any] | None:
    """``confirm: {top: K, seeds: N, epoch: final|best_val}`` (or ``confirm: true`` for the defaults): the
    sweep ends with the confirm stage (tune_schane.search.confirm). Absent or false: no confirm stage."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return dict(CONFIRM_DEFAULTS)
    settings = mapping(raw, "confirm")
    only(settings, CONFIRM_KEYS, "confirm")
    epoch = settings.get("epoch", CONFIRM_DEFAULTS["epoch"])
    if epoch not in TEST_EPOCH_PICKS:
        raise BadInput(f"confirm.epoch: {epoch!r} is not one of {', '.join(TEST_EPOCH_PICKS)}")
    return {"top": integer(settings.get("top", CONFIRM_DEFAULTS["top"]), "confirm.top", 1),
            "seeds": integer(settings.get("seeds", CONFIRM_DEFAULTS["seeds"]), "confirm.seeds", 1),
            "epoch": epoch}


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise BadInput(f"name: {value!r} must be letters, digits, '_', '.' or '-' (it prefixes sweep ids)")
    return value


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput(f"description: expected text, got {type(value).__name__}")
    return value.strip()


def _fixed(data: dict[str, Any]) -> dict[str, Any]:
    fixed = {config_field(key, "fixed"): value for key, value in mapping(data.get("fixed"), "fixed").items()}
    fixed = {key: config_value(key, value, f"fixed.{key}") for key, value in fixed.items()}
    if "lr_rule" in data:  # its value is checked with the rest of fixed, by TrialConfig.validate
        rule = config_value("lr_rule", data["lr_rule"], "lr_rule")
        if fixed.get("lr_rule", rule) != rule:
            raise BadInput(f"lr_rule: {rule!r} contradicts fixed.lr_rule {fixed['lr_rule']!r}; give it once")
        fixed["lr_rule"] = rule
    return fixed


def _budget(raw: Any, fixed: dict[str, Any]) -> dict[str, Any] | None:
    """The ``budget`` block, written into ``fixed`` as ``budget_unit``/``budget``; None without one."""
    if raw is None:
        return None
    budget = mapping(raw, "budget")
    only(budget, BUDGET_KEYS, "budget")
    unit = budget.get("unit", "epochs")
    if unit not in ("steps", "samples"):
        raise BadInput(f"budget.unit: {unit!r} is not steps or samples (an epoch budget is scheduler.max_epochs)")
    for key in ("budget_unit", "budget", "epochs"):
        if key in fixed:
            raise BadInput(f"fixed.{key}: the budget block sets the training length; leave {key} out of fixed")
    value = integer(budget.get("value"), "budget.value", 1)
    reports = integer(budget.get("reports", 1), "budget.reports", 1)
    if value % reports:
        raise BadInput(f"budget.reports: {value} {unit} do not split into {reports} equal reports")
    fixed.update(budget_unit=unit, budget=value)
    return {"unit": unit, "value": value, "reports": reports}


def _scheduler(raw: Any, fixed: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scheduler settings; also removes ``epochs`` from ``fixed`` once it agrees with max_epochs.

    With a step/sample ``budget`` the scheduler counts in its unit: ``max_epochs`` is the budget's reports
    and ``grace_period`` (in steps or samples) becomes the report at which the first rung falls.
    """
    scheduler = mapping(raw, "scheduler")
    kind = scheduler.get("type", "asha")
    if kind not in SCHEDULERS:
        raise BadInput(f"scheduler.type: {kind!r} is not one of {', '.join(SCHEDULERS)}")
    allowed = {"type", "max_epochs"} | ({"grace_period", "reduction_factor", "tie"} if kind == "asha" else set())
    only(scheduler, allowed, f"scheduler ({kind})")
    factor = integer(scheduler.get("reduction_factor", 2), "scheduler.reduction_factor", 2)
    tie = number(scheduler.get("tie", 0.0), "scheduler.tie")
    if tie < 0:
        raise BadInput(f"scheduler.tie: {tie} must be >= 0 (objective units within which a rung counts a tie)")
    if budget is not None:
        if "max_epochs" in scheduler:
            raise BadInput(f"scheduler.max_epochs: the budget block sets the length ({budget['value']} "
                           f"{budget['unit']} in {budget['reports']} reports); leave max_epochs out")
        per_report = budget["value"] // budget["reports"]
        grace = integer(scheduler.get("grace_period", per_report), "scheduler.grace_period", 1)
        if grace % per_report or grace > budget["value"]:
            raise BadInput(f"scheduler.grace_period: {grace} {budget['unit']} is not a whole number of reports "
                           f"of {per_report} {budget['unit']} within the budget of {budget['value']}")
        return {"scheduler": kind, "max_epochs": budget["reports"], "grace_period": grace // per_report,
                "reduction_factor": factor, "rung_tie": tie}
    max_epochs = integer(scheduler.get("max_epochs", fixed.get("epochs", TrialConfig.epochs)),
                         "scheduler.max_epochs", 1)
    if fixed.pop("epochs", max_epochs) != max_epochs:
        raise BadInput(f"fixed.epochs: contradicts scheduler.max_epochs {max_epochs} (every trial runs "
                       "scheduler.max_epochs; leave epochs out of fixed)")
    grace = integer(scheduler.get("grace_period", 1), "scheduler.grace_period", 1)
    if grace > max_epochs:
        raise BadInput(f"scheduler.grace_period: {grace} is more than max_epochs {max_epochs}")
    return {"scheduler": kind, "max_epochs": max_epochs, "grace_period": grace, "reduction_factor": factor,
            "rung_tie": tie}


# Defaults of the searcher's grid switches (tune_schane/search/cell_sharing.py), chosen with `python -m
# benchmarks.search` and judged again over 50 seeds by `python -m benchmarks.replay` (docs/performance.md
# "Search efficiency": warm starts help, the rest ties).
# Best measured gap: warm starts on, patience off (it stops the hard cells with a bad incumbent), and
# 3 random start-up trials (Optuna's default of 10 leaves a 6-sample cell no TPE phase at all).
WARM_START = 3  # configs a cell may borrow from its neighbours' incumbents
PATIENCE = 0  # configs in a row without a better incumbent before a cell stops sampling; 0: never
STARTUP_TRIALS = 3  # TPE's random start-up trials per cell


def _searcher(raw: Any) -> tuple[str, int, dict[str, Any]]:
    """Type, seed, and the switches of :mod:`tune_schane.search.cell_sharing` (0 turns one off)."""
    searcher = mapping(raw, "searcher")
    only(searcher, {"type", "seed", "warm_start", "patience", "startup_trials"}, "searcher")
    kind = searcher.get("type", "optuna")
    if kind not in SEARCHERS:
        raise BadInput(f"searcher.type: {kind!r} is not one of {', '.join(SEARCHERS)}")
    seed = integer(searcher.get("seed", 0), "searcher.seed", 0)
    if kind == "grid":
        only(searcher, {"type", "seed"}, "searcher (grid: every grid point runs once)")
        return kind, seed, {"warm_start": 0, "patience": 0, "startup_trials": STARTUP_TRIALS}
    if kind != "optuna" and "startup_trials" in searcher:
        raise BadInput(f"searcher.startup_trials: only the optuna (TPE) searcher has start-up trials, not {kind}")
    return kind, seed, {
        "warm_start": integer(searcher.get("warm_start", WARM_START), "searcher.warm_start", 0),
        "patience": integer(searcher.get("patience", PATIENCE), "searcher.patience", 0),
        "startup_trials": integer(searcher.get("startup_trials", STARTUP_TRIALS), "searcher.startup_trials", 1)}


def _grid(raw: Any, fixed: dict[str, Any]) -> dict[str, list[Any]]:
    grid = {}
    for key, values in mapping(raw, "grid").items():
        where = f"grid.{config_field(key, 'grid')}"
        not_reserved_or_taken(key, where, fixed, {})
        if not isinstance(values, list) or not values:
            raise BadInput(f"{where}: expected a non-empty list of values")
        grid[key] = distinct([config_value(key, v, where) for v in values], where)
    return grid


def _objective(raw: Any) -> tuple[str, str]:
    objective = mapping(raw, "objective")
    only(objective, {"metric", "mode"}, "objective")
    metric, mode = objective.get("metric", "val_top1"), objective.get("mode", "max")
    if metric not in EPOCH_METRICS:
        raise BadInput(f"objective.metric: {metric!r} is not a reported epoch metric (one of "
                       f"{', '.join(EPOCH_METRICS)})")
    if mode not in OBJECTIVE_MODES:
        raise BadInput(f"objective.mode: {mode!r} must be max or min")
    return metric, mode


def _num_samples(data: dict[str, Any], searcher: str) -> int:
    """Configs per grid cell. The grid searcher's count comes from the space (set by the caller)."""
    if searcher == "grid":
        if data.get("num_samples", 1) != 1:
            raise BadInput("num_samples: the grid searcher runs every grid point once; leave num_samples out")
        return 1
    if "num_samples" not in data:
        raise BadInput(f"num_samples: required with the {searcher} searcher (configs per grid cell)")
    return integer(data["num_samples"], "num_samples", 1)


def _optuna_storage(value: Any, searcher: str) -> str | None:
    """Where the cells' Optuna studies live (tune_schane.space.storage); opened only when the sweep starts."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadInput("optuna_storage: expected a storage URL (sqlite:///studies.db) or a journal file path")
    if searcher == "grid":
        raise BadInput("optuna_storage: the grid searcher has no Optuna study to store; use optuna or random")
    return value.strip()


def _resources(raw: Any) -> ResourceRule:
    resources = mapping(raw, "resources")
    only(resources, {"cpu", "gpu"}, "resources")
    rule = ResourceRule(cpu=_resource(resources.get("cpu", 1), "cpu"), gpu=_resource(resources.get("gpu", 0), "gpu"))
    cpus = rule.cpu.values() if isinstance(rule.cpu, dict) else [rule.cpu]
    if any(c <= 0 for c in cpus):
        raise BadInput("resources.cpu: every trial needs some CPU (> 0)")
    return rule


def _resource(value: Any, kind: str) -> float | dict[int, float]:
    if not isinstance(value, dict):
        return _amount(value, f"resources.{kind}")
    only(value, {"by_batch_size"}, f"resources.{kind}")
    table = value.get("by_batch_size")
    where = f"resources.{kind}.by_batch_size"
    if not isinstance(table, dict) or not table:
        raise BadInput(f"{where}: expected a mapping of batch size to amount")
    return {integer(batch, f"{where} key", 1): _amount(amount, f"{where}.{batch}") for batch, amount in table.items()}


def _amount(value: Any, where: str) -> float:
    amount = number(value, where)
    if amount < 0:
        raise BadInput(f"{where}: must be >= 0, got {amount:g}")
    if amount > 1 and not amount.is_integer():
        raise BadInput(f"{where}: fractions are for sharing one device; above 1 use whole numbers, got {amount:g}")
    return amount
