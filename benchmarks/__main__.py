"""``python -m benchmarks`` (``make bench``): every benchmark in one run, then one table of ratios.

Each ratio is measured against its reference in this same run, on this machine:

- loss:      SCHaNe(β=1) / pytorch-metric-learning SupConLoss, fwd+bwd time and peak memory (target ≤ 1)
- ray:       trial images/s under Ray Tune / the bare loop, same config (target ≥ 0.9)
- gradcache: cached step at batch 8c / plain step at c, peak memory (target ≤ 1.3); time / plain at 8c
- distributed: a two-worker (gloo) training step / one process on the same global batch, time (the gather's cost)

- search:    epochs of each search strategy / random + FIFO's for the same per-cell answers (benchmarks.search)

``--quick`` skips the search benchmark (about half an hour of real sweeps on 2 cores). The search
strategies are judged over 50 searcher seeds by the replay (``python -m benchmarks.replay``, two minutes;
its table of real learning curves is built by ``python -m benchmarks.replay.table``), not run here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks import distributed, gradcache, loss, search, sweep, trial
from benchmarks.common import machine_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the search benchmark (real sweeps)")
    args = parser.parse_args(argv)
    print(f"# tune-schane benchmarks — {machine_line()}\n")
    loss_rows = loss.run([512, 2048, 4096])
    loss.print_table(loss_rows)
    print()
    trial_rows = trial.run(list(trial.MODELS))
    trial.print_table(trial_rows)
    print()
    with tempfile.TemporaryDirectory() as tmp:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        ray_rows = sweep.throughput_rows(device, Path(tmp))
    sweep.print_table(ray_rows)
    search_rows = [] if args.quick else search.run_all(search.parse([]))
    print()
    cache_rows = gradcache.run()
    gradcache.print_table(cache_rows)
    print()
    ddp_rows = [distributed.measure()]
    distributed.print_table(ddp_rows)

    print("\n# summary: ratios measured in this run")
    print(f"{'benchmark':10} {'device':6} {'case':32} {'ratio':>8}  meaning")
    for r in loss_rows:
        print(f"{'loss':10} {r['device']:6} {'N=' + str(r['N']) + ' time':32} {r['time_ratio']:8.2f}  SCHaNe / PML")
        print(f"{'loss':10} {r['device']:6} {'N=' + str(r['N']) + ' peak memory':32} {r['mem_ratio']:8.2f}  "
              "SCHaNe / PML")
    for r in ray_rows:
        print(f"{'ray':10} {r['device']:6} {r['model']:32} {r['ratio']:8.2f}  Ray Tune / bare loop images/s")
    for r in cache_rows:
        case = f"{r['model']}@{r['img']} c={r['chunk']} B={r['batch']}"
        print(f"{'gradcache':10} {r['device']:6} {case:32} {r['mem_ratio']:8.2f}  memory cached(B) / plain(c)")
        print(f"{'gradcache':10} {r['device']:6} {case:32} {r['time_ratio']:8.2f}  time cached(B) / plain(B)")
    for r in ddp_rows:
        case = f"{r['model']}@{r['img']} B={r['batch']} W={r['workers']}"
        print(f"{'ddp':10} {'cpu':6} {case:32} {r['ratio']:8.2f}  time W gloo workers / 1 process (W threads)")
    for r in search.summary(search_rows):
        print(f"{'search':10} {'cpu':6} {r['strategy'] + ' epochs':32} {r['ratio']:8.2f}  / random+FIFO's, "
              f"mean per-cell gap {r['mean_gap']:.2f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
