"""Small datasets written in their on-disk formats (the real readers parse them)."""

from __future__ import annotations

import pickle

import numpy as np


def write_cifar10(root, n_per_batch=20):
    """CIFAR-10's python format: pickled dicts of uint8 rows [N, 3072] (R, G, B planes) and labels.

    Returns (train labels in file order, test labels). The md5 sums differ from the official files.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(x) for x in rng.integers(0, 10, n_per_batch)]
        rows = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rows, "labels": labels}, fh)
        written.append(labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return [y for labels in written[:5] for y in labels], written[5]
