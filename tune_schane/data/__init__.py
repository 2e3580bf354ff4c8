"""Data of a trial: the embedded default, torchvision sets from a local root, ImageFolder; few-shot; views.

Every dataset comes back as a :class:`DataBundle`: a training set whose items are
``(views [V, 3, H, W], label)`` (V augmented views of one image, for the contrastive loss) and a
validation set of ``(image [3, H, W], label)`` (one deterministic view) carved out of the training
pool, normalised with the model's own mean/std at the model's input size. The test split is sealed:
read only with ``include_test=True`` (:mod:`._bundle` describes the three roles). Augmentation
randomness comes from torch's global RNG, which the trial seeds per epoch (from its ``order_seed``),
so runs reproduce and a resumed run continues exactly.
"""

from __future__ import annotations

from ._bundle import DATASETS, DataBundle, build_data
from ._fewshot import few_shot_indices

__all__ = ["DATASETS", "DataBundle", "build_data", "few_shot_indices"]
