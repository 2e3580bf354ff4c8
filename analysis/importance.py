"""Parameter importance with Optuna's own evaluators, on a study rebuilt from the stored trials.

Why rebuild a study instead of keeping Ray's searcher state: the store is the only record that
survives every sweep (resumed, distributed, per-cell searchers), and Optuna's evaluators only need
frozen trials with params, distributions and a value.

Each usable trial (``completed`` by default) becomes a ``FrozenTrial`` with the parameters its sweep
sampled (the store's ``params`` column, grid axes included; the config columns that vary when a row
has none) and its ``best_objective``. Each parameter's distribution is the one the sweep sampled it
from, read from the sweep's search space saved in the store (``distributions``, see
:meth:`tune_schane.space.search_space.SearchSpace.distributions`). Only where no space is known (single ``train``
runs, a space this version cannot parse) or for a parameter the space does not name is it inferred
from the stored values:

- categorical for strings, booleans and integers with few distinct values (batch size, a grid);
- integer for integers with many values; float otherwise (τ, β, λ, lr, weight decay);
- log scale when every value is positive and they span more than a decade (lr, τ), because that is
  how such parameters are sampled and how their effect is read.

Conditional parameters (τ for ce, β for supcon, λ outside clce) are simply absent from the trials
that did not use them. Optuna's evaluators only use the trials that hold every parameter asked
about, so the ``all`` ranking covers the parameters every usable trial has (loss, lr, batch size,
...), and ``by_loss=True`` adds one ranking per loss family over that family's own parameters.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np
import pandas as pd

from .sensitivity import objective_mode, usable_mask
from .values import plain

CANDIDATES = ("loss", "tau", "beta", "lam", "lr", "batch_size", "weight_decay", "warmup_epochs", "layer_decay")
EVALUATORS = ("fanova", "ped_anova", "mdi")
MAX_INT_CHOICES = 8  # integers with at most this many distinct values are treated as categories
COLUMNS = ["scope", "param", "importance"]


def _config_fields() -> set[str]:
    from tune_schane.finetune.config import field_types

    return set(field_types())


def _sampled(row: pd.Series, fields: set[str]) -> dict[str, Any]:
    """The params a row's sweep sampled (scalar TrialConfig fields only), or {} when not recorded."""
    raw = row.get("params")
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        params = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(params, dict):
        return {}
    out = {}
    for key, value in params.items():
        value = plain(value)
        if key in fields and isinstance(value, (str, numbers.Real)):
            out[key] = value
    return out


def _from_config(row: pd.Series) -> dict[str, Any]:
    out = {}
    for name in CANDIDATES:
        value = plain(row.get(f"config_{name}"))
        if value is not None:
            out[name] = value
    return out


def _distribution(values: list[Any]):
    """Infer an Optuna distribution from the values a parameter took; None when it never varies."""
    import optuna.distributions as od

    distinct = set(values)
    if any(isinstance(v, (str, bool)) for v in values):
        return od.CategoricalDistribution(sorted(distinct, key=lambda v: (str(type(v)), v)))
    if all(isinstance(v, numbers.Integral) for v in values):
        if len(distinct) <= MAX_INT_CHOICES:
            return od.CategoricalDistribution(sorted(int(v) for v in distinct))
        low, high = int(min(values)), int(max(values))
        return od.IntDistribution(low, high, log=low > 0 and high / low > 10)
    numbers_ = [float(v) for v in values]
    low, high = min(numbers_), max(numbers_)
    if low == high:
        return None
    return od.FloatDistribution(low, high, log=low > 0 and high / low > 10)


def _holds(dist: Any, values: list[Any]) -> bool:
    """Whether every value lies in the distribution (a saved space must describe the stored values)."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return all(v in dist.choices for v in values)
    return all(isinstance(v, numbers.Real) and dist.low <= v <= dist.high for v in values)


def study_from_trials(
    trials: pd.DataFrame, params: list[str] | None = None, statuses: tuple[str, ...] = ("completed",),
    distributions: dict[str, Any] | None = None,
):
    """An in-memory Optuna study of the usable trials (see the module docstring).

    ``params`` restricts the parameters; by default every sampled one. ``distributions`` (name -> Optuna
    distribution, from the sweep's space) is used for the parameters it names. Parameters that take a single
    value are left out (nothing to attribute to them); a trial's absent (None/NaN) parameters are
    omitted from that trial, which is how Optuna represents conditional parameters.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if objective_mode(trials) == "max" else "minimize"
    usable = trials[usable_mask(trials, statuses).to_numpy()]
    fields = _config_fields()
    rows = []
    for _, row in usable.iterrows():
        sampled = _sampled(row, fields)
        if not sampled:
            sampled = _from_config(row)
        rows.append((sampled, float(row["best_objective"])))
    if params is None:
        order = {name: i for i, name in enumerate(CANDIDATES)}
        names = sorted({k for p, _ in rows for k in p}, key=lambda n: (order.get(n, len(order)), n))
    else:
        names = list(params)
    chosen = {}
    for name in names:
        values = [p[name] for p, _ in rows if name in p]
        dist = (distributions or {}).get(name)
        if dist is None or not _holds(dist, values):  # a value outside the saved space: infer instead
            dist = _distribution(values) if values else None
        if dist is not None and not (isinstance(dist, optuna.distributions.CategoricalDistribution)
                                     and len(dist.choices) < 2):
            chosen[name] = dist
    study = optuna.create_study(direction=direction)
    for sampled, value in rows:
        kept = {}
        for key, raw in sampled.items():
            dist = chosen.get(key)
            if dist is None:
                continue
            if isinstance(dist, optuna.distributions.FloatDistribution):
                raw = float(raw)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                raw = int(raw)
            kept[key] = raw
        study.add_trial(optuna.trial.create_trial(params=kept, distributions={k: chosen[k] for k in kept},
                                                  value=value))
    return study


def _evaluator(name: str, seed: int):
    from optuna import importance

    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=seed)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    if name == "ped_anova":
        return importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"evaluator must be one of {EVALUATORS}, got {name!r}")


def _rank(study, scope: str, evaluator: str, seed: int) -> list[dict[str, Any]]:
    from optuna.importance import get_param_importances

    trials = study.trials
    if len(trials) < 2:
        return []
    common = set.intersection(*(set(t.params) for t in trials))
    varying = sorted(n for n in common if len({repr(t.params[n]) for t in trials}) > 1)
    if not varying:
        return []
    ranked = get_param_importances(study, evaluator=_evaluator(evaluator, seed), params=varying)
    rows = [{"scope": scope, "param": k, "importance": float(v)} for k, v in ranked.items()]
    return sorted(rows, key=lambda r: (-r["importance"], r["param"]))


def param_importance(
    trials: pd.DataFrame,
    *,
    by_loss: bool = False,
    evaluator: str = "fanova",
    seed: int = 0,
    statuses: tuple[str, ...] = ("completed",),
    distributions: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Columns (scope, param, importance), most important first within a scope.

    ``scope`` is ``all`` (every usable trial, over the parameters all of them have) or, with
    ``by_loss=True``, a loss family. Importances are Optuna's normalised ones (they sum to 1 within a
    scope). A scope needs at least 2 usable trials and at least 1 parameter that varies among them;
    one that has not is simply absent, so too small a sweep gives an empty frame with these columns
    (no error: a report of an early sweep should still render). ``evaluator`` is ``fanova``
    (default; random forest, seeded), ``ped_anova`` (fast, quantile based) or ``mdi``. ``distributions``:
    see :func:`study_from_trials`.
    """
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    usable = trials[usable_mask(trials, statuses).to_numpy()]
    def study(part: pd.DataFrame):
        return study_from_trials(part, statuses=statuses, distributions=distributions)

    rows = _rank(study(usable), "all", evaluator, seed) if len(usable) >= 2 else []
    if by_loss:
        for loss, part in usable.groupby(usable["config_loss"].astype(str), sort=True):
            if len(part) >= 2:
                rows += _rank(study(part), str(loss), evaluator, seed)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["importance"] = out["importance"].astype("float64")
    return out


def importance_available(trials: pd.DataFrame) -> bool:
    """Whether :func:`param_importance` can say anything: 2+ completed trials (cheap pre-check)."""
    return int(np.count_nonzero(usable_mask(trials))) >= 2
