"""The replay benchmark's table: real learning curves of one shared pool of configs in every cell.

Built once by the product's own trainer (:class:`tune_schane.finetune.trial.Trial`, no Ray) on
``benchmarks/search_space.yaml``, the space of the real search benchmark (test_vit on digits at 16 px,
16 cells of loss family × batch size, 4 epochs). That space, not the pretrained few-shot one, because
its runs cost 3-6 s each on one core here, so a table of 3,000 runs takes hours rather than days,
and because today's real benchmark rows were measured on it (the replay must reproduce them).

- **Pool.** ``POOL`` scrambled Sobol points over the space's parameters (τ, β, λ, lr; log scale for
  log-uniform ones), seed 0. In a cell a point keeps only its active parameters (CE: lr only), exactly
  as a warm start is carried (:func:`tune_schane.search.cell_sharing.carried`). Points are run in
  Sobol-prefix blocks (16, 32, 64), so a partial table is a balanced pool.
- **Runs.** Every (block point, cell, seed) with seeds 0, 1, 2: the config a real sweep builds
  (``space.trial_config``, seed = the trial seed), trained for the same optimiser steps with the same
  schedule, but reporting every ¼ epoch (``budget_unit: steps``, ``epochs`` = 4 reports per pass,
  warm-up counted in reports). The reports at whole epochs are the values an epoch-mode trial reports
  (same batches, same RNG; ``tests/benchmarks/test_replay.py`` checks it).
- **Record.** One JSON line per run in ``benchmarks/tables/bench-search.jsonl``: cell, pool index, seed,
  params, status, and per report the steps, val_top1 and elapsed seconds. Appended by one writer as runs
  end, so a killed generation resumes where it stopped (a cut last line is ignored); the first line
  holds the digest of what the numbers depend on, and a table of another space is refused.

    python -m benchmarks.replay.table [--points 64] [--jobs 2]
    python -m benchmarks.replay.table --export DIR   # Syne Tune's blackbox layout: configs + curves arrays
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACE = Path(__file__).parents[1] / "search_space.yaml"
TABLE = Path(__file__).parents[1] / "tables" / "bench-search.jsonl"
POOL = 64
BLOCKS = (16, 32, 64)  # Sobol prefixes run in order: each is a balanced pool on its own
SEEDS = (0, 1, 2)
REPORTS_PER_EPOCH = 4


def load_space():
    from tune_schane.space import load_space as load

    return load(SPACE)


def pool_points(space, n: int = POOL) -> list[dict]:
    """``n`` scrambled Sobol points (seed 0) over every searched parameter, in file order."""
    from scipy.stats import qmc

    specs = list(space.params.values())
    units = qmc.Sobol(d=len(specs), scramble=True, seed=0).random_base2(int(math.log2(n)))
    points = []
    for row in units:
        point = {}
        for spec, u in zip(specs, row, strict=True):
            if spec.kind == "loguniform":
                point[spec.name] = float(math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low))))
            elif spec.kind == "uniform":
                point[spec.name] = float(spec.low + u * (spec.high - spec.low))
            else:
                raise ValueError(f"{spec.name}: the pool covers uniform and loguniform parameters only")
        points.append(point)
    return points


def digest(space) -> str:
    """What the table's numbers depend on: the space's runs, the pool, the seeds, the report grid."""
    measured = (space.fixed, space.grid, {k: repr(v) for k, v in space.params.items()}, space.max_epochs,
                POOL, SEEDS, REPORTS_PER_EPOCH)
    return hashlib.sha1(repr(measured).encode()).hexdigest()[:12]


def cell_key(cell: dict) -> str:
    return f"{cell['loss']}@{cell['batch_size']}"


@dataclass(frozen=True)
class Run:
    cell: dict
    point: int
    seed: int
    params: dict  # the point's parameters active in the cell

    @property
    def key(self) -> tuple[str, int, int]:
        return cell_key(self.cell), self.point, self.seed


def planned_runs(space, points: int) -> list[Run]:
    """Every run of the first ``points`` pool points, block by block (then point, cell, seed)."""
    pool = pool_points(space)
    runs, start = [], 0
    for end in [b for b in BLOCKS if b <= points] or [points]:
        for point in range(start, end):
            for cell in space.cells():
                params = carried_params(space, pool[point], cell)
                runs.extend(Run(cell, point, seed, params) for seed in SEEDS)
        start = end
    return runs


def fine_config(space, run: Run, steps_per_epoch: int):
    """The real sweep's config for this run, reporting ``REPORTS_PER_EPOCH`` times per pass."""
    import dataclasses

    base = space.trial_config(run.params, run.cell, run.seed)
    return dataclasses.replace(base, budget_unit="steps", budget=base.epochs * steps_per_epoch,
                               epochs=base.epochs * REPORTS_PER_EPOCH,
                               warmup_epochs=base.warmup_epochs * REPORTS_PER_EPOCH)


_STEPS: dict[tuple, int] = {}


def train(space, run: Run) -> dict:
    """Train one run; its record (a JSON-ready dict)."""
    from tune_schane.finetune.train import TrialStopped
    from tune_schane.finetune.trial import Trial

    base = space.trial_config(run.params, run.cell, run.seed)
    key = (base.batch_size, base.seed)
    if key not in _STEPS:
        _STEPS[key] = Trial(base).steps_per_epoch
    trial = Trial(fine_config(space, run, _STEPS[key]))
    record = {"cell": cell_key(run.cell), "point": run.point, "seed": run.seed, "params": run.params,
              "status": "completed", "steps": [], "val_top1": [], "elapsed": []}
    try:
        for metrics in trial.run():
            record["steps"].append(int(metrics["steps"]))
            record["val_top1"].append(float(metrics["val_top1"]))
            record["elapsed"].append(round(float(metrics["elapsed_seconds"]), 3))
    except TrialStopped as stop:
        record["status"] = stop.status
    return record


def read(path: Path = TABLE) -> tuple[dict, list[dict]]:
    """(header, records) of a table file; a cut last line (a killed writer) is ignored."""
    if not path.exists():
        return {}, []
    lines = path.read_text().splitlines()
    header, records = {}, []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
        if "digest" in row:
            header = row
        else:
            records.append(row)
    return header, records


def _commit() -> str:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=SPACE.parent, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _torch_version() -> str:
    import torch

    return torch.__version__


def drop_cut_line(path: Path) -> None:
    """Remove a last line a killed writer left without its newline (the run is trained again)."""
    if path.exists() and path.read_bytes()[-1:] not in (b"", b"\n"):
        text = path.read_text()
        path.write_text(text[: text.rfind("\n") + 1])


def _worker(args) -> dict:
    space, run = args
    return train(space, run)


def generate(points: int, jobs: int, path: Path = TABLE) -> int:
    """Run what the table lacks of the first ``points`` pool points; return how many runs were added."""
    import multiprocessing

    space = load_space()
    header, records = read(path)
    want = digest(space)
    if header and header["digest"] != want:
        print(f"error: {path} was built for another space or pool (digest {header['digest']}, now {want})",
              file=sys.stderr)
        return -1
    done = {(r["cell"], r["point"], r["seed"]) for r in records}
    todo = [r for r in planned_runs(space, points) if r.key not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_cut_line(path)
    print(f"{len(done)} runs in {path}, {len(todo)} to go ({jobs} processes)", flush=True)
    start = time.perf_counter()
    with open(path, "a") as out:
        if not header:
            out.write(json.dumps({"digest": want, "space": SPACE.name, "pool": POOL, "seeds": list(SEEDS),
                                  "reports_per_epoch": REPORTS_PER_EPOCH, "code": _commit(),
                                  "torch": _torch_version(), "started": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, maxtasksperchild=200) as pool:
            for n, record in enumerate(pool.imap(_worker, [(space, r) for r in todo], chunksize=1), 1):
                out.write(json.dumps(record) + "\n")
                out.flush()
                os.fsync(out.fileno())
                if n % 48 == 0 or n == len(todo):
                    rate = n / (time.perf_counter() - start)
                    print(f"{n}/{len(todo)} runs, {rate * 60:.1f}/min", flush=True)
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=POOL, help="pool points to cover (a Sobol prefix)")
    parser.add_argument("--jobs", type=int, default=2, help="training processes (one CPU thread each)")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--export", type=Path, default=None,
                        help="write the complete part of the table in Syne Tune's blackbox layout here, then stop")
    args = parser.parse_args(argv)
    if args.export is not None:
        try:
            paths = export(Table(args.table), args.export)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(*paths, sep="\n")
        return 0
    added = generate(args.points, args.jobs, args.table)
    return 2 if added < 0 else 0



class Table:
    """The table as arrays: ``values[cell, point, seed, report]`` (val_top1), ``elapsed`` likewise.

    Only the largest complete Sobol block is used (every cell, point and seed of the prefix run), so a
    table still being generated replays a balanced pool. A run that diverged holds its reports up to the
    divergence and NaN after it (``status`` says so).
    """

    CHANCE = 10.0  # val_top1 of a guess on digits' 10 classes: a diverged seed's final value in a config's mean

    def __init__(self, path: Path = TABLE, points: int | None = None) -> None:
        header, records = read(path)
        self.space = load_space()
        if header.get("digest") != digest(self.space):
            raise ValueError(f"{path}: no table for {SPACE.name} (digest {header.get('digest')}, "
                             f"space {digest(self.space)}); build it with python -m benchmarks.replay.table")
        self.cells = [cell_key(c) for c in self.space.cells()]
        have: dict[tuple, dict] = {(r["cell"], r["point"], r["seed"]): r for r in records}
        complete = [b for b in BLOCKS if all((c, p, s) in have for c in self.cells for p in range(b) for s in SEEDS)]
        if not complete:
            raise ValueError(f"{path}: not even the first {BLOCKS[0]} pool points are complete "
                             f"({len(have)} runs); let python -m benchmarks.replay.table run on")
        self.n_points = min(points or complete[-1], complete[-1])
        self.pool = pool_points(self.space)[: self.n_points]
        self.reports = self.space.max_epochs * REPORTS_PER_EPOCH
        shape = (len(self.cells), self.n_points, len(SEEDS), self.reports)
        self.values, self.elapsed = np.full(shape, np.nan), np.full(shape, np.nan)
        self.steps = np.zeros(shape, dtype=int)
        for c, cell in enumerate(self.cells):
            for p in range(self.n_points):
                for s, seed in enumerate(SEEDS):
                    r = have[(cell, p, seed)]
                    n = len(r["val_top1"])
                    self.values[c, p, s, :n], self.elapsed[c, p, s, :n] = r["val_top1"], r["elapsed"]
                    self.steps[c, p, s, :n] = r["steps"]
        self.params = [[carried_params(self.space, point, cell) for point in self.pool]
                       for cell in self.space.cells()]

    def epoch_values(self) -> np.ndarray:
        """``[cell, point, seed, epoch]``: the value reported at the end of each whole epoch."""
        return at_epochs(self.values)

    def epoch_elapsed(self) -> np.ndarray:
        """``[cell, point, seed, epoch]``: seconds from the run's start to its report at each whole epoch."""
        return at_epochs(self.elapsed)

    def true_means(self) -> np.ndarray:
        """``[cell, point]``: a config's true value, the mean over seeds of its final val_top1 (chance if diverged)."""
        final = self.values[..., -1]
        return np.where(np.isnan(final), self.CHANCE, final).mean(axis=2)

    def truth(self) -> np.ndarray:
        """``[cell]``: the best true value in the cell's pool."""
        return self.true_means().max(axis=1)


def export(table: Table, folder: Path) -> tuple[Path, Path]:
    """The table in Syne Tune's blackbox layout: one configs table, one curves array per quantity.

    ``configs.parquet``: a row per (cell, pool point) with its cell's axes and active parameters (NaN where a
    parameter is inactive); ``curves.npz``: ``val_top1``, ``steps`` and ``elapsed`` shaped
    (config row, seed, report), and ``seeds`` and ``report_epochs`` (the fidelity of each report, in epochs).
    """
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for c, cell in enumerate(table.space.cells()):
        for p in range(table.n_points):
            rows.append({"cell": table.cells[c], **cell, "point": p, **table.params[c][p]})
    configs = folder / "configs.parquet"
    pd.DataFrame(rows).to_parquet(configs, index=False)
    n = len(rows)
    curves = folder / "curves.npz"
    np.savez_compressed(curves, val_top1=table.values.reshape(n, *table.values.shape[2:]),
                        steps=table.steps.reshape(n, *table.steps.shape[2:]),
                        elapsed=table.elapsed.reshape(n, *table.elapsed.shape[2:]), seeds=np.array(SEEDS),
                        report_epochs=np.arange(1, table.reports + 1) / REPORTS_PER_EPOCH)
    return configs, curves


def at_epochs(curves: np.ndarray) -> np.ndarray:
    """The reports of ``curves`` (last axis: every report) that end a whole epoch."""
    return curves[..., REPORTS_PER_EPOCH - 1:: REPORTS_PER_EPOCH]


def carried_params(space, point: dict, cell: dict) -> dict:
    from tune_schane.search.cell_sharing import carried

    return carried(space, point, cell)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
