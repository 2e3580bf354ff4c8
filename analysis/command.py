"""``tune-schane analyze`` and ``tune-schane export``: the analysis package's command-line edge.

All of the package's file I/O happens here or in :func:`analysis.report.write_report` /
:func:`analysis.export.export_best`, which these call. Every problem a user can fix (no store, an
unknown sweep, a sweep with nothing to analyse, an output folder that cannot be written) is a
:class:`BadInput` with one line that says what to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from tune_schane.errors import BadInput
from tune_schane.store import TrialStore, open_existing

MAX_LISTED_SWEEPS = 5


def resolve_sweep(store_uri: str, sweep: str | None) -> tuple[TrialStore, str, pd.DataFrame]:
    """Open the store, pick the sweep (the most recently written one when None), load its trials.

    Refuses (BadInput) a store path that does not exist, an empty store, an unknown sweep (listing
    up to 5 known ones, most recent first) and a sweep without a completed trial (with its counts by
    status: a sweep where every trial ran out of memory needs a different fix than one still running).
    """
    store = open_existing(store_uri)  # a missing path is a typo, not an empty store
    sweeps = store.sweeps() if store.exists() else None
    if sweeps is None or sweeps.empty:
        raise BadInput(f"store {store_uri}: empty, no trials yet (run `tune-schane sweep` first)")
    recent = sweeps.sort_values(["last_written_at", "sweep_id"], ascending=[False, True], kind="stable")
    if sweep is None:
        sweep = str(recent["sweep_id"].iloc[0])
    elif sweep not in set(sweeps["sweep_id"].astype(str)):
        known = list(recent["sweep_id"].astype(str).head(MAX_LISTED_SWEEPS))
        more = f" and {len(sweeps) - len(known)} more" if len(sweeps) > len(known) else ""
        raise BadInput(f"sweep {sweep!r}: not in store {store_uri} (known: {', '.join(known)}{more})")
    trials = store.load_trials(sweep)
    if not (trials["status"].astype(str) == "completed").any():
        counts = trials["status"].astype(str).value_counts()
        listed = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        raise BadInput(f"sweep {sweep}: no completed trial ({listed})")
    return store, sweep, trials


def writable_folder(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it writable by creating a file there (BadInput if not).

    A real write is the only reliable test: ``os.access`` says yes to root on a read-only mount.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BadInput(f"--out {folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


def summary_lines(tables: dict[str, pd.DataFrame], mode: str = "max") -> list[str]:
    """A short per-family summary (one line per loss family + a header) for the terminal."""
    table, trend = tables["batch_size"], tables["trend"].set_index("loss")
    rows = []
    for loss, part in table.groupby("loss", sort=True):
        ok = part[part["best"].notna()]
        best = ok.loc[ok["best"].idxmax() if mode == "max" else ok["best"].idxmin()] if len(ok) else None
        rows.append({
            "loss": loss,
            "trials": int(part["n_trials"].sum()),
            "completed": int(part["n_completed"].sum()),
            "failed": int(part[["n_diverged", "n_oom", "n_error"]].to_numpy().sum()),
            "best": float(best["best"]) if best is not None else float("nan"),
            "at_batch": int(best["batch_size"]) if best is not None else pd.NA,
            "slope/doubling": float(trend.loc[loss, "slope_best"]) if loss in trend.index else float("nan"),
        })
    frame = pd.DataFrame(rows)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-").splitlines()


def analyze_command(store: str, sweep: str | None, out: str | None) -> int:
    """Build the HTML report of one sweep into ``out`` (default ``reports/<sweep_id>/``); print a summary."""
    from .report import build_report, write_report
    from .sensitivity import objective_mode

    trial_store, sweep, trials = resolve_sweep(store, sweep)
    folder = writable_folder(Path(out) if out else Path("reports") / sweep)
    epochs = trial_store.load_epochs(sweep)
    report = build_report(trials, epochs, sweep_id=sweep, space_text=trial_store.read_space(sweep), store_uri=store)
    path = write_report(report, folder)
    from .confirmed import search_part
    from .confirmed import summary_lines as confirm_lines

    search = search_part(trials)
    print(f"sweep {sweep}: {len(trials)} trials ({len(search)} search, {len(trials) - len(search)} other)")
    for line in confirm_lines(trials) or ["no confirm stage yet: the numbers below are selection (optimistic); "
                                          f"`tune-schane confirm --sweep {sweep}` gives numbers to report"]:
        print(line)
    print("search stage (best on val, picked on val: selection, optimistic):")
    for line in summary_lines(report.tables, objective_mode(search)):
        print(line)
    print(f"report: {path.resolve()}")
    return 0


def export_command(store: str, sweep: str | None, out: str | None, by: str | None) -> int:
    """Write the best config(s) of one sweep as YAML into folder ``out`` (default: the current folder)."""
    from .export import GROUPS, export_best

    if by is not None and by not in GROUPS:
        raise BadInput(f"--by {by!r}: expected one of {sorted(GROUPS)}")
    _, sweep, trials = resolve_sweep(store, sweep)
    folder = writable_folder(Path(out or "."))
    for path in export_best(trials, folder, by=by):
        print(f"{path}  (rerun: tune-schane train {os.fspath(path)})")
    return 0
