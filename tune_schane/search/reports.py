"""The keys of what a trial reports, and how a trial ended, read from its last report.

Shared by the Ray glue (the trainable writes these keys) and the Ray-free searcher logic (which reads
them), so a replayed sweep (``benchmarks/replay``) and a real one judge a trial's ending the same way.
"""

from __future__ import annotations

STATUS_KEY = "trial_status"  # running | diverged | oom, in every report
CONFIG_KEY = "trial_config"  # the TrialConfig as a dict, in the param space of every trial
CELL_KEY = "cell"  # index of the trial's grid cell, for the per-cell ASHA


def trial_status(result: dict | None, error: bool, max_epochs: int) -> str:
    """How a trial ended, from its last result: completed, pruned (stopped early), diverged, oom or error."""
    if error:
        return "error"
    if not result:
        return "pruned"
    status = result.get(STATUS_KEY, "running")
    if status != "running":
        return status
    return "completed" if int(result.get("epoch", 0)) >= max_epochs else "pruned"
