"""``tune-schane analyze`` and ``tune-schane export``: all of the analysis package's file I/O."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tune_schane.errors import BadInput
from tune_schane.store import TrialStore


def _sweep_trials(store_uri: str, sweep: str | None) -> tuple[TrialStore, str, pd.DataFrame]:
    store = TrialStore(store_uri)
    if not store.exists():
        raise BadInput(f"store {store_uri}: no trials yet (run `tune-schane sweep` first)")
    sweeps = store.sweeps()
    if sweeps.empty:
        raise BadInput(f"store {store_uri}: no trials yet (run `tune-schane sweep` first)")
    if sweep is None:
        sweep = str(sweeps.sort_values("last_written_at")["sweep_id"].iloc[-1])
    elif sweep not in set(sweeps["sweep_id"]):
        recent = ", ".join(sweeps.sort_values("last_written_at")["sweep_id"].astype(str).tail(5))
        raise BadInput(f"sweep {sweep!r}: not in store {store_uri} (recent: {recent})")
    trials = store.load_trials(sweep)
    if not (trials["status"] == "completed").any():
        counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().sort_index().items())
        raise BadInput(f"sweep {sweep}: no completed trial ({counts})")
    return store, sweep, trials


def _writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {folder}: cannot create ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise BadInput(f"--out {folder}: not writable")
    return folder


def analyze_command(store_uri: str, sweep: str | None, out: str | None) -> int:
    from .report import build_report, write_report

    store, sweep, trials = _sweep_trials(store_uri, sweep)
    folder = _writable(Path(out) if out else Path("reports") / sweep)
    report = build_report(trials, store.load_epochs(sweep), sweep_id=sweep, space_text=store.read_space(sweep),
                          store_uri=store_uri)
    path = write_report(report, folder)
    table = report.tables["batch_size"][["loss", "batch_size", "n_trials", "n_completed", "best", "mean"]]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    trend = report.tables["trend"][["loss", "slope_best", "drop_best"]]
    print(trend.to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
    print(f"report: {path.resolve()}")
    return 0


def export_command(store_uri: str, sweep: str | None, out: str | None, by: str | None) -> int:
    from .export import export_best

    _, sweep, trials = _sweep_trials(store_uri, sweep)
    folder = _writable(Path(out or "."))
    for path in export_best(trials, folder, by=by):
        print(f"{path}  (rerun: tune-schane train {path})")
    return 0
