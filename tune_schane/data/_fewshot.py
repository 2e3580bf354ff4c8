"""Deterministic subsets: few-shot training images (chosen by seed) and the fixed validation carve-out."""

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


def stratified_subset(labels: Sequence[int], size: int, seed: int = VAL_SUBSET_SEED, *, reserve: int = 0) -> list[int]:
    """Sorted indices of ``size`` items taken round-robin over the classes (each class shuffled by ``seed``).

    Used to carve the validation set out of the training pool: a fixed, class-balanced part of it (as
    balanced as the class counts allow). The seed is not the trial's, so trials differing only in
    seed are scored on the same images and their paired differences measure the seed, not the val
    sample. ``reserve`` items of every class are never taken (the carve-out leaves each class at
    least one training image); a class's first picks do not depend on ``reserve`` or ``size``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == cls)) for cls in np.unique(labels)]
    capacity = [max(len(queue) - reserve, 0) for queue in queues]
    if not 1 <= size <= sum(capacity):
        left = f" minus {reserve} per class kept for training" if reserve else ""
        raise BadInput(f"val_size: must be between 1 and {sum(capacity)} (the {len(labels)} images{left}), "
                       f"got {size}")
    taken = [0] * len(queues)
    remaining = size
    while remaining:  # one round takes an item from each class that has one left, in class order
        open_classes = [c for c in range(len(queues)) if taken[c] < capacity[c]][:remaining]
        for c in open_classes:
            taken[c] += 1
        remaining -= len(open_classes)
    return sorted(int(i) for queue, n in zip(queues, taken, strict=True) for i in queue[:n])
