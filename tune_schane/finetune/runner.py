"""The single-run driver used by ``tune-schane train``: one :class:`~tune_schane.finetune.trial.Trial` to its end.

:func:`run_trial` writes the resolved config, one JSON line of metrics per epoch and a checkpoint per
epoch into an output folder, and turns early stops into a status (``completed``, ``diverged``, ``oom``,
``error``). A sweep does not use it: Ray's trainable drives :class:`Trial` itself.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrialConfig
from .outcomes import OBJECTIVE, final_of, objective_of
from .train import TrialStopped
from .trial import CHECKPOINT_FILE, Trial


@dataclass
class TrialResult:
    config: TrialConfig
    status: str  # completed | diverged | oom | error
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    evaluation: dict = field(default_factory=dict)  # Trial.evaluation(): data roles and the test score

    def best_objective(self, metric: str = OBJECTIVE, mode: str = "max") -> float:
        return objective_of(self.history, metric, mode, self.config)

    def final_objective(self, metric: str = OBJECTIVE) -> float:
        return final_of(self.history, metric)


def run_trial(
    config: TrialConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    wrap_batches: Callable[[Iterable, int], Iterable] | None = None,
) -> TrialResult:
    """Run one trial to its end. BadInput (a bad config) propagates; anything after set-up becomes a status.

    ``on_epoch`` hears each epoch's metrics; ``wrap_batches`` is passed to :meth:`Trial.run`.
    """
    start = time.perf_counter()
    trial = Trial(config)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / CHECKPOINT_FILE).exists():
            trial.load_checkpoint(out)
        trial.write_outputs(out)
    status, error = "completed", None
    try:
        for metrics in trial.run(wrap_batches):
            if out is not None:
                trial.save_checkpoint(out)
                with open(out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(metrics) + "\n")
            if on_epoch is not None:
                on_epoch(metrics)
    except TrialStopped as stop:
        status, error = stop.status, str(stop)
    except Exception as exc:  # recorded, not swallowed: the caller decides the exit code
        status = "error"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    return TrialResult(trial.config, status, error, trial.history, time.perf_counter() - start, trial.evaluation())
