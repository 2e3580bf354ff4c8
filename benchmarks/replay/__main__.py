"""Search strategies judged on a table of real learning curves, over many searcher seeds, in minutes.

    python -m benchmarks.replay [--seeds 50] [--jobs 2] [--plot docs/replay-anytime.png] [--variant NAME:k=v,...]

Each strategy of ``benchmarks/strategies.py`` (the same definitions the real benchmark runs on Ray)
replays its sweep of ``benchmarks/search_space.yaml`` at searcher seeds 0, 100, 200, ... on 2 simulated
workers (:mod:`benchmarks.replay.simulate`), every result read from ``benchmarks/tables/bench-search.jsonl``
(:mod:`benchmarks.replay.table`). Judged per cell against the table's truth (:mod:`benchmarks.replay.metrics`);
printed: mean and IQM of the selection regret with 95 % bootstrap CIs, reporting error, cells without an
answer, epochs as a fraction of random + FIFO's, regret at ⅓ of random + FIFO's epochs, epochs to reach 1
point, paired tests against today's defaults and against the anchor, the per-cell regret, the real
benchmark's own metric (mean gap to a random + FIFO reference of 24 configs per cell) beside the values
docs/performance.md measured on Ray, and the table's diagnostics. Last line:

    default: seeds=N regret=R ci=[LO,HI] epochs=E
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.replay import metrics
from benchmarks.replay.simulate import Snapper, replay
from benchmarks.replay.table import TABLE, Table
from benchmarks.strategies import REFERENCE_SEED, reference_space, strategies

BUDGET_STEP = 4  # epochs between points of the anytime curve
# docs/performance.md, measured on Ray 2026-12-01 (two searcher seeds each): mean gap, epochs x random + FIFO
MEASURED_ON_RAY = {"random+fifo": (2.74, 1.00), "ray-optuna+asha": (56.15, 0.62), "cells": (3.08, 0.62),
                   "default": (1.93, 0.58)}

PLOTTED = ("random+fifo", "ray-optuna+asha", "cells", "default")  # the anytime plot's curves (variants: results.json)

_TABLE: Table | None = None
_SNAP: Snapper | None = None


def _load(path: str, points: int | None) -> None:
    global _TABLE, _SNAP
    _TABLE = Table(Path(path), points)
    _SNAP = Snapper(_TABLE)


def _one(job: tuple) -> dict:
    name, space, kind, seed, budgets = job
    rep = replay(_TABLE, space, kind, seed, snapper=_SNAP)
    row = {"strategy": name, "seed": seed, **metrics.score(_TABLE, rep)}
    if budgets is not None:
        row["anytime"] = metrics.anytime(_TABLE, rep, budgets).tolist()
    return row


def run(args: argparse.Namespace) -> dict:
    _load(str(args.table), args.points)
    table = _TABLE
    base = table.space
    chosen = {k: v for k, v in strategies(base, args.variant).items() if not args.only or k in args.only}
    budgets = np.arange(0, base.max_epochs * len(base.cells()) * base.num_samples + BUDGET_STEP, BUDGET_STEP)
    seeds = [100 * i for i in range(args.seeds)]
    jobs = [(name, space, kind, seed, budgets) for name, (space, kind) in chosen.items() for seed in seeds]
    jobs.append(("reference", reference_space(base), "cells", REFERENCE_SEED, None))
    start = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            rows = pool.map(_one, jobs, chunksize=1)
    else:
        rows = [_one(job) for job in jobs]
    reference = rows.pop()
    return {"rows": rows, "reference": reference, "budgets": budgets.tolist(), "seconds": time.perf_counter() - start,
            "points": table.n_points, "cells": table.cells}


def summarise(result: dict) -> dict:
    table = _TABLE
    rows, cells = result["rows"], result["cells"]
    budgets = np.array(result["budgets"])
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    by = {n: sorted((r for r in rows if r["strategy"] == n), key=lambda r: r["seed"]) for n in names}
    fifo = {r["seed"]: r["epochs"] for r in by.get("random+fifo", [])}
    ref = result["reference"]["observed"]
    out = {}
    for name, group in by.items():
        regret = np.array([r["regret"] for r in group])
        ratio = np.array([r["epochs"] / fifo[r["seed"]] for r in group]) if fifo else np.full(len(group), math.nan)
        curves = np.array([r["anytime"] for r in group])
        third = np.array([np.interp(fifo[r["seed"]] / 3, budgets, c) for r, c in zip(group, curves, strict=True)]) \
            if fifo else np.full(len(group), math.nan)
        reach = [next((b for b, v in zip(budgets, c, strict=True) if v <= 1.0), math.inf) for c in curves]
        reach_ratio = np.array([b / fifo[r["seed"]] for b, r in zip(reach, group, strict=True)]) if fifo else None
        gaps = np.array([np.mean([abs(rv - (o if o is not None else 0.0)) for rv, o in zip(ref, r["observed"],
                                                                                          strict=True)])
                         for r in group])
        out[name] = {
            "seeds": len(group), "regret": float(regret.mean()), "regret_ci": metrics.ci(regret),
            "iqm": metrics.iqm(regret), "iqm_ci": metrics.ci(regret, metrics.iqm),
            "report_error": float(np.nanmean([r["report_error"] for r in group])),
            "optimism": float(np.nanmean([r["optimism"] for r in group])),
            "missing": float(np.mean([r["missing"] for r in group])),
            "trials": float(np.mean([r["trials"] for r in group])),
            "epochs": float(np.mean([r["epochs"] for r in group])), "ratio": float(np.mean(ratio)),
            "regret_at_third": float(np.mean(third)), "regret_at_third_ci": metrics.ci(third),
            "reach_1pt_median": float(np.median(reach_ratio)) if reach_ratio is not None else math.nan,
            "reach_1pt_share": float(np.mean(np.isfinite(reach))),
            "snap": float(np.mean([r["snap"] for r in group])),
            "per_cell": np.mean([r["per_cell"] for r in group], axis=0).tolist(),
            "curve": curves.mean(axis=0).tolist(), "curve_sd": curves.std(axis=0, ddof=1).tolist(),
            "gap": float(gaps.mean()), "gap_range": (float(np.percentile(gaps, 5)), float(np.percentile(gaps, 95))),
        }
        for other in ("default", "ray-optuna+asha"):
            if other in by and other != name:
                out[name][f"vs_{other}"] = metrics.paired(regret, np.array([r["regret"] for r in by[other]]))
    return {"strategies": out, "cells": cells, "truth": table.truth().tolist(),
            "noise": metrics.seed_noise(table).tolist(), "floor": metrics.selection_floor(table).tolist(),
            "rank": metrics.rank_correlations(table).tolist(),
            "transfer": metrics.transfer_regret(table).tolist()}


def print_report(result: dict, summary: dict) -> None:
    table, s = _TABLE, summary["strategies"]
    print(f"# replay: {len(result['cells'])} cells × {table.n_points} pool points × {table.values.shape[2]} seeds "
          f"({TABLE.name}); {len({r['seed'] for r in result['rows']})} searcher seeds, "
          f"{len(result['rows']) + 1} replayed sweeps in {result['seconds']:.0f} s")
    print(f"truth per cell: mean {np.mean(summary['truth']):.1f} val_top1; seed noise (sd of one config's final "
          f"value over seeds, median over the pool): median cell {np.median(summary['noise']):.2f}, "
          f"worst {max(summary['noise']):.2f} points\n")
    print(f"selection floor (regret of picking among all {table.n_points} pool points by one seed's final value): "
          f"mean {np.mean(summary['floor']):.2f} points\n")
    head = (f"{'strategy':28} {'regret [95% CI]':>20} {'IQM [95% CI]':>20} {'rep.err':>7} {'optim.':>6} {'no ans':>6} "
            f"{'trials':>6} {'epochs':>6} {'x FIFO':>6} {'@1/3':>5} {'1pt@':>5} {'snap':>5}")
    print(head)
    for name, r in s.items():
        print(f"{name:28} {r['regret']:6.2f} [{r['regret_ci'][0]:5.2f},{r['regret_ci'][1]:5.2f}] "
              f"{r['iqm']:6.2f} [{r['iqm_ci'][0]:5.2f},{r['iqm_ci'][1]:5.2f}] {r['report_error']:7.2f} "
              f"{r['optimism']:6.2f} "
              f"{r['missing']:6.2f} {r['trials']:6.1f} {r['epochs']:6.0f} {r['ratio']:6.2f} "
              f"{r['regret_at_third']:5.2f} {r['reach_1pt_median']:5.2f} {r['snap']:5.3f}")
    print("\n(regret: mean over seeds of the mean per-cell selection regret, points; rep.err: pick's best_objective −"
          " truth;\n optim.: pick's best_objective − its true value; @1/3: regret after 1/3 of random + FIFO's epochs;"
          " 1pt@: median epochs (x FIFO) to regret ≤ 1,"
          " inf if never; snap: mean distance to the pool point run, unit cube)\n")
    print("paired over seeds (regret of the row − regret of the column: mean [95% CI], Wilcoxon p)")
    for name, r in s.items():
        parts = [f"vs {o}: {r[f'vs_{o}']['mean_diff']:+.2f} [{r[f'vs_{o}']['ci'][0]:+.2f},"
                 f"{r[f'vs_{o}']['ci'][1]:+.2f}] p={r[f'vs_{o}']['p']:.2g}"
                 for o in ("default", "ray-optuna+asha") if f"vs_{o}" in r]
        print(f"  {name:28} " + ";  ".join(parts))
    print("\nthe real benchmark's metric (mean |gap| to a random + FIFO reference of 24 configs per cell, one seed):")
    for name, r in s.items():
        ray = MEASURED_ON_RAY.get(name)
        on_ray = f"  measured on Ray: {ray[0]:.2f}, x FIFO {ray[1]:.2f}" if ray else ""
        print(f"  {name:28} replay {r['gap']:6.2f} (5-95 % over seeds {r['gap_range'][0]:.2f}-"
              f"{r['gap_range'][1]:.2f}), x FIFO {r['ratio']:.2f}{on_ray}")
    print("\nper-cell selection regret (mean over seeds):")
    print(f"  {'cell':10} {'truth':>6} {'noise':>5} {'floor':>5} " + " ".join(f"{n[:11]:>11}" for n in s))
    for c, cell in enumerate(summary["cells"]):
        print(f"  {cell:10} {summary['truth'][c]:6.1f} {summary['noise'][c]:5.2f} {summary['floor'][c]:5.2f} "
              + " ".join(f"{s[n]['per_cell'][c]:11.2f}" for n in s))
    rank = np.array(summary["rank"])
    print("\nrank correlation (Spearman, one seed's value vs the true final value, over the pool) by fidelity:")
    marks = [(i, f"{(i + 1) / 4:g} ep") for i in (0, 1, 3, 7, 11)]
    print(f"  {'cell':10} " + " ".join(f"{m:>7}" for _, m in marks))
    for c, cell in enumerate(summary["cells"]):
        print(f"  {cell:10} " + " ".join(f"{rank[c, i]:7.2f}" for i, _ in marks))
    transfer = np.array(summary["transfer"])
    cells = summary["cells"]
    loss = [c.split("@")[0] for c in cells]
    batch = [int(c.split("@")[1]) for c in cells]
    sizes = sorted(set(batch))
    nb = [(i, j) for i in range(len(cells)) for j in range(len(cells))
          if loss[i] == loss[j] and abs(sizes.index(batch[i]) - sizes.index(batch[j])) == 1]
    same_batch = [(i, j) for i in range(len(cells)) for j in range(len(cells)) if i != j and batch[i] == batch[j]]
    print("\ntransfer regret (the source cell's top-3 run in the target, best of them; every pair in results.json): "
          f"neighbouring batch size {np.mean([transfer[i, j] for i, j in nb]):.2f}, "
          f"same batch other loss {np.mean([transfer[i, j] for i, j in same_batch]):.2f}, "
          f"all pairs {transfer[~np.eye(len(cells), dtype=bool)].mean():.2f} points")


def plot(summary: dict, budgets: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = np.array(budgets)
    for name, r in summary["strategies"].items():
        if name not in PLOTTED:
            continue
        mean, sd = np.array(r["curve"]), np.array(r["curve_sd"])
        half = 1.96 * sd / math.sqrt(r["seeds"])
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - half, mean + half, alpha=0.2)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    fifo = summary["strategies"].get("random+fifo", {}).get("epochs", math.nan)
    ax.set_xlabel(f"cumulative epochs (random + FIFO spends {fifo:.0f})")
    ax.set_ylabel("mean selection regret (val_top1 points)")
    ax.set_yscale("log")
    ax.set_title("Anytime regret, replayed (band: 95 % normal CI over searcher seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50, help="searcher seeds per strategy (0, 100, 200, ...)")
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--points", type=int, default=None, help="use only this Sobol prefix of the pool")
    parser.add_argument("--only", nargs="+", default=None, help="strategies to replay (default: all)")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... another strategy")
    parser.add_argument("--out", type=Path, default=Path("runs/replay"), help="results.json goes here")
    parser.add_argument("--plot", type=Path, default=None, help="write the anytime plot (PNG) here")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**result, "summary": summary}, default=float))
    if args.plot:
        plot(summary, result["budgets"], args.plot)
    print_report(result, summary)
    d = summary["strategies"].get("default")
    if d is not None:
        print(f"default: seeds={d['seeds']} regret={d['regret']:.2f} ci=[{d['regret_ci'][0]:.2f},"
              f"{d['regret_ci'][1]:.2f}] epochs={d['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
