"""What a batch-size ablation's answer costs under each search strategy, measured in one run.

The answer of an ablation is a table: for every cell (loss family × batch size) the best accuracy
tuning can reach. Each strategy runs the real sweep (Ray Tune, real training) on
``benchmarks/search_space.yaml`` once per searcher seed; its table is compared, cell by cell, with
a reference table from a larger random + FIFO search (computed once, cached in the output folder
under a digest of the space and the reference's size). Strategies:

random+FIFO, Ray's OptunaSearch + ASHA (the anchor), per-cell TPE + ASHA, and today's defaults
(``benchmarks/strategies.py``, shared with the replay benchmark), plus ``--variant
NAME:warm_start=2,patience=3,startup_trials=3`` for more points of the frontier.

Printed per strategy: the mean over seeds of the mean absolute per-cell gap to the reference
(points of val_top1; a cell without a completed trial counts its whole reference value), the worst
cell's gap over all seeds, cells without an answer, and total epochs as a ratio to random + FIFO's.

    python -m benchmarks.search [--seeds 0 1] [--out runs/bench-search] [--only default cells]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import machine_line
from benchmarks.strategies import REFERENCE_SAMPLES, REFERENCE_SEED, reference_space, strategies

SPACE = Path(__file__).with_name("search_space.yaml")


def run_one(space, strategy: str, sweep_id: str, workdir: Path) -> tuple[pd.DataFrame, float]:
    """Run one sweep in a fresh local Ray; its trial rows and its wall time."""
    from tune_schane import ray_tune
    from tune_schane.store import TrialStore

    store = workdir / f"store-{sweep_id}"
    for folder in (store, workdir / "ray" / sweep_id):  # an earlier run's rows would join this one's
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    ray_tune.init_ray(None)
    try:
        ray_tune.run_sweep(space, sweep_id=sweep_id, store_uri=str(store), storage_path=str(workdir / "ray"),
                           verbose=0, keep_checkpoints="none", strategy=strategy)
    finally:
        ray_tune.shutdown()
    return TrialStore(str(store)).load_trials(sweep_id), time.perf_counter() - start


def cell_table(trials: pd.DataFrame) -> dict[str, float]:
    """Cell ("<loss>@<batch>") -> best best_objective over its completed trials (the analysis' rule)."""
    done = trials[trials["status"] == "completed"]
    best = done.groupby(["config_loss", "config_batch_size"])["best_objective"].max()
    return {f"{loss}@{batch}": float(value) for (loss, batch), value in best.items()}


def reference(base, workdir: Path, out: Path, samples: int) -> dict:
    """The reference table, from the cache when this space and size were measured before."""
    measured = (base.fixed, base.grid, base.params, base.objective_metric, base.max_epochs, samples, REFERENCE_SEED)
    digest = hashlib.sha1(repr(measured).encode()).hexdigest()[:12]  # what the reference's numbers depend on
    cache = out / f"reference-{digest}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    space = reference_space(base, samples)
    trials, wall = run_one(space, "cells", "reference", workdir)
    table = {"cells": cell_table(trials), "trials": len(trials), "epochs": int(trials["epochs_run"].sum()),
             "samples_per_cell": samples, "wall_s": wall}
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(table, indent=1, sort_keys=True))
    return table


def score(table: dict[str, float], ref: dict[str, float]) -> dict:
    gaps = {cell: value - table.get(cell, 0.0) for cell, value in ref.items()}
    return {"mean_gap": sum(abs(g) for g in gaps.values()) / len(gaps), "worst_gap": max(gaps.values()),
            "worst_cell": max(gaps, key=gaps.get), "missing": sum(cell not in table for cell in ref)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="searcher seeds (whole searches)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-search"), help="cache and results folder")
    parser.add_argument("--only", nargs="+", default=None,
                        help="strategies to run (default: all; the epoch ratios need random+fifo)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... another strategy")
    parser.add_argument("--reference-samples", type=int, default=REFERENCE_SAMPLES)
    parser.add_argument("--samples", type=int, default=None, help="configs per cell (default: the space's 6)")
    return parser.parse_args(argv)


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every strategy × seed; prints each row as it lands, then the table; writes <out>/results.json."""
    from tune_schane.space import load_space

    base = load_space(SPACE)
    if args.samples:
        base = dataclasses.replace(base, num_samples=args.samples)
    out = args.out.resolve()  # Ray wants an absolute storage path
    workdir = out / "work"
    ref = reference(base, workdir, out, args.reference_samples)
    rows = []
    for name, (space, strategy) in strategies(base, args.variant).items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            seeded = dataclasses.replace(space, searcher_seed=seed * 100)
            trials, wall = run_one(seeded, strategy, f"{name.replace('+', '-')}-s{seed}", workdir)
            rows.append({"strategy": name, "seed": seed, "trials": len(trials), "wall_s": wall,
                         "epochs": int(trials["epochs_run"].sum()), **score(cell_table(trials), ref["cells"])})
            print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps({"reference": ref, "rows": rows}, indent=1))
    print_table(rows, ref)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per strategy: means over seeds; epochs as a ratio to random + FIFO's at the same seed."""
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    fifo = frame[frame["strategy"] == "random+fifo"].set_index("seed")["epochs"]
    fifo = fifo.reindex(sorted(frame["seed"].unique()))  # NaN ratios without random + FIFO's rows
    out = []
    for name, group in frame.groupby("strategy", sort=False):
        out.append({"strategy": name, "trials": group["trials"].mean(), "mean_gap": group["mean_gap"].mean(),
                    "worst_gap": group["worst_gap"].max(), "missing": int(group["missing"].sum()),
                    "epochs": group["epochs"].mean(), "ratio": (group.set_index("seed")["epochs"] / fifo).mean(),
                    "wall_s": group["wall_s"].mean()})
    return out


def print_table(rows: list[dict], ref: dict) -> None:
    print(f"\n# search benchmark — {machine_line()}")
    print(f"reference: random + FIFO, {ref['samples_per_cell']} configs per cell ({ref['trials']} trials, "
          f"{ref['epochs']} epochs); {len(ref['cells'])} cells; seeds {sorted({r['seed'] for r in rows})}")
    print(f"{'strategy':18} {'trials':>6} {'mean gap':>8} {'worst gap':>9} {'no answer':>9} {'epochs':>6} "
          f"{'x random':>8} {'wall s':>6}")
    for r in summary(rows):
        print(f"{r['strategy']:18} {r['trials']:6.1f} {r['mean_gap']:8.2f} {r['worst_gap']:9.2f} {r['missing']:9d} "
              f"{r['epochs']:6.0f} {r['ratio']:8.2f} {r['wall_s']:6.0f}")


def main(argv: list[str] | None = None) -> int:
    run_all(parse(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
