"""Rows of the trial store as the recorder writes them (a trial, an epoch), for store tests."""

from __future__ import annotations

from tune_schane.finetune.config import TrialConfig


def trial(sweep="s1", trial_id="t1", status="completed", **extra):
    row = {
        "sweep_id": sweep, "trial_id": trial_id, "status": status,
        "config": TrialConfig(loss="schane", batch_size=128, beta=2.0, lam=None, shots=None).to_dict(),
        "objective_name": "val_top1", "objective_mode": "max", "best_objective": 0.81,
        "final_objective": 0.79, "epochs_run": 3, "wall_seconds": 12.5, "resources_cpu": 1.0,
        "resources_gpu": 0.25, "node": "node-a", "versions": {"torch": "2.14.1"}, "commit": "abc123",
        "params": {"loss": "schane", "beta": 2.0},
    }  # fmt: skip
    row.update(extra)
    return row


def epoch(sweep="s1", trial_id="t1", n=1, **metrics):
    return {"sweep_id": sweep, "trial_id": trial_id, "epoch": n, **metrics}
