"""Ray Tune's cost and ASHA+TPE's worth, measured in one run.

(a) Throughput: the same trial config (``benchmarks.trial``) in the bare loop and as a one-trial
    Ray Tune sweep that reports and checkpoints every epoch; ratio Ray / bare (target ≥ 0.9).
(b) Search: the default space with its ASHA + TPE against random search with FIFO at the same
    number of samples: best objective reached and total epochs spent by each (target: within 1
    accuracy point of random-FIFO's best with ≤ 1/3 of its epochs).

    python -m benchmarks.sweep [--skip-search] [--samples N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import yaml

from benchmarks.common import machine_line
from benchmarks.trial import bare_images_per_s, bench_config


def _space_for(config, path: Path):
    from tune_schane.space import load_space

    fixed = {k: v for k, v in config.to_dict().items() if k not in ("epochs", "seed")}
    path.write_text(yaml.safe_dump({
        "name": "bench", "fixed": fixed, "params": {"seed": {"choice": [config.seed]}},
        "objective": {"metric": "val_top1", "mode": "max"}, "searcher": {"type": "random", "seed": 0},
        "scheduler": {"type": "fifo", "max_epochs": config.epochs}, "num_samples": 1, "max_concurrent": 1,
        "resources": {"cpu": config.num_threads or 1, "gpu": 1 if config.device.startswith("cuda") else 0}}))
    return load_space(path)


def ray_images_per_s(config, workdir: Path) -> float:
    from tune_schane import ray_tune

    space = _space_for(config, workdir / "bench.yaml")
    ray_tune.init_ray(None)
    try:
        results, _ = ray_tune.run_sweep(space, sweep_id="bench-throughput", store_uri=str(workdir / "store"),
                                        storage_path=str(workdir / "ray"), verbose=0)
    finally:
        ray_tune.shutdown()
    return float(results[0].metrics["images_per_s"])


def throughput_rows(device: str, workdir: Path) -> list[dict]:
    rows = []
    for size in ("tiny", "small"):
        config = bench_config(size, device)
        bare = bare_images_per_s(config)
        ray = ray_images_per_s(config, workdir)
        rows.append({"device": device, "model": f"{config.model}@{config.img_size}px", "bare": bare, "ray": ray,
                     "ratio": ray / bare})
    return rows


def search_rows(samples: int | None, workdir: Path) -> list[dict]:
    from tune_schane import ray_tune
    from tune_schane.space import default_space_path, load_space
    from tune_schane.store import TrialStore

    base = load_space(default_space_path())
    if samples:
        base = dataclasses.replace(base, num_samples=samples)
    variants = {"asha+tpe": base,
                "fifo+random": dataclasses.replace(base, searcher="random", scheduler="fifo")}
    rows = []
    for name, space in variants.items():
        store = str(workdir / f"store-{name}")
        ray_tune.init_ray(None)
        try:
            ray_tune.run_sweep(space, sweep_id=name.replace("+", "-"), store_uri=store,
                               storage_path=str(workdir / "ray"), verbose=0)
        finally:
            ray_tune.shutdown()
        trials = TrialStore(store).load_trials()
        completed = trials[trials["status"] == "completed"]
        rows.append({"search": name, "trials": len(trials), "best": float(completed["best_objective"].max()),
                     "epochs": int(trials["epochs_run"].sum())})
    return rows


def print_tables(throughput: list[dict], search: list[dict]) -> None:
    print(f"# sweep benchmark — {machine_line()}")
    print(f"{'device':6} {'model':28} {'bare img/s':>10} {'ray img/s':>9} {'ray/bare':>8}")
    for r in throughput:
        print(f"{r['device']:6} {r['model']:28} {r['bare']:10.1f} {r['ray']:9.1f} {r['ratio']:8.2f}")
    if search:
        print(f"{'search':12} {'trials':>6} {'best val_top1':>13} {'epochs':>6}")
        for r in search:
            print(f"{r['search']:12} {r['trials']:6d} {r['best']:13.2f} {r['epochs']:6d}")
        asha, fifo = search
        print(f"asha+tpe vs fifo+random: best {asha['best'] - fifo['best']:+.2f} points with "
              f"{asha['epochs'] / fifo['epochs']:.2f}× the epochs")


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-search", action="store_true", help="only the throughput part")
    parser.add_argument("--samples", type=int, default=None, help="samples per search (default: the space's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        throughput = throughput_rows("cuda" if torch.cuda.is_available() else "cpu", workdir)
        search = [] if args.skip_search else search_rows(args.samples, workdir)
    print_tables(throughput, search)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
