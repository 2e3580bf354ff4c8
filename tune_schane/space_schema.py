"""The search-space YAML schema: parsing and validation of one mapping into typed pieces.

:mod:`tune_schane.space` owns the :class:`~tune_schane.space.SearchSpace` and what it compiles to;
this module owns the file format, so that every rule about what a space file may say lives in one
place. Every refusal is a :class:`BadInput` whose message starts with the key at fault
(``params.tau.when: ...``); :func:`tune_schane.space.load_space` prefixes the file name.

Why each check exists (all run before Ray starts, where a mistake costs nothing):

- unknown keys anywhere: a typo (``grace_peroid``) would otherwise silently fall back to a default;
- values are coerced with :meth:`TrialConfig.from_dict`'s rules, so ``1e-4`` (a *string* in YAML 1.1)
  becomes a float but ``"abc"`` is refused, exactly as on the command line;
- a ``when`` may name only an earlier parameter, a grid axis or a fixed value: define-by-run samples
  in file order, so this rules out cycles and forward references by construction;
- ``epochs`` comes from ``scheduler.max_epochs`` alone: two sources of one number would disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .config import LR_RULES, TrialConfig, field_types
from .errors import BadInput
from .outcomes import EPOCH_METRICS, OBJECTIVE_MODES

TOP_KEYS = ("name", "description", "fixed", "params", "grid", "objective", "searcher", "scheduler",
            "num_samples", "repeats", "max_concurrent", "resources", "lr_rule")
KINDS = ("choice", "uniform", "loguniform", "int", "grid")  # `grid` only with the grid searcher
SPEC_KEYS = ("when", "log", "step")
SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "fifo")
RESERVED = {"epochs": "it is set from scheduler.max_epochs"}  # fields a space may not search or grid
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


# ------------------------------------------------------------------------------------ typed pieces
@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter.

    ``kind`` is ``choice`` (``values``), ``uniform`` / ``loguniform`` (float ``low``..``high``) or
    ``int`` (``log`` and ``step`` optional). ``when`` maps another parameter to the values that make
    this one active; an inactive parameter is not sampled at all (so TPE never sees a dead τ).
    """

    name: str
    kind: str
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, known: dict[str, Any]) -> bool:
        """True when every condition holds for the values known so far (absent counts as false)."""
        return all(name in known and known[name] in values for name, values in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this parameter (define-by-run)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.kind == "loguniform")

    def sample(self, rng: Any) -> Any:
        """Draw uniformly (in log space for log kinds) with a numpy Generator: the random baseline."""
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "int":
            return self._sample_int(rng)
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.step:
            return self.low + self.step * int(rng.integers(self._steps() + 1))
        return float(rng.uniform(self.low, self.high))

    def _sample_int(self, rng: Any) -> int:
        low, high = int(self.low), int(self.high)
        if self.log:  # uniform in log space, over the half-open cells around each integer
            value = math.exp(rng.uniform(math.log(low - 0.5 if low > 1 else low), math.log(high + 0.5)))
            return min(high, max(low, round(value)))
        return low + int(self.step or 1) * int(rng.integers(self._steps() + 1))

    def _steps(self) -> int:
        return round((self.high - self.low) / (self.step or 1))

    def grid_values(self) -> list[Any]:
        """The values a grid search enumerates (choices; every step of an int range)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise ValueError(f"{self.name}: a {self.kind} range has no finite grid")

    def describe(self) -> str:
        """``tau~loguniform[0.05, 0.5] if loss in (supcon, clce)`` for summaries."""
        if self.kind == "choice":
            text = f"{self.name}~choice{list(self.values)}"
        else:
            extra = (" log" if self.log else "") + (f" step {self.step:g}" if self.step else "")
            text = f"{self.name}~{self.kind}[{self.low:g}, {self.high:g}{extra}]"
        for name, values in self.when.items():
            text += f" if {name} in ({', '.join(map(str, values))})"
        return text


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
    scheduler = _scheduler(data.get("scheduler"), fixed)
    searcher, seed = _searcher(data.get("searcher"))
    grid = _grid(data.get("grid"), fixed)
    params = _params(data.get("params"), fixed, grid, searcher)
    metric, mode = _objective(data.get("objective"))
    return {
        "name": _name(data.get("name", default_name)),
        "description": _description(data.get("description")),
        "fixed": fixed, "params": params, "grid": grid,
        "objective_metric": metric, "objective_mode": mode,
        "searcher": searcher, "searcher_seed": seed, **scheduler,
        "num_samples": _num_samples(data, searcher),
        "repeats": integer(data.get("repeats", 1), "repeats", 1),
        "max_concurrent": integer(data.get("max_concurrent", 1), "max_concurrent", 1),
        "resources": _resources(data.get("resources")),
    }


def mapping(value: Any, where: str) -> dict:
    """A YAML mapping or nothing (``{}``); anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def only(values: dict, allowed: tuple[str, ...] | set[str], where: str) -> None:
    """Refuse unknown keys, naming the first one and what is allowed."""
    for key in values:
        if key not in allowed:
            raise BadInput(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def integer(value: Any, where: str, minimum: int) -> int:
    """A true integer (``2.0`` and ``true`` refused) no smaller than ``minimum``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise BadInput(f"{where}: must be >= {minimum}, got {value}")
    return value


def number(value: Any, where: str) -> float:
    """A finite number; numeric strings (YAML 1.1 reads ``1e-4`` as text) are accepted."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadInput(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"{where}: {value!r} is not a finite number")
    return float(value)


def config_value(key: str, value: Any, where: str) -> Any:
    """Coerce one value of TrialConfig field ``key`` with the config's own rules."""
    return getattr(TrialConfig.from_dict({key: value}, source=where), key)


def config_field(key: Any, where: str) -> str:
    """Refuse a name that is not a TrialConfig field (typos would otherwise be silently ignored)."""
    if not isinstance(key, str) or key not in field_types():
        raise BadInput(f"{where}.{key}: unknown TrialConfig field {key!r}")
    return key


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
    if "lr_rule" in data:
        rule = data["lr_rule"]
        if rule not in LR_RULES:
            raise BadInput(f"lr_rule: {rule!r} is not one of {', '.join(LR_RULES)}")
        if fixed.get("lr_rule", rule) != rule:
            raise BadInput(f"lr_rule: {rule!r} contradicts fixed.lr_rule {fixed['lr_rule']!r}; give it once")
        fixed["lr_rule"] = rule
    return fixed


def _scheduler(raw: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """Scheduler settings; also removes ``epochs`` from ``fixed`` once it agrees with max_epochs."""
    scheduler = mapping(raw, "scheduler")
    kind = scheduler.get("type", "asha")
    if kind not in SCHEDULERS:
        raise BadInput(f"scheduler.type: {kind!r} is not one of {', '.join(SCHEDULERS)}")
    allowed = {"type", "max_epochs"} | ({"grace_period", "reduction_factor"} if kind == "asha" else set())
    only(scheduler, allowed, f"scheduler ({kind})")
    max_epochs = integer(scheduler.get("max_epochs", fixed.get("epochs", TrialConfig.epochs)),
                         "scheduler.max_epochs", 1)
    if fixed.pop("epochs", max_epochs) != max_epochs:
        raise BadInput(f"fixed.epochs: contradicts scheduler.max_epochs {max_epochs} (every trial runs "
                       "scheduler.max_epochs; leave epochs out of fixed)")
    grace = integer(scheduler.get("grace_period", 1), "scheduler.grace_period", 1)
    if grace > max_epochs:
        raise BadInput(f"scheduler.grace_period: {grace} is more than max_epochs {max_epochs}")
    factor = integer(scheduler.get("reduction_factor", 2), "scheduler.reduction_factor", 2)
    return {"scheduler": kind, "max_epochs": max_epochs, "grace_period": grace, "reduction_factor": factor}


def _searcher(raw: Any) -> tuple[str, int]:
    searcher = mapping(raw, "searcher")
    only(searcher, {"type", "seed"}, "searcher")
    kind = searcher.get("type", "optuna")
    if kind not in SEARCHERS:
        raise BadInput(f"searcher.type: {kind!r} is not one of {', '.join(SEARCHERS)}")
    return kind, integer(searcher.get("seed", 0), "searcher.seed", 0)


def _grid(raw: Any, fixed: dict[str, Any]) -> dict[str, list[Any]]:
    grid = {}
    for key, values in mapping(raw, "grid").items():
        where = f"grid.{config_field(key, 'grid')}"
        _not_reserved_or_taken(key, where, fixed, {})
        if not isinstance(values, list) or not values:
            raise BadInput(f"{where}: expected a non-empty list of values")
        grid[key] = _distinct([config_value(key, v, where) for v in values], where)
    return grid


def _distinct(values: list[Any], where: str) -> list[Any]:
    """Refuse repeats: a repeated value would run the same cell or grid point twice."""
    seen: list[Any] = []
    for value in values:
        if any(type(value) is type(other) and value == other for other in seen):
            raise BadInput(f"{where}: {value!r} is listed twice")
        seen.append(value)
    return values


def _not_reserved_or_taken(key: str, where: str, fixed: dict, grid: dict) -> None:
    if key in RESERVED:
        raise BadInput(f"{where}: {key} cannot be searched: {RESERVED[key]}")
    if key in fixed or key in grid:
        raise BadInput(f"{where}: {key} is also in {'fixed' if key in fixed else 'grid'}; give it once")


def _params(raw: Any, fixed: dict, grid: dict, searcher: str) -> dict[str, ParamSpec]:
    specs = mapping(raw, "params")
    params: dict[str, ParamSpec] = {}
    for key, spec in specs.items():
        where = f"params.{config_field(key, 'params')}"
        _not_reserved_or_taken(key, where, fixed, grid)
        params[key] = _param(key, spec, where, searcher, _Scope(fixed, grid, params, list(specs)))
    if searcher == "grid":
        for spec in params.values():
            if spec.kind != "choice":
                raise BadInput(f"params.{spec.name}: the grid searcher enumerates choices; {spec.name} is a "
                               f"{spec.kind} range (make it a choice, or use searcher optuna/random)")
    return params


@dataclass(frozen=True)
class _Scope:
    """What a ``when`` of the parameter being parsed may refer to."""

    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    earlier: dict[str, ParamSpec]
    all_params: list[str]


def _param(key: str, spec: Any, where: str, searcher: str, scope: _Scope) -> ParamSpec:
    if not isinstance(spec, dict):
        raise BadInput(f"{where}: expected a mapping such as {{choice: [...]}} or {{uniform: [low, high]}}, "
                       f"got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        only(spec, (*KINDS, *SPEC_KEYS), where)
        raise BadInput(f"{where}: give exactly one of {', '.join(KINDS[:4])}")
    kind = kinds[0]
    only(spec, {kind, *SPEC_KEYS}, where)
    if kind == "grid" and searcher != "grid":
        raise BadInput(f"{where}: a {{grid: [...]}} parameter with the {searcher} searcher; use the top-level "
                       "grid: section (one searcher per cell) or a choice")
    when = _when(spec.get("when"), where, key, scope)
    if kind in ("choice", "grid"):
        if spec.keys() & {"log", "step"}:
            raise BadInput(f"{where}: log/step apply to ranges, not to a choice")
        return ParamSpec(key, "choice", values=_choices(key, spec[kind], where), when=when)
    low, high = _bounds(spec[kind], kind, where)
    log, step = _log_and_step(spec, kind, low, high, where)
    _check_range_type(key, kind, low, high, where)
    return ParamSpec(key, kind, low=low, high=high, log=log, step=step, when=when)


def _choices(key: str, raw: Any, where: str) -> tuple:
    if not isinstance(raw, list) or not raw:
        raise BadInput(f"{where}: choice needs a non-empty list of values, got {raw!r}")
    return tuple(_distinct([config_value(key, v, where) for v in raw], where))


def _bounds(raw: Any, kind: str, where: str) -> tuple[float, float]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise BadInput(f"{where}: {kind} needs [low, high], got {raw!r}")
    low, high = (number(v, f"{where}.{kind}") for v in raw)
    if low >= high:
        raise BadInput(f"{where}: low {low:g} must be below high {high:g}")
    if kind == "loguniform" and low <= 0:
        raise BadInput(f"{where}: loguniform needs low > 0, got {low:g}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise BadInput(f"{where}: int bounds must be integers, got [{low:g}, {high:g}]")
    return low, high


def _log_and_step(spec: dict, kind: str, low: float, high: float, where: str) -> tuple[bool, float | None]:
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise BadInput(f"{where}.log: expected true or false, got {log!r}")
    if log and kind != "int":
        raise BadInput(f"{where}.log: only for int ranges (floats: use loguniform)")
    if log and low <= 0:
        raise BadInput(f"{where}: a log int range needs low >= 1, got {low:g}")
    if "step" not in spec:
        return log, None
    if kind == "loguniform" or log:
        raise BadInput(f"{where}.step: a log range has no step (Optuna refuses the combination)")
    step = number(spec["step"], f"{where}.step")
    if step <= 0 or (kind == "int" and not step.is_integer()):
        raise BadInput(f"{where}.step: must be a positive {'integer' if kind == 'int' else 'number'}, got {step:g}")
    count = (high - low) / step
    if abs(count - round(count)) > 1e-9 * max(1.0, count):
        raise BadInput(f"{where}.step: {step:g} does not divide high - low = {high - low:g}")
    return log, step


def _check_range_type(key: str, kind: str, low: float, high: float, where: str) -> None:
    base = field_types()[key]
    if kind == "int" and base is not int:
        raise BadInput(f"{where}: {key} is a {base.__name__}; use uniform, loguniform or choice")
    if kind != "int" and base is not float:
        alternative = "int or choice" if base is int else "choice"
        raise BadInput(f"{where}: {key} is a {base.__name__}; a {kind} range does not fit (use {alternative})")


def _when(raw: Any, where: str, key: str, scope: _Scope) -> dict[str, tuple]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise BadInput(f"{where}.when: expected a mapping such as {{loss: [schane, clce]}}, got {raw!r}")
    out = {}
    for name, values in raw.items():
        possible = _possible_values(name, f"{where}.when", key, scope)
        values = tuple(values) if isinstance(values, list) else (values,)
        if not values:
            raise BadInput(f"{where}.when.{name}: empty list of values")
        values = tuple(config_value(name, v, f"{where}.when.{name}") for v in values)
        impossible = [v for v in values if v not in possible]
        if impossible:
            raise BadInput(f"{where}.when: {name} can never be {impossible[0]!r} (possible: "
                           f"{', '.join(map(str, possible))})")
        out[name] = values
    return out


def _possible_values(name: Any, where: str, key: str, scope: _Scope) -> tuple:
    """The values ``name`` can take when ``key`` is sampled; BadInput for anything else."""
    if name in scope.earlier:
        spec = scope.earlier[name]
        if spec.kind != "choice":
            raise BadInput(f"{where}: {name!r} is a {spec.kind} range; a condition needs a choice, a grid axis "
                           "or a fixed value")
        return spec.values
    if name in scope.grid:
        return tuple(scope.grid[name])
    if name in scope.fixed:
        return (scope.fixed[name],)
    if name == key or name in scope.all_params:
        raise BadInput(f"{where}: {name!r} is not defined before {key!r}; a condition may only name an earlier "
                       "parameter (this also rules out cycles)")
    raise BadInput(f"{where}: unknown parameter {name!r} (a condition names an earlier parameter, a grid axis "
                   "or a fixed value)")


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
