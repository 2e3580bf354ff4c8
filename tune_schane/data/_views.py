"""Dataset wrappers: a subset, and V augmented views of each image for the contrastive loss.

Classes rather than closures so that a bundle pickles (Ray ships trials to worker processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset


class Subset(Dataset):
    """The items of ``base`` at ``indices``, in that order (the few-shot training subset)."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.indices[i]]


class MultiView(Dataset):
    """``(image, label)`` -> ``(stack of V transformed views [V, 3, H, W], label)``."""

    def __init__(self, base: Dataset, transform: Callable, views: int) -> None:
        self.base, self.transform, self.views = base, transform, views

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        return torch.stack([self.transform(image) for _ in range(self.views)]), int(label)


class Transformed(Dataset):
    """``(image, label)`` -> ``(transform(image), label)``: the validation view."""

    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        return self.transform(image), int(label)
