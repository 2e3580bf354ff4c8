"""Trial throughput on a GPU with real model sizes (run where CUDA is present).

    python -m benchmarks.gpu_data /tmp/c10 && python -m benchmarks.gpu_trial /tmp/c10

ViT-S/16 at 224 px on CIFAR-10-format data, each loss family's step (CLCE shown), bf16 autocast on
and off, and the gradient-cached step at a batch 4x the chunk. Images/s of the last epoch.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import machine_line
from tune_schane.finetune.config import TrialConfig
from tune_schane.finetune.trial import Trial

CASES = [  # (label, overrides)
    ("vit_s16@224 ce b128 bf16", {"loss": "ce", "batch_size": 128}),
    ("vit_s16@224 clce b128 bf16", {"batch_size": 128}),
    ("vit_s16@224 clce b128 fp32", {"batch_size": 128, "amp": False}),
    ("vit_s16@224 clce b512 bf16", {"batch_size": 512}),
    ("vit_s16@224 clce b512 chunk128 bf16", {"batch_size": 512, "contrastive_chunk": 128}),
]


def main(argv: list[str] | None = None) -> int:
    root = (argv or sys.argv[1:])[0]
    print(f"# GPU trial throughput (2 views, 10k images/epoch) — {machine_line()}")
    print(f"{'case':40} {'images/s':>9} {'peak MiB':>9}")
    for label, overrides in CASES:
        base = {"model": "vit_small_patch16_224", "img_size": 224, "dataset": "cifar10", "data_root": root,
                "loss": "clce", "tau": 0.1, "beta": 1.0, "lam": 0.5, "epochs": 2, "device": "cuda", "num_workers": 12}
        config = TrialConfig(**{**base, **overrides})
        trial = Trial(config)
        last = list(trial.run())[-1]
        print(f"{label:40} {last['images_per_s']:9.1f} {last['peak_mem_mb']:9.0f}", flush=True)
        del trial
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
