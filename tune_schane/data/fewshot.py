"""Deterministic few-shot subsets: exactly ``shots`` training images per class, chosen by seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BadInput


def few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Sorted indices of ``shots`` images per class, drawn without replacement with ``seed``.

    A private generator (not the global RNG) makes the subset a function of (labels, shots, seed)
    only, so every trial with the same seed trains on the same images whatever ran before it.
    """
    if shots < 1:
        raise BadInput(f"shots: must be >= 1, got {shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < shots:
            raise BadInput(f"shots: class {cls} has only {len(members)} training images, fewer than {shots}")
        chosen.append(rng.choice(members, size=shots, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen))
