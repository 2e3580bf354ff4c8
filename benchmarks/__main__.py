"""``python -m benchmarks`` (``make bench``): every benchmark in one run, then one table of ratios.

Each ratio is measured against its reference in this same run, on this machine:

- loss:      SCHaNe(β=1) / pytorch-metric-learning SupConLoss, fwd+bwd time and peak memory (target ≤ 1)
- ray:       trial images/s under Ray Tune / the bare loop, same config (target ≥ 0.9)
- gradcache: cached step at batch 8c / plain step at c, peak memory (target ≤ 1.3); time / plain at 8c
- distributed: a two-worker (gloo) training step / one process on the same global batch, time (the gather's cost)

``--quick`` skips the sweep search comparison (ASHA+TPE vs random+FIFO), which runs two sweeps.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks import distributed, gradcache, loss, sweep, trial
from benchmarks.common import machine_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the two-sweep search comparison")
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
        search_rows = [] if args.quick else sweep.search_rows(None, Path(tmp))
    sweep.print_tables(ray_rows, search_rows)
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
    if len(search_rows) == 2:
        asha, fifo = search_rows
        print(f"{'search':10} {'':6} {'epochs ASHA+TPE / random+FIFO':32} {asha['epochs'] / fifo['epochs']:8.2f}  "
              f"best {asha['best']:.2f} vs {fifo['best']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
