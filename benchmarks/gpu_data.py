"""A synthetic CIFAR-10-format data set on disk, for throughput runs on machines without scikit-learn.

``python -m benchmarks.gpu_data ROOT`` writes ``ROOT/cifar-10-batches-py`` (random pixels, 10
classes) in CIFAR-10's own pickle format, which ``dataset: cifar10, data_root: ROOT`` then reads.
Throughput does not depend on pixel content; accuracy numbers from it mean nothing.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np


def write(root: str | Path, per_batch: int = 2000) -> Path:
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                "labels": [int(x) for x in rng.integers(0, 10, per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(data, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return folder


if __name__ == "__main__":
    print(write(sys.argv[1]))
