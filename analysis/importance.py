"""Parameter importance with Optuna's own evaluators, on a study rebuilt from the stored trials.

Each completed trial becomes a ``FrozenTrial`` with the parameters its sweep sampled (the store's
``params`` column; the config columns when that is empty) and its best objective. Distributions are
inferred from the stored values: categorical for strings and for integers with few values (batch
size, a loss family), float otherwise, on a log scale when all values are positive and span more
than a decade (lr, τ). Conditional parameters are simply absent from the trials that did not use
them; Optuna's evaluators only use trials that hold every parameter asked about, so the overall
ranking is computed over the parameters every completed trial has, and ``by_loss=True`` adds one
ranking per loss family over that family's own parameters.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

CANDIDATES = ("loss", "tau", "beta", "lam", "lr", "batch_size", "weight_decay", "warmup_epochs", "layer_decay",
              "drop_path_rate")
EVALUATORS = ("fanova", "ped_anova", "mdi")


def _params_of(row: pd.Series) -> dict[str, Any]:
    raw = row.get("params")
    params: dict[str, Any] = {}
    if isinstance(raw, str) and raw.strip():
        try:
            params = json.loads(raw)
        except ValueError:
            params = {}
    params = {k: v for k, v in params.items() if k in CANDIDATES and v is not None}
    if params:
        return params
    out = {}
    for name in CANDIDATES:
        value = row.get(f"config_{name}")
        if value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA:
            out[name] = value.item() if hasattr(value, "item") else value
    return out


def _distribution(values: list[Any]):
    import optuna.distributions as od

    if all(isinstance(v, str) for v in values) or (
        all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values) and len(set(values)) <= 8
    ):
        return od.CategoricalDistribution(sorted(set(values), key=str))
    numbers = [float(v) for v in values]
    low, high = min(numbers), max(numbers)
    if low == high:
        return None
    log = low > 0 and high / low > 10
    return od.FloatDistribution(low, high, log=log)


def study_from_trials(trials: pd.DataFrame, params: list[str] | None = None, statuses=("completed",)):
    """An in-memory Optuna study of the usable trials; parameters that never vary are left out."""
    import optuna

    direction = "maximize" if (trials.get("objective_mode", pd.Series(["max"])).iloc[0] if len(trials) else "max") \
        == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    usable = trials[trials["status"].isin(statuses) & np.isfinite(pd.to_numeric(trials["best_objective"]))]
    rows = [(_params_of(row), float(row["best_objective"])) for _, row in usable.iterrows()]
    names = params or sorted({k for p, _ in rows for k in p}, key=CANDIDATES.index)
    distributions = {}
    for name in names:
        values = [p[name] for p, _ in rows if name in p]
        dist = _distribution(values) if values else None
        if dist is not None:
            distributions[name] = dist
    study = optuna.create_study(direction=direction)
    for p, value in rows:
        kept = {k: (float(v) if isinstance(distributions[k], optuna.distributions.FloatDistribution) else v)
                for k, v in p.items() if k in distributions}
        study.add_trial(optuna.trial.create_trial(params=kept, distributions={k: distributions[k] for k in kept},
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


def _rank(study, scope: str, evaluator: str, seed: int) -> list[dict]:
    from optuna.importance import get_param_importances

    trials = study.trials
    if len(trials) < 2:
        return []
    common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
    varying = [n for n in common if len({str(t.params[n]) for t in trials}) > 1]
    if not varying:
        return []
    ranked = get_param_importances(study, evaluator=_evaluator(evaluator, seed), params=sorted(varying))
    return [{"scope": scope, "param": k, "importance": float(v)} for k, v in ranked.items()]


def param_importance(trials: pd.DataFrame, *, by_loss: bool = False, evaluator: str = "fanova",
                     seed: int = 0) -> pd.DataFrame:
    """(scope, param, importance): ``scope`` is "all" or a loss family. Empty when fewer than 2 usable trials."""
    rows = _rank(study_from_trials(trials), "all", evaluator, seed)
    if by_loss:
        for loss, part in trials.groupby("config_loss", sort=True):
            rows += _rank(study_from_trials(part), str(loss), evaluator, seed)
    return pd.DataFrame(rows, columns=["scope", "param", "importance"])
