"""The ``params:`` section of a space file: :class:`ParamSpec` and its parsing, and the value checks
(mapping, known keys, integers, numbers, TrialConfig values) that every section of the schema uses.

:mod:`tune_schane.space.schema` parses the rest of the file; the rules it documents hold here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInput
from ..finetune.config import TrialConfig, field_types

KINDS = ("choice", "uniform", "loguniform", "int", "grid")  # `grid` only with the grid searcher
SPEC_KEYS = ("when", "log", "step")
RESERVED = {"epochs": "it is set from scheduler.max_epochs"}  # fields a space may not search or grid
# Fields no part of a space may set: a search never reads the test split (tune-schane confirm does, and sets them).
SEALED = {name: "the test split is sealed during a search; `tune-schane confirm` (or the space's confirm:) scores it"
          for name in ("score_test", "test_epoch")}


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

    def distribution(self) -> Any:
        """The Optuna distribution this parameter is sampled from (parameter importance reads it back)."""
        import optuna.distributions as od

        if self.kind == "choice":
            return od.CategoricalDistribution(list(self.values))
        if self.kind == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return od.FloatDistribution(self.low, self.high, log=self.kind == "loguniform", step=self.step)

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



# ------------------------------------------------------------------------------------ value checks
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
    if key in SEALED:
        raise BadInput(f"{where}.{key}: {SEALED[key]}")
    return key


def distinct(values: list[Any], where: str) -> list[Any]:
    """Refuse repeats: a repeated value would run the same cell or grid point twice."""
    seen: list[Any] = []
    for value in values:
        if any(type(value) is type(other) and value == other for other in seen):
            raise BadInput(f"{where}: {value!r} is listed twice")
        seen.append(value)
    return values


def not_reserved_or_taken(key: str, where: str, fixed: dict, grid: dict) -> None:
    if key in RESERVED:
        raise BadInput(f"{where}: {key} cannot be searched: {RESERVED[key]}")
    if key in fixed or key in grid:
        raise BadInput(f"{where}: {key} is also in {'fixed' if key in fixed else 'grid'}; give it once")



# ------------------------------------------------------------------------------------ params
def parse_params(raw: Any, fixed: dict, grid: dict, searcher: str) -> dict[str, ParamSpec]:
    specs = mapping(raw, "params")
    params: dict[str, ParamSpec] = {}
    for key, spec in specs.items():
        where = f"params.{config_field(key, 'params')}"
        not_reserved_or_taken(key, where, fixed, grid)
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
    return tuple(distinct([config_value(key, v, where) for v in raw], where))


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


