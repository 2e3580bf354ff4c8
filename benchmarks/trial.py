"""Images/s of the bare training loop (no Ray) for a tiny and a small timm model.

The loop is :class:`tune_schane.finetune.trial.Trial` exactly as a sweep runs it (two views, CLCE loss,
AdamW, data on the embedded digits). Throughput is the training images/s of the last epoch (the
first pays for lazy initialisation). ``benchmarks.sweep`` measures the same configs under Ray Tune.

    python -m benchmarks.trial
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import devices, machine_line
from tune_schane.finetune.config import TrialConfig

MODELS = {  # name -> (timm model, input size)
    "tiny": ("test_vit", 32),
    "small": ("vit_tiny_patch16_224", 64),
}


def bench_config(size: str, device: str, epochs: int = 2, batch_size: int = 64) -> TrialConfig:
    model, img_size = MODELS[size]
    threads = torch.get_num_threads() if device == "cpu" else None
    return TrialConfig(model=model, img_size=img_size, dataset="digits", loss="clce", tau=0.1, beta=1.0, lam=0.5,
                       epochs=epochs, batch_size=batch_size, device=device, num_threads=threads,
                       shots=60 if device == "cpu" else None)


def bare_images_per_s(config: TrialConfig) -> float:
    from tune_schane.finetune.trial import Trial

    history = list(Trial(config).run())
    return history[-1]["images_per_s"]


def run(sizes: list[str]) -> list[dict]:
    rows = []
    for device in devices():
        for size in sizes:
            config = bench_config(size, device.type)
            rows.append({"device": device.type, "model": f"{config.model}@{config.img_size}px",
                         "batch": config.batch_size, "images_per_s": bare_images_per_s(config)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"# trial benchmark: bare loop images/s (2 views, CLCE) — {machine_line()}")
    print(f"{'device':6} {'model':28} {'batch':>5} {'images/s':>9}")
    for r in rows:
        print(f"{r['device']:6} {r['model']:28} {r['batch']:5d} {r['images_per_s']:9.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    print_table(run(args.sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
