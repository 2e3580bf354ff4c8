"""Ray Tune's cost: the same trial config (``benchmarks.trial``) in the bare loop and as a one-trial
Ray Tune sweep that reports and checkpoints every epoch; ratio Ray / bare (target ≥ 0.9).

What the search strategies cost and reach: ``benchmarks.search``.

    python -m benchmarks.sweep
"""

from __future__ import annotations

import argparse
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


def print_table(throughput: list[dict]) -> None:
    print(f"# sweep benchmark — {machine_line()}")
    print(f"{'device':6} {'model':28} {'bare img/s':>10} {'ray img/s':>9} {'ray/bare':>8}")
    for r in throughput:
        print(f"{r['device']:6} {r['model']:28} {r['bare']:10.1f} {r['ray']:9.1f} {r['ratio']:8.2f}")


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        throughput = throughput_rows("cuda" if torch.cuda.is_available() else "cpu", Path(tmp))
    print_table(throughput)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
