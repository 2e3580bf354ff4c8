"""The trial store at scale (issue 16): tune-schane's reads against DuckDB on the same files.

    python -m benchmarks.store [--trials 10000] [--epochs 50] [--sweeps 10] [--dir PATH]

Builds a store of T trials x E epochs over S sweeps through the public write API, exactly as the
sweep callback writes it (per trial: one ``write_epochs`` with its epochs, then one ``write_trials``;
one part file each), plus a store holding only the first sweep. Then times, before and after
``compact``: ``sweeps()`` (what ``status`` shows), one sweep's ``load_trials`` and ``load_epochs``,
each against a DuckDB query that returns the same rows from the same files (the files tune-schane
opens for that read), and one sweep's ``load_epochs`` on the one-sweep store. Best of ``--repeats``.
Needs the ``bench`` extra (``pip install -e .[bench]``: DuckDB).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tune_schane.store import TrialStore
from tune_schane.store.compaction import compact

STATUSES = ("completed", "completed", "completed", "pruned", "oom", "diverged")


def build(store: TrialStore, trials: int, epochs: int, sweeps: int) -> None:
    for i in range(trials):
        sweep, trial = f"sweep-{i % sweeps:02d}", f"trial-{i // sweeps:05d}"
        history = [{"sweep_id": sweep, "trial_id": trial, "epoch": e, "val_top1": e + i % 7, "train_loss": 1.0 / e,
                    "lr": 1e-3, "epoch_seconds": 1.5} for e in range(1, epochs + 1)]  # fmt: skip
        store.write_epochs(history)
        store.write_trials([{"sweep_id": sweep, "trial_id": trial, "status": STATUSES[i % len(STATUSES)],
                             "config": {"lr": 1e-3, "batch_size": 32 << (i % 4)}, "objective_name": "val_top1",
                             "objective_mode": "max", "best_objective": float(epochs + i % 7),
                             "epochs_run": epochs, "wall_seconds": 1.5 * epochs}])  # fmt: skip


def _files_sql(paths: list[str]) -> str:
    return "read_parquet([" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "], union_by_name = true)"


def duckdb_queries(store: TrialStore, sweep: str) -> dict[str, Callable[[], object]]:
    import duckdb

    def run(sql: str) -> Callable[[], object]:
        return lambda: duckdb.connect().execute(sql).df()

    latest = "QUALIFY row_number() OVER (PARTITION BY sweep_id, trial_id{} ORDER BY written_at DESC) = 1"
    all_trials = _files_sql(store.files("trials").for_sweep(None))
    trials = _files_sql(store.files("trials").for_sweep(sweep))
    epochs = _files_sql(store.files("epochs").for_sweep(sweep))
    where = f"WHERE sweep_id = '{sweep}'"
    return {
        "status": run(f"""SELECT sweep_id, status, count(*) AS n FROM (
            SELECT sweep_id, trial_id, status FROM {all_trials} {latest.format('')}) GROUP BY ALL"""),
        "trials": run(f"SELECT * FROM {trials} {where} {latest.format('')}"),
        "epochs": run(f"""WITH e AS (SELECT * FROM {epochs} {where} {latest.format(', epoch')}),
            t AS (SELECT sweep_id, trial_id, epochs_run FROM {trials} {where} {latest.format('')})
            SELECT e.* FROM e LEFT JOIN t USING (sweep_id, trial_id)
            WHERE t.epochs_run IS NULL OR e.epoch <= t.epochs_run"""),
    }


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(store: TrialStore, one: TrialStore, sweep: str, repeats: int) -> list[tuple[str, float, float]]:
    ours = {"status": store.sweeps, "trials": lambda: store.load_trials(sweep),
            "epochs": lambda: store.load_epochs(sweep)}  # fmt: skip
    theirs = duckdb_queries(store, sweep)
    labels = {"status": "status: sweeps()", "trials": "one sweep's trials", "epochs": "one sweep's epochs"}
    rows = [(labels[k], best_of(ours[k], repeats), best_of(theirs[k], repeats)) for k in ours]
    rows.append(("one sweep's epochs, 1-sweep store", best_of(lambda: one.load_epochs(sweep), repeats),
                 best_of(duckdb_queries(one, sweep)["epochs"], repeats)))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to build the stores (default: a temporary folder)")
    args = parser.parse_args(argv)
    top = Path(args.dir or tempfile.mkdtemp(prefix="store-bench-"))
    store, one = TrialStore(top / "many"), TrialStore(top / "one")
    start = time.perf_counter()
    build(store, args.trials, args.epochs, args.sweeps)
    built = time.perf_counter() - start
    build(one, args.trials // args.sweeps, args.epochs, 1)
    files = sum(len(store.files(t).for_sweep(None)) for t in ("trials", "epochs"))
    print(f"store: {args.trials} trials x {args.epochs} epochs over {args.sweeps} sweeps, {files} part files, "
          f"built through the write API in {built:.1f} s ({top})")  # fmt: skip
    sweep = "sweep-00"
    before = measure(store, one, sweep, args.repeats)
    start = time.perf_counter()
    compact(store)
    compact(one)
    compacted = time.perf_counter() - start
    after = measure(store, one, sweep, args.repeats)
    print(f"compact (both stores): {compacted:.1f} s\n")
    print("| read | store | tune-schane s | DuckDB s | ratio |")
    print("|---|---|---:|---:|---:|")
    for when, rows in (("uncompacted", before), ("compacted", after)):
        for label, ours, theirs in rows:
            print(f"| {label} | {when} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")
    if args.dir is None:
        shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
