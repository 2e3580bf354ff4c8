"""Search spaces: one YAML schema, validated once, compiled to Optuna define-by-run and to trial configs.

A space file (``search_spaces/*.yaml``; :mod:`tune_schane.space.schema` holds every rule)::

    name: default
    fixed: {model: test_vit, dataset: digits}          # TrialConfig fields every trial shares
    params:                                            # the searched space, in dependency order
      loss: {choice: [ce, supcon, schane, clce]}
      tau:  {loguniform: [0.05, 0.5], when: {loss: [supcon, schane, clce]}}
      lr:   {loguniform: [1.0e-4, 1.0e-2]}
    grid: {batch_size: [16, 32, 64]}                   # optional axes: one searcher per cell
    objective: {metric: val_top1, mode: max}
    searcher: {type: optuna, seed: 0}                  # optuna (TPE) | random | grid
    scheduler: {type: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}   # or fifo
    num_samples: 12                                    # configs per grid cell
    repeats: 1                                         # seeds per sampled config
    max_concurrent: 2
    resources: {cpu: 1, gpu: {by_batch_size: {64: 0.5, 256: 1}}}
    lr_rule: sqrt
    optuna_storage: sqlite:///runs/studies.db          # optional: the studies in a storage (or --optuna-storage)

Nothing else in the package parses these files, and every problem is a :class:`BadInput` naming the
file and the key, raised before Ray starts. This module does not import Ray: ``ray_tune`` turns the
neutral pieces (cells, a define-by-run function, resources) into Ray objects, so the space logic is
tested with plain Optuna.

Grid cells exist because a single TPE study over "batch size × loss" would concentrate on the cells
that look good early and starve the others; the ablation needs every cell tuned equally.

The shipped spaces are package data (``tune_schane/spaces/``, linked from the repository's
``search_spaces/``); :mod:`tune_schane.space.catalog` finds them and resolves short names.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput
from ..finetune.config import TrialConfig, parse_overrides, read_yaml_mapping
from .catalog import SPACES_DIR, default_space_path, shipped_spaces
from .schema import PATIENCE, STARTUP_TRIALS, WARM_START, ParamSpec, ResourceRule, parse_space_mapping
from .schema import TOP_KEYS as SPACE_KEYS

# A data-parallel trial's own bundle on Ray (its Ray Train driver: waits on the job, copies checkpoints), on
# top of its workers' resources; tune_schane.ray_tune places it, the cluster check below counts it.
TRAIN_DRIVER_CPU = 0.1

__all__ = ["DefineByRun", "ParamSpec", "ResourceRule", "SearchSpace", "builtin_spaces", "default_space_path",
           "load_space", "parse_space"]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; see the module docstring for the file format."""

    name: str
    fixed: dict[str, Any]
    params: dict[str, ParamSpec]
    grid: dict[str, list[Any]]
    objective_metric: str = "val_top1"
    objective_mode: str = "max"
    searcher: str = "optuna"
    searcher_seed: int = 0
    warm_start: int = WARM_START  # configs a cell borrows from its neighbours' incumbents (cell_sharing.py); 0: off
    patience: int = PATIENCE  # configs in a row without a new incumbent before a cell stops sampling; 0: never
    startup_trials: int = STARTUP_TRIALS  # TPE's random start-up trials per cell
    scheduler: str = "asha"
    max_epochs: int = 4
    grace_period: int = 1
    reduction_factor: int = 2
    rung_tie: float = 0.0  # ASHA: a config within this many objective units of a rung's cutoff goes on (0: off)
    num_samples: int = 1
    repeats: int = 1
    max_concurrent: int = 1
    resources: ResourceRule = field(default_factory=ResourceRule)
    optuna_storage: str | None = None  # where the cells' studies live (tune_schane.space.storage); None: memory
    confirm: dict[str, Any] | None = None  # {top, seeds, epoch}: the sweep ends with `tune-schane confirm`; None: not
    budget: dict[str, Any] | None = None  # {unit, value, reports}: a step/sample budget; None: max_epochs epochs
    source: str = ""
    path: str | None = None
    description: str = ""

    # --- what the searchers see ------------------------------------------------------------
    def cells(self) -> list[dict[str, Any]]:
        """Grid cells, the first axis varying slowest, values in file order ([{}] without a grid)."""
        names = list(self.grid)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.grid.values())]

    def define_by_run(self, cell: dict[str, Any]) -> Callable[[Any], dict[str, Any] | None]:
        """An Optuna define-by-run function for one cell (a picklable object: Ray checkpoints searchers)."""
        return DefineByRun(self, dict(cell))

    def distributions(self) -> dict[str, Any]:
        """Name -> Optuna distribution of every searched parameter and grid axis (axes are categorical)."""
        import optuna.distributions as od

        axes = {name: od.CategoricalDistribution(list(values)) for name, values in self.grid.items()}
        return {**axes, **{name: spec.distribution() for name, spec in self.params.items()}}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every cell × every combination of the *active* choices (cell keys included), no duplicates.

        Expanding parameter by parameter means an inactive one (τ when loss is ce) adds no copies.
        """
        points = [dict(cell) for cell in self.cells()]
        for spec in self.params.values():
            expanded = []
            for point in points:
                if spec.active({**self.fixed, **point}):
                    expanded.extend({**point, spec.name: value} for value in spec.grid_values())
                else:
                    expanded.append(point)
            points = expanded
        return points

    def trial_config(self, sampled: dict[str, Any], cell: dict[str, Any] | None = None,
                     repeat: int = 0) -> TrialConfig:
        """fixed ∪ cell ∪ sampled, trained for ``max_epochs``, seed = fixed seed + repeat; validated, resolved."""
        data = {**self.fixed, **(cell or {}), **sampled, "epochs": self.max_epochs}
        data["seed"] = int(data.get("seed", TrialConfig.seed)) + repeat
        return TrialConfig.from_dict(data, source=self.path or self.name).resolved()

    # --- resources -------------------------------------------------------------------------
    def resources_for(self, batch_size: int) -> dict[str, float]:
        """``{"cpu": x, "gpu": y}`` for one trial at this batch size."""
        return self.resources.for_batch(batch_size)

    def batch_sizes(self) -> list[int]:
        """Every batch size a trial of this space can have, ascending."""
        return self._values("batch_size", TrialConfig.batch_size)

    def max_workers(self) -> int:
        """The most data-parallel workers a trial of this space can have (1: every trial is one process)."""
        return max(self._values("workers", TrialConfig.workers))

    def _values(self, name: str, default: int) -> list[int]:
        """Every value an integer setting can take in this space's trials, ascending."""
        if name in self.grid:
            values = set(self.grid[name])
        elif name in self.params:
            spec = self.params[name]
            values = set(spec.grid_values())
            if spec.when:  # when inactive, trials keep the fixed/default value
                values.add(self.fixed.get(name, default))
        else:
            values = {self.fixed.get(name, default)}
        return sorted(int(value) for value in values)

    def check_cluster(self, cpus: float, gpus: float) -> None:
        """Refuse a space whose trials could never be placed on a cluster of this size.

        The resource rule is per worker: a data-parallel trial needs it ``workers`` times (checked for
        a fixed or grid ``workers``; a searched one only per worker), plus its Train driver's
        :data:`TRAIN_DRIVER_CPU`. Without the driver's share, 2 workers of 1 CPU on 2 CPUs would wait for
        ever: Ray Train retries a worker group that cannot start instead of failing the trial.
        """
        workers = 1 if "workers" in self.params else self.max_workers()
        for batch in self.batch_sizes():
            need = {kind: amount * workers for kind, amount in self.resources_for(batch).items()}
            driver = TRAIN_DRIVER_CPU if workers > 1 else 0.0
            need["cpu"] += driver
            for kind, have in (("gpu", gpus), ("cpu", cpus)):
                if need[kind] > have + 1e-9:
                    unit = kind.upper() + ("s" if need[kind] != 1 else "")
                    parts = [f"{workers} workers"] if workers > 1 else []
                    if kind == "cpu" and driver:
                        parts.append(f"+ {driver:g} for the Train driver")
                    each = f" ({' '.join(parts)})" if parts else ""
                    raise BadInput(f"resources: batch_size {batch} asks for {need[kind]:g} {unit}{each} but the "
                                   f"cluster has {have:g}")

    # --- reporting -------------------------------------------------------------------------
    def total_trials(self) -> int:
        """Trials the sweep runs at most (ASHA may stop some early, but each still counts)."""
        if self.searcher == "grid":
            return len(self.grid_points()) * self.repeats
        return len(self.cells()) * self.num_samples * self.repeats

    def summary(self) -> str:
        """A few lines for the CLI and the report."""
        grid = " × ".join(f"{k} {v}" for k, v in self.grid.items()) or "none"
        if self.budget is not None:  # the scheduler counts in the budget's unit; its reports fall every `per` of them
            unit, per = self.budget["unit"], self.budget["value"] // self.budget["reports"]
            scheduler = (f"asha({self.budget['value']} {unit} in {self.max_epochs} reports of {per}, rungs from "
                         f"{self.grace_period * per} {unit}, rf {self.reduction_factor})" if self.scheduler == "asha"
                         else f"fifo({self.budget['value']} {unit} in {self.max_epochs} reports of {per})")
        else:
            scheduler = (f"asha(max_epochs {self.max_epochs}, grace {self.grace_period}, rf {self.reduction_factor})"
                         if self.scheduler == "asha" else f"fifo(max_epochs {self.max_epochs})")
        per_cell = "every grid point" if self.searcher == "grid" else f"{self.num_samples} per cell"
        lines = [
            f"space {self.name}" + (f" ({self.path})" if self.path else "") + f": {self.total_trials()} trials "
            f"({len(self.cells())} cells, {per_cell}, {self.repeats} seed(s) each)",
            f"  grid: {grid}",
            f"  params: {'; '.join(p.describe() for p in self.params.values()) or 'none'}",
            f"  searcher {self.searcher}(seed {self.searcher_seed}); scheduler {scheduler}; "
            f"objective {self.objective_mode} {self.objective_metric}",
            f"  resources per trial: {self.resources.describe()}; max_concurrent {self.max_concurrent}",
        ]
        if self.description:
            lines.insert(1, f"  {self.description}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DefineByRun:
    """Define-by-run for one cell: suggests the active params in file order and returns them.

    The return value holds only what was sampled (not the cell, not fixed values): Ray's OptunaSearch
    merges it into the trial config, and the store records it as the searched params.
    """

    space: SearchSpace
    cell: dict[str, Any]

    def __call__(self, trial: Any) -> dict[str, Any]:
        known, sampled = {**self.space.fixed, **self.cell}, {}
        for spec in self.space.params.values():
            if spec.active({**known, **sampled}):
                sampled[spec.name] = spec.suggest(trial)
        return sampled


# ------------------------------------------------------------------------------------------- loading
def builtin_dir() -> Path:
    """The folder of the shipped spaces (package data, ``tune_schane/spaces``)."""
    return SPACES_DIR


def builtin_spaces() -> list[Path]:
    """The shipped space files, sorted by name."""
    return shipped_spaces()


def load_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    """Read and validate a space file; BadInput ``<path>: <key>: <problem>`` on anything wrong.

    ``overrides`` are ``--set`` strings applied before validation (:func:`apply_overrides`); the
    space kept in the store is then the resolved YAML, headed by the overrides, so the report and
    the importance analysis see what really ran.
    """
    path = Path(path)
    data = read_yaml_mapping(path)  # missing file, malformed YAML, not a mapping: already named
    source = path.read_text()
    if overrides:
        data = apply_overrides(data, overrides)
        header = "".join(f"# --set {item}\n" for item in overrides)
        source = f"# {path} with overrides\n{header}" + yaml.safe_dump(data, sort_keys=False)
    return parse_space(data, source=source, where=str(path), default_name=path.stem)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set`` on a space: ``key=value`` sets a fixed trial setting (``shots=null``) or a top-level
    key (``max_concurrent=8``); a dotted key sets inside a mapping (``grid.batch_size=[128,256]``,
    ``resources.gpu=1``, ``scheduler.max_epochs=20``). Values are YAML. Validation comes after."""
    out = copy.deepcopy(data)
    for key, value in parse_overrides(overrides).items():
        parts = key.split(".")
        if len(parts) == 1 and parts[0] not in SPACE_KEYS:
            parts = ["fixed", parts[0]]
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadInput(f"--set {key}: {part} is not a mapping in the space")
            node = child
        node[parts[-1]] = value
    return out


def parse_space(data: dict[str, Any], source: str = "", where: str = "space",
                default_name: str = "space") -> SearchSpace:
    """Validate an already-read mapping (``where`` names it in errors; ``path`` is set when ``source`` is)."""
    try:
        space = SearchSpace(**parse_space_mapping(data, default_name), source=source,
                            path=where if source else None)
        return _checked(space)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None


def _checked(space: SearchSpace) -> SearchSpace:
    """Checks that need the whole space: resources per batch size, config validity, grid budget."""
    for batch in space.batch_sizes():
        space.resources_for(batch)  # every batch size the space can produce has resources
    _check_configs(space)
    if space.searcher == "grid":
        # Ray's cell searcher asks each cell for num_samples configs: make that every point of the cell.
        per_cell = [sum(_in_cell(p, c) for p in space.grid_points()) for c in space.cells()]
        space = dataclasses.replace(space, num_samples=max(per_cell))
    return space


def _in_cell(point: dict[str, Any], cell: dict[str, Any]) -> bool:
    return all(point.get(key) == value for key, value in cell.items())


def _check_configs(space: SearchSpace) -> None:
    """Every fixed, grid and choice value (and range end) must make a valid TrialConfig.

    Values are checked one at a time on top of ``fixed``, with their ``when`` conditions satisfied,
    so ``batch_size: 0`` or ``loss: foo`` fail here rather than in the first trial on the cluster.
    """
    variants: list[tuple[str, dict[str, Any]]] = [("fixed", {})]
    for key, values in space.grid.items():
        variants += [(f"grid.{key}", {key: value}) for value in values]
    for spec in space.params.values():
        condition = {name: values[0] for name, values in spec.when.items()}
        for value in _probe_values(spec):
            variants.append((f"params.{spec.name}", {**condition, spec.name: value}))
    first_cell = {key: values[0] for key, values in space.grid.items() if values}  # a grid axis may complete fixed
    for where, variant in variants:
        data = {**space.fixed, **first_cell, **variant, "epochs": space.max_epochs}
        try:
            TrialConfig.from_dict(data, source=where).validate()
        except BadInput as exc:
            value = f" value {variant[where.split('.')[-1]]!r}" if where != "fixed" else ""
            raise BadInput(f"{where}{value}: {exc}") from None


def _probe_values(spec: ParamSpec) -> list[Any]:
    if spec.kind == "choice":
        return list(spec.values)
    if spec.kind == "int":
        return [int(spec.low), int(spec.high)]
    return [spec.low, spec.high]
