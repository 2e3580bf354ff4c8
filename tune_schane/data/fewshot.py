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


VAL_SUBSET_SEED = 0  # fixed: every trial of every sweep is scored on the same images


def stratified_subset(labels: Sequence[int], size: int, seed: int = VAL_SUBSET_SEED) -> list[int]:
    """Sorted indices of ``size`` items taken round-robin over the classes (each class shuffled by ``seed``).

    Used for ``val_size``: a fixed, class-balanced part of a large validation split (as balanced as
    the class counts allow). The seed is not the trial's, so trials differing only in seed are
    scored on the same images and their paired differences measure the seed, not the val sample.
    """
    labels = np.asarray(labels)
    if not 1 <= size <= len(labels):
        raise BadInput(f"val_size: must be between 1 and the validation set's {len(labels)} images, got {size}")
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == cls))) for cls in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < size:
        for queue in queues:
            if queue and len(chosen) < size:
                chosen.append(int(queue.pop(0)))
    return sorted(chosen)
