"""The names a trial's outcome is told in, defined once: the per-epoch metrics, the statuses, the modes.

Torch-free and pyarrow-free, so the loop (:mod:`tune_schane.trial`), the store's schema
(:mod:`tune_schane.store_schema`), the space parser and the analysis all import the same tuples.
"""

from __future__ import annotations

OBJECTIVE = "val_top1"  # the default objective: validation top-1 accuracy
EPOCH_METRICS = (
    "val_top1", "val_top5", "val_loss", "train_loss", "train_ce", "train_contrastive",
    "pos_per_anchor", "neg_per_anchor", "valid_anchors", "images_per_s", "peak_mem_mb",
    "epoch_seconds", "lr",
)  # fmt: skip
METRIC_KEYS = ("epoch", *EPOCH_METRICS)  # every key of every epoch's report (Ray needs the same keys each time)
TRIAL_STATUSES = ("completed", "pruned", "diverged", "oom", "error", "running")
OBJECTIVE_MODES = ("max", "min")
