"""Sim-to-real: real sweeps of a strategy (Ray, real training) against the replay's distribution, cell by cell.

    python -m benchmarks.replay.check [--strategies default random+fifo] [--seeds 0 1] [--replay-seeds 50]

Each real sweep is the search benchmark's (``benchmarks/search.py``: ``benchmarks/search_space.yaml``,
searcher seed 100 × seed, continuous samples, trials trained for real on Ray). Per cell it reports its
best ``best_objective``; the replay of the same strategy over ``--replay-seeds`` searcher seeds gives
that value's distribution (mean μ, standard deviation σ over seeds). Printed per cell: the real values,
μ ± 2σ, and whether each real value lies within; then trials and epochs, real against replayed. Real
sweeps are kept in ``runs/replay/real-<strategy>-s<seed>.json`` (a rerun reads them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks.replay import metrics
from benchmarks.replay.simulate import Snapper, replay
from benchmarks.replay.table import Table, load_space
from benchmarks.strategies import strategies


def real_sweep(space, kind: str, name: str, seed: int, out: Path) -> dict:
    cache = out / f"real-{name.replace('+', '-')}-s{seed}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from benchmarks.search import cell_table, run_one

    seeded = dataclasses.replace(space, searcher_seed=seed * 100)
    trials, wall = run_one(seeded, kind, f"check-{name.replace('+', '-')}-s{seed}", out.resolve() / "work")
    row = {"cells": cell_table(trials), "trials": len(trials), "epochs": int(trials["epochs_run"].sum()),
           "wall_s": wall}
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row, indent=1))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["default"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="real sweeps' seeds (searcher seed × 100)")
    parser.add_argument("--replay-seeds", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/replay"))
    args = parser.parse_args(argv)
    chosen = strategies(load_space())
    real_rows = {name: [real_sweep(*chosen[name], name, seed, args.out) for seed in args.seeds]
                 for name in args.strategies}  # first: they need no table
    table = Table()
    snapper = Snapper(table)
    inside = total = 0
    for name in args.strategies:
        space, kind = chosen[name]
        real = real_rows[name]
        reps = [replay(table, space, kind, 100 * i, snapper=snapper) for i in range(args.replay_seeds)]
        observed = np.array([[np.nan if v is None else v for v in metrics.score(table, r)["observed"]] for r in reps])
        mu, sd = np.nanmean(observed, axis=0), np.nanstd(observed, axis=0, ddof=1)
        print(f"\n# {name}: real sweeps (seeds {args.seeds}) against {args.replay_seeds} replayed ones")
        print(f"  {'cell':10} {'real':>14} {'replay μ ± 2σ':>18}  within")
        for c, cell in enumerate(table.cells):
            values = [r["cells"].get(cell) for r in real]
            ok = [v is not None and abs(v - mu[c]) <= 2 * sd[c] for v in values]
            inside, total = inside + sum(ok), total + len(ok)
            shown = " ".join("  --" if v is None else f"{v:6.1f}" for v in values)
            print(f"  {cell:10} {shown:>14} {mu[c]:8.1f} ± {2 * sd[c]:5.1f}   {sum(ok)}/{len(ok)}")
        print(f"  trials real {np.mean([r['trials'] for r in real]):.1f}, replayed "
              f"{np.mean([len(r.trials) for r in reps]):.1f}; epochs real {np.mean([r['epochs'] for r in real]):.0f}, "
              f"replayed {np.mean([r.epochs for r in reps]):.0f} (sd {np.std([r.epochs for r in reps]):.0f})")
    print(f"\nwithin the replay's μ ± 2σ: {inside} of {total} (cell, real sweep) values")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
