"""The names a trial's outcome is told in, defined once: per-epoch metrics, statuses, modes, output files.

Torch-free and pyarrow-free, so the loop (:mod:`tune_schane.finetune.trial`), the store's schema
(:mod:`tune_schane.store._schema`), the space parser and the analysis all import the same tuples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrialConfig

OBJECTIVE = "val_top1"  # the default objective: validation top-1 accuracy
EPOCH_METRICS = (
    "val_top1", "val_top5", "val_loss", "train_loss", "train_ce", "train_contrastive",
    "pos_per_anchor", "neg_per_anchor", "valid_anchors", "images_per_s", "peak_mem_mb",
    "epoch_seconds", "lr", "e2e_top1", "e2e_top5", "e2e_loss", "eval_seconds",
    "steps", "samples", "data_epochs", "elapsed_seconds",  # cumulative at the report: updates, images, passes, wall
)  # fmt: skip
# With an evaluation protocol (EVAL_MODES) the last epoch's val_top1/top5/loss are the protocol's numbers; e2e_*
# are always the trial's own classifier on val (equal to val_* in every other epoch and in every end_to_end trial);
# eval_seconds is the protocol's cost (0 where none ran). tune_schane/finetune/probe.py describes the protocols.
EVAL_MODES = ("end_to_end", "linear_probe", "two_stage")
PROTOCOL_METRICS = ("val_top1", "val_top5", "val_loss")  # the metrics a protocol replaces at the last epoch
METRIC_KEYS = ("epoch", *EPOCH_METRICS)  # every key of every epoch's report (Ray needs the same keys each time)
TRIAL_STATUSES = ("completed", "pruned", "diverged", "oom", "error", "running")
OBJECTIVE_MODES = ("max", "min")
# Which stage wrote a trial row: a sweep's search (chooses, on val), the confirm stage (retrains the finalists on
# fresh seeds and scores once on test), or a single `tune-schane train` run. Rows written before the column
# existed read as null (they are search or train rows, by their sweep id).
STAGES = ("search", "confirm", "train")
TEST_EPOCH_PICKS = ("final", "best_val")  # which epoch's weights a confirm trial scores on test
# A confirm trial's one score on the sealed test split (by its eval_mode's protocol), and its end-to-end classifier's
# top-1 on the same weights' test images beside it (equal to test_top1 for an end_to_end trial).
TEST_METRICS = ("test_top1", "test_top5", "test_loss", "test_e2e_top1")

# What a trial writes beside its checkpoint (tune_schane.finetune.trial.Trial.write_outputs), readable without torch;
# tune_schane.store.records.read_outputs reads them back for the store, whoever ran the trial.
CONFIG_FILE = "config.yaml"  # the resolved config as the trial runs it (automatic chunk and memory budget included)
HISTORY_FILE = "history.json"  # the metrics of every finished epoch
EVALUATION_FILE = "evaluation.json"  # where val came from and, for a confirm trial, its one test score


# A trial's objective from its history of reports (the store's best/final_objective, TrialResult's).
def finite_values(history: Sequence[dict], metric: str) -> list[float]:
    return [h[metric] for h in history if isinstance(h.get(metric), (int, float)) and math.isfinite(h[metric])]


def best_of(history: Sequence[dict], metric: str, mode: str) -> float:
    values = finite_values(history, metric)
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def final_of(history: Sequence[dict], metric: str) -> float:
    values = finite_values(history, metric)
    return values[-1] if values else math.nan


def last_count(history: Sequence[dict], key: str) -> int | None:
    """The last report's cumulative counter (``steps``, ``samples``), None when absent (an older trial)."""
    value = history[-1].get(key, math.nan) if history else math.nan
    return int(value) if value is not None and math.isfinite(value) else None


def objective_of(history: Sequence[dict], metric: str, mode: str, config: TrialConfig) -> float:
    """A trial's ``best_objective``: the best over its epochs, except for an eval_mode protocol's own numbers.

    A ``linear_probe`` / ``two_stage`` trial reports the protocol's val_* at its last epoch only; its earlier
    epochs' val_* are the end-to-end classifier's, another quantity. Once it has run all its epochs its
    ``val_*`` objective is therefore the protocol's number (the last epoch's), so the confirm stage ranks what
    the protocol reports; a trial stopped earlier has only end-to-end numbers, and its best is theirs.
    """
    if config.eval_mode != "end_to_end" and metric in PROTOCOL_METRICS and len(history) >= config.epochs:
        return final_of(history, metric)
    return best_of(history, metric, mode)
