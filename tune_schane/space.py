"""Search spaces: one YAML schema, validated once, compiled to Optuna define-by-run and to trial configs.

A space file (``search_spaces/*.yaml``; the README documents every key)::

    name: default
    fixed: {model: test_vit, dataset: digits}          # TrialConfig fields every trial shares
    params:                                            # the searched space, in dependency order
      loss: {choice: [ce, supcon, schane, clce]}
      tau:  {loguniform: [0.05, 0.5], when: {loss: [supcon, schane, clce]}}
    grid: {batch_size: [16, 32, 64]}                   # optional axes: one searcher per cell
    objective: {metric: val_top1, mode: max}
    searcher: {type: optuna, seed: 0}                  # optuna (TPE) | random | grid
    scheduler: {type: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}   # or fifo
    num_samples: 12                                    # per grid cell
    repeats: 1                                         # seeds per sampled config
    max_concurrent: 2
    resources: {cpu: 1, gpu: {by_batch_size: {64: 0.5, 256: 1}}}
    lr_rule: sqrt

Nothing else in the package parses these files. Every problem is a :class:`BadInput` naming the
file and key, raised before Ray starts. This module does not import Ray; ``ray_tune`` turns the
compiled pieces into Ray objects.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import LR_RULES, TrialConfig, field_types, read_yaml_mapping
from .errors import BadInput

TOP_KEYS = ("name", "description", "fixed", "params", "grid", "objective", "searcher", "scheduler",
            "num_samples", "repeats", "max_concurrent", "resources", "lr_rule")
KINDS = ("choice", "uniform", "loguniform", "int", "grid")
SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "fifo")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter; ``when`` maps another parameter to the values that activate this one."""

    name: str
    kind: str  # choice | uniform | loguniform | int
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, known: dict[str, Any]) -> bool:
        return all(known.get(name) in values for name, values in self.when.items())

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform", step=self.step)

    def sample(self, rng) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "int":
            if self.log:
                return round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
            step = int(self.step or 1)
            return int(self.low) + step * int(rng.integers((int(self.high) - int(self.low)) // step + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class ResourceRule:
    """CPU and GPU per trial: a number, or a table by batch size (the first key >= the batch size)."""

    cpu: float | dict[int, float] = 1.0
    gpu: float | dict[int, float] = 0.0

    def for_batch(self, batch_size: int) -> dict[str, float]:
        return {"cpu": _lookup(self.cpu, batch_size, "cpu"), "gpu": _lookup(self.gpu, batch_size, "gpu")}


def _lookup(rule: float | dict[int, float], batch_size: int, kind: str) -> float:
    if not isinstance(rule, dict):
        return float(rule)
    for key in sorted(rule):
        if batch_size <= key:
            return float(rule[key])
    raise BadInput(f"resources: {kind} table has no entry for batch_size {batch_size} (largest {max(rule)})")


@dataclass(frozen=True)
class SearchSpace:
    name: str
    fixed: dict[str, Any]
    params: dict[str, ParamSpec]
    grid: dict[str, list[Any]]
    objective_metric: str = "val_top1"
    objective_mode: str = "max"
    searcher: str = "optuna"
    searcher_seed: int = 0
    scheduler: str = "asha"
    max_epochs: int = 4
    grace_period: int = 1
    reduction_factor: int = 2
    num_samples: int = 8
    repeats: int = 1
    max_concurrent: int = 2
    resources: ResourceRule = field(default_factory=ResourceRule)
    source: str = ""
    path: str | None = None
    description: str = ""

    # --- compilation ---------------------------------------------------------------------
    def cells(self) -> list[dict[str, Any]]:
        """Grid cells in file order ([{}] without a grid)."""
        names = list(self.grid)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.grid.values())]

    def define_by_run(self, cell: dict[str, Any]) -> DefineByRun:
        """An Optuna define-by-run function for one cell: suggests active params in order, returns them."""
        return DefineByRun(self, dict(cell))

    def sample_random(self, rng, cell: dict[str, Any]) -> dict[str, Any]:
        known, sampled = {**self.fixed, **cell}, {}
        for spec in self.params.values():
            if spec.active({**known, **sampled}):
                sampled[spec.name] = spec.sample(rng)
        return sampled

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid cell × every combination of active choice params (the grid searcher's list)."""
        points = [dict(cell) for cell in self.cells()]
        for spec in self.params.values():
            expanded = []
            for point in points:
                if spec.active({**self.fixed, **point}):
                    expanded.extend({**point, spec.name: value} for value in spec.values)
                else:
                    expanded.append(point)
            points = expanded
        return points

    def trial_config(self, sampled: dict[str, Any], cell: dict[str, Any] | None = None, repeat: int = 0) -> TrialConfig:
        """fixed ∪ cell ∪ sampled, trained for ``max_epochs``, seed = fixed seed + repeat; resolved."""
        data = {**self.fixed, **(cell or {}), **sampled, "epochs": self.max_epochs}
        data["seed"] = int(data.get("seed", 0)) + repeat
        where = f"{self.path or self.name}"
        return TrialConfig.from_dict(data, source=where).resolved()

    def resources_for(self, batch_size: int) -> dict[str, float]:
        return self.resources.for_batch(batch_size)

    def batch_sizes(self) -> list[int]:
        if "batch_size" in self.grid:
            return sorted({int(b) for b in self.grid["batch_size"]})
        spec = self.params.get("batch_size")
        if spec is not None:
            if spec.kind == "choice":
                return sorted({int(b) for b in spec.values})
            return [int(spec.low), int(spec.high)]
        return [int(self.fixed.get("batch_size", TrialConfig.batch_size))]

    def check_cluster(self, cpus: float, gpus: float) -> None:
        """Refuse a space whose trials could never be placed on a cluster of this size."""
        for batch in self.batch_sizes():
            need = self.resources_for(batch)
            if need["gpu"] > gpus:
                raise BadInput(f"resources: batch_size {batch} asks for {need['gpu']:g} GPU but the cluster has "
                               f"{gpus:g} GPUs")
            if need["cpu"] > cpus:
                raise BadInput(f"resources: batch_size {batch} asks for {need['cpu']:g} CPUs but the cluster has "
                               f"{cpus:g}")

    def total_trials(self) -> int:
        per_cell = len(self.grid_points()) // max(1, len(self.cells())) if self.searcher == "grid" else self.num_samples
        return len(self.cells()) * per_cell * self.repeats

    def summary(self) -> str:
        params = ", ".join(f"{p.name}~{p.kind}" + (f" if {p.when}" if p.when else "") for p in self.params.values())
        grid = " × ".join(f"{k}{v}" for k, v in self.grid.items()) or "none"
        sched = (f"asha(max {self.max_epochs}, grace {self.grace_period}, rf {self.reduction_factor})"
                 if self.scheduler == "asha" else f"fifo({self.max_epochs} epochs)")
        return (f"space {self.name}: {self.total_trials()} trials; grid {grid}; params {params or 'none'}; "
                f"searcher {self.searcher}(seed {self.searcher_seed}); scheduler {sched}; "
                f"objective {self.objective_mode} {self.objective_metric}")


@dataclass(frozen=True)
class DefineByRun:
    """Picklable define-by-run function (Ray checkpoints its searcher, closures do not pickle)."""

    space: SearchSpace
    cell: dict[str, Any]

    def __call__(self, trial) -> dict[str, Any]:
        known, sampled = {**self.space.fixed, **self.cell}, {}
        for spec in self.space.params.values():
            if spec.active({**known, **sampled}):
                sampled[spec.name] = spec.suggest(trial)
        return sampled


# ------------------------------------------------------------------------------------------- loading
def default_space_path() -> Path:
    """``search_spaces/default.yaml`` of this checkout (the package is used from a clone, `pip install -e`)."""
    return builtin_dir() / "default.yaml"


def builtin_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "search_spaces"


def builtin_spaces() -> list[Path]:
    return sorted(builtin_dir().glob("*.yaml"))


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        return _parse(data, path.read_text(), str(path))
    except BadInput as exc:
        text = str(exc)
        raise BadInput(text if text.startswith(str(path)) else f"{path}: {text}") from None


def parse_space(data: dict[str, Any], source: str = "", where: str = "space") -> SearchSpace:
    """Validate an already-read mapping (tests and programmatic use)."""
    try:
        return _parse(data, source, where)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None


def _parse(data: dict[str, Any], source: str, where: str) -> SearchSpace:
    from .store_schema import EPOCH_METRICS

    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise BadInput(f"unknown key {unknown[0]!r} (expected some of {', '.join(TOP_KEYS)})")
    types = field_types()
    name = str(data.get("name") or Path(where).stem)
    if not _NAME.fullmatch(name):
        raise BadInput(f"name: {name!r} must use only letters, digits, '_', '.', '-'")

    fixed = _mapping(data, "fixed")
    for key in fixed:
        _check_field(key, types, "fixed")
    if "lr_rule" in data:
        if data["lr_rule"] not in LR_RULES:
            raise BadInput(f"lr_rule: {data['lr_rule']!r} is not one of {LR_RULES}")
        fixed["lr_rule"] = data["lr_rule"]
    fixed = _coerce_fields(fixed, "fixed")

    scheduler = _mapping(data, "scheduler") or {"type": "asha"}
    sched_type = scheduler.get("type", "asha")
    if sched_type not in SCHEDULERS:
        raise BadInput(f"scheduler.type: {sched_type!r} is not one of {SCHEDULERS}")
    allowed = {"type", "max_epochs"} | ({"grace_period", "reduction_factor"} if sched_type == "asha" else set())
    _only(scheduler, allowed, "scheduler")
    max_epochs = _int(scheduler.get("max_epochs", fixed.get("epochs", 4)), "scheduler.max_epochs", 1)
    grace = _int(scheduler.get("grace_period", 1), "scheduler.grace_period", 1)
    rf = _int(scheduler.get("reduction_factor", 2), "scheduler.reduction_factor", 2)
    if grace > max_epochs:
        raise BadInput(f"scheduler.grace_period: {grace} is more than max_epochs {max_epochs}")
    if "epochs" in fixed and fixed["epochs"] != max_epochs:
        raise BadInput(f"fixed.epochs: {fixed['epochs']} contradicts scheduler.max_epochs {max_epochs} "
                       "(trials run max_epochs; leave epochs out of fixed)")
    fixed.pop("epochs", None)

    searcher = _mapping(data, "searcher") or {"type": "optuna"}
    _only(searcher, {"type", "seed"}, "searcher")
    search_type = searcher.get("type", "optuna")
    if search_type not in SEARCHERS:
        raise BadInput(f"searcher.type: {search_type!r} is not one of {SEARCHERS}")
    seed = _int(searcher.get("seed", 0), "searcher.seed", 0)

    grid = {}
    for key, values in _mapping(data, "grid").items():
        _check_field(key, types, "grid")
        if key in fixed:
            raise BadInput(f"grid.{key}: also in fixed")
        if not isinstance(values, list) or not values:
            raise BadInput(f"grid.{key}: expected a non-empty list of values")
        grid[key] = [_coerce_value(key, v, f"grid.{key}") for v in values]

    params: dict[str, ParamSpec] = {}
    for key, spec in _mapping(data, "params").items():
        _check_field(key, types, "params")
        if key in fixed or key in grid:
            raise BadInput(f"params.{key}: also in {'fixed' if key in fixed else 'grid'}")
        params[key] = _param(key, spec, types[key], search_type, fixed, grid, params)
    if search_type == "grid":
        bad = [p.name for p in params.values() if p.kind != "choice"]
        if bad:
            raise BadInput(f"params.{bad[0]}: the grid searcher needs choice values for every parameter")

    objective = _mapping(data, "objective") or {}
    _only(objective, {"metric", "mode"}, "objective")
    metric, mode = objective.get("metric", "val_top1"), objective.get("mode", "max")
    if metric not in EPOCH_METRICS:
        raise BadInput(f"objective.metric: {metric!r} is not a reported metric ({', '.join(EPOCH_METRICS)})")
    if mode not in ("max", "min"):
        raise BadInput(f"objective.mode: {mode!r} must be max or min")

    num_samples = _int(data.get("num_samples", 8), "num_samples", 1)
    if search_type == "grid" and "num_samples" in data and num_samples != 1:
        raise BadInput("num_samples: the grid searcher runs every grid point once; leave num_samples out")
    space = SearchSpace(
        name=name, fixed=fixed, params=params, grid=grid, objective_metric=metric, objective_mode=mode,
        searcher=search_type, searcher_seed=seed, scheduler=sched_type, max_epochs=max_epochs, grace_period=grace,
        reduction_factor=rf, num_samples=num_samples, repeats=_int(data.get("repeats", 1), "repeats", 1),
        max_concurrent=_int(data.get("max_concurrent", 2), "max_concurrent", 1),
        resources=_resources(_mapping(data, "resources")), source=source, path=where if source else None,
        description=str(data.get("description", "")))
    for batch in space.batch_sizes():
        space.resources_for(batch)  # every batch size the space can produce has resources
    _check_configs(space)
    return space


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _only(mapping: dict, allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise BadInput(f"{where}: unknown key {key!r} (expected some of {', '.join(sorted(allowed))})")


def _check_field(key: str, types: dict, where: str) -> None:
    if key not in types:
        raise BadInput(f"{where}.{key}: unknown config field {key!r}")


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise BadInput(f"{where}: must be >= {minimum}, got {value}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads `1e-4` as a string
        except ValueError:
            raise BadInput(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"{where}: {value!r} is not a finite number")
    return float(value)


def _coerce_value(key: str, value: Any, where: str) -> Any:
    return getattr(TrialConfig.from_dict({key: value}, source=where), key)


def _coerce_fields(values: dict, where: str) -> dict:
    config = TrialConfig.from_dict(values, source=where)
    return {k: getattr(config, k) for k in values}


def _param(key: str, spec: Any, base: type, search_type: str, fixed: dict, grid: dict, earlier: dict) -> ParamSpec:
    where = f"params.{key}"
    if not isinstance(spec, dict):
        raise BadInput(f"{where}: expected a mapping like {{choice: [...]}}, got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        raise BadInput(f"{where}: give exactly one of {', '.join(KINDS[:4])}")
    kind = kinds[0]
    _only(spec, {kind, "when", "log", "step"}, where)
    if kind == "grid":
        if search_type != "grid":
            raise BadInput(f"{where}: grid values with the {search_type} searcher; use the top-level grid: section "
                           "(one searcher per cell) or searcher: grid")
        kind = "choice"
    when = _when(spec.get("when"), where, fixed, grid, earlier)
    raw = spec[kinds[0]]
    if kind == "choice":
        if not isinstance(raw, list) or not raw:
            raise BadInput(f"{where}: choice needs a non-empty list")
        values = tuple(_coerce_value(key, v, where) for v in raw)
        return ParamSpec(key, "choice", values=values, when=when)
    if not isinstance(raw, list) or len(raw) != 2:
        raise BadInput(f"{where}: {kind} needs [low, high]")
    low, high = (_number(v, where) for v in raw)
    if low >= high:
        raise BadInput(f"{where}: low {low:g} must be below high {high:g}")
    log = bool(spec.get("log", False))
    step = _number(spec["step"], f"{where}.step") if "step" in spec else None
    if kind == "int":
        if base is not int:
            raise BadInput(f"{where}: {key} is a {base.__name__}; use uniform/loguniform or choice")
        if not (low.is_integer() and high.is_integer()):
            raise BadInput(f"{where}: int bounds must be integers")
        if log and low <= 0:
            raise BadInput(f"{where}: log int needs low > 0")
    else:
        if base is not float:
            raise BadInput(f"{where}: {key} is a {base.__name__}; use {'int or ' if base is int else ''}choice")
        if kind == "loguniform" and low <= 0:
            raise BadInput(f"{where}: loguniform needs low > 0, got {low:g}")
    return ParamSpec(key, kind, low=low, high=high, log=log, step=step, when=when)


def _when(raw: Any, where: str, fixed: dict, grid: dict, earlier: dict[str, ParamSpec]) -> dict[str, tuple]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise BadInput(f"{where}.when: expected a mapping like {{loss: [schane, clce]}}")
    out = {}
    for name, values in raw.items():
        values = tuple(values) if isinstance(values, list) else (values,)
        if name in earlier and earlier[name].kind == "choice":
            possible = earlier[name].values
        elif name in grid:
            possible = tuple(grid[name])
        elif name in fixed:
            possible = (fixed[name],)
        elif name in earlier:
            raise BadInput(f"{where}.when: {name!r} is not a choice, so a condition on its value is not supported")
        else:
            raise BadInput(f"{where}.when: unknown parameter {name!r} (conditions name an earlier parameter, "
                           "a grid axis or a fixed value)")
        values = tuple(_coerce_value(name, v, f"{where}.when") for v in values)
        impossible = [v for v in values if v not in possible]
        if impossible:
            raise BadInput(f"{where}.when: {name} can never be {impossible[0]!r} (possible: {list(possible)})")
        out[name] = values
    return out


def _resources(raw: dict) -> ResourceRule:
    _only(raw, {"cpu", "gpu"}, "resources")

    def one(kind: str, default: float):
        value = raw.get(kind, default)
        if isinstance(value, dict):
            _only(value, {"by_batch_size"}, f"resources.{kind}")
            table = value.get("by_batch_size")
            if not isinstance(table, dict) or not table:
                raise BadInput(f"resources.{kind}.by_batch_size: expected a mapping of batch size to amount")
            out = {}
            for batch, amount in table.items():
                out[_int(batch, f"resources.{kind}.by_batch_size key", 1)] = _amount(amount, kind)
            return out
        return _amount(value, kind)

    rule = ResourceRule(cpu=one("cpu", 1.0), gpu=one("gpu", 0.0))
    cpus = rule.cpu.values() if isinstance(rule.cpu, dict) else [rule.cpu]
    if any(c <= 0 for c in cpus):
        raise BadInput("resources.cpu: every trial needs some CPU (> 0)")
    return rule


def _amount(value: Any, kind: str) -> float:
    amount = _number(value, f"resources.{kind}")
    if amount < 0:
        raise BadInput(f"resources.{kind}: must be >= 0, got {amount:g}")
    if amount > 1 and not amount.is_integer():
        raise BadInput(f"resources.{kind}: fractions are for sharing one device; above 1 use whole numbers")
    return amount


def _check_configs(space: SearchSpace) -> None:
    """Every fixed value, grid value and choice (and range end) must make a valid trial config."""
    variants: list[dict[str, Any]] = [{}]
    for key, values in space.grid.items():
        variants += [{key: v} for v in values]
    for spec in space.params.values():
        if spec.kind == "choice":
            variants += [{spec.name: v} for v in spec.values]
        else:
            cast = int if spec.kind == "int" else float
            variants += [{spec.name: cast(spec.low)}, {spec.name: cast(spec.high)}]
    for variant in variants:
        try:
            TrialConfig.from_dict({**space.fixed, **variant, "epochs": space.max_epochs}).validate()
        except BadInput as exc:
            where = f"params/grid {next(iter(variant))}" if variant else "fixed"
            raise BadInput(f"{where}: {exc}") from None
