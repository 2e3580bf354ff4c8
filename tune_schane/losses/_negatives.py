"""The negatives budget: which pairs of the batch each anchor's contrastive term may see.

By default (``all``) every anchor contrasts with every other row of the batch, so the number of
negatives per anchor grows with the batch and a batch-size study cannot tell "more images per
step" from "more negatives per anchor". Two budgets hold the negatives apart from the batch:

- ``group`` (``size = m`` *images*): the batch of ``B`` images is split into ``B/m`` class-balanced
  groups of ``m`` images (``m·V`` rows with ``V`` views per image); each anchor sees positives and
  negatives only inside its group, and the contrastive loss is the mean over groups of the per-group
  loss (each a mean over its valid anchors; a group without one is left out, as such anchors are).
  Assignment is deterministic from the labels: images are stable-sorted by label and dealt
  round-robin, so each class spreads evenly over the groups and every data-parallel worker, which
  computes it on the gathered global batch, gets the same groups. ``m = B`` is the whole batch.
- ``subsample`` (``size = m`` *negatives*): each anchor keeps exactly ``m`` of its negatives, drawn
  uniformly without replacement, and all its positives. The draw comes from a private CPU
  ``torch.Generator`` seeded from ``(seed, step)`` (the trial's order seed and the training step,
  set by the loop through :meth:`NegativeBudget.set_step`), so data-parallel workers draw the same mask
  on the global batch and a rerun draws the same masks. An anchor with fewer than ``m`` negatives keeps
  all it has (the loss's ``neg_per_anchor`` reports the real mean). SCHaNe's hardness weights are
  normalised over the anchor's *kept* negatives. Cost: ``N²`` uniform numbers per step on the CPU
  (a device generator's stream may differ between GPU models, which data-parallel workers cannot afford).

Rows are image-major (``views.flatten(0, 1)``: the ``V`` views of one image are consecutive), which
``group`` needs to keep an image's views together; it checks that the labels agree with it.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

# The modes, also in tune_schane.finetune.config (which checks a config without importing torch);
# tests/losses/test_negatives.py pins the two equal.
NEGATIVES = ("all", "group", "subsample")


def class_balanced_groups(image_labels: Tensor, size: int) -> Tensor:
    """Group index ``[B]`` of each image, ``B / size`` groups of ``size`` images each.

    Images are stable-sorted by label and dealt round-robin, so group ``g`` holds sorted positions
    ``g, g + G, g + 2G, ...``: every class is spread as evenly as it can be, and the result depends
    only on the labels (not on the device or the process).
    """
    n_images = image_labels.shape[0]
    if size < 1 or n_images % size:
        raise ValueError(f"{n_images} images do not split into groups of {size}")
    n_groups = n_images // size
    order = torch.sort(image_labels, stable=True).indices
    groups = torch.empty_like(order)
    groups[order] = torch.arange(n_images, device=order.device) % n_groups
    return groups


def same_group_pairs(row_groups: Tensor) -> Tensor:
    """``keep [N, N]`` bool: anchor ``i`` may see row ``j`` when both lie in the same group."""
    return row_groups[:, None] == row_groups[None, :]


def subsample_pairs(labels: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """``keep [N, N]`` bool: every positive (and self) and ``min(size, |N(i)|)`` random negatives per anchor.

    Each pair gets a uniform score from ``generator`` (on the CPU, then moved to the labels' device);
    an anchor keeps the ``size`` negatives with the lowest scores, a uniform draw without replacement.
    """
    n = labels.shape[0]
    neg = labels[:, None] != labels[None, :]
    scores = torch.rand(n, n, generator=generator).to(labels.device)
    scores = scores.masked_fill(~neg, 2.0)  # non-negatives sort after every negative
    lowest = scores.topk(min(size, n), dim=1, largest=False).indices
    chosen = torch.zeros_like(neg).scatter_(1, lowest, True) & neg  # picks past |N(i)| fall on non-negatives
    return chosen | ~neg


def step_seed(seed: int, step: int) -> int:
    """A 63-bit generator seed for ``(seed, step)``, unrelated to the data-order seeds built from ``seed``."""
    digest = hashlib.blake2b(f"negatives:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class NegativeBudget:
    """``NegativeBudget(mode, size, views, seed)``: builds the pair mask for one batch (module docstring).

    ``mode`` is one of :data:`NEGATIVES`; ``size`` is ``m`` (images per group, or negatives per anchor;
    unused for ``all``); ``views`` the rows per image; ``seed`` and the current ``step`` seed the
    ``subsample`` draw.
    """

    def __init__(self, mode: str = "all", size: int | None = None, views: int = 1, seed: int = 0) -> None:
        if mode not in NEGATIVES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, got {mode!r}")
        if not (isinstance(views, int) and views >= 1):
            raise ValueError(f"views must be an integer >= 1, got {views!r}")
        minimum = {"all": None, "group": 2, "subsample": 1}[mode]
        if minimum is not None and not (isinstance(size, int) and size >= minimum):
            raise ValueError(f"negatives={mode!r} needs an integer size >= {minimum}, got {size!r}")
        self.mode, self.size, self.views, self.seed = mode, size if mode != "all" else None, views, int(seed)
        self.step = 0

    def __repr__(self) -> str:
        return f"NegativeBudget(mode={self.mode!r}, size={self.size}, views={self.views}, seed={self.seed})"

    def set_step(self, step: int) -> None:
        """The training step about to run: with the seed, it picks this step's ``subsample`` draw."""
        self.step = int(step)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(step_seed(self.seed, self.step))

    def pairs(self, labels: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(keep [N, N] bool or None, members [G, N] bool or None)`` for rows with ``labels: [N]``.

        ``keep`` is None for ``all`` (every pair); ``members`` (row ``j`` is in group ``g``) is set for
        ``group`` only, for the mean over groups.
        """
        if self.mode == "all":
            return None, None
        if self.mode == "subsample":
            return subsample_pairs(labels, self.size, self.generator()), None
        n, v = labels.shape[0], self.views
        if n % v or not bool((labels.reshape(-1, v) == labels[::v, None]).all()):
            raise ValueError(f"negatives='group' needs image-major rows ({v} consecutive views per image)")
        n_groups = n // (v * self.size)
        row_groups = class_balanced_groups(labels[::v], self.size).repeat_interleave(v)
        members = row_groups[None, :] == torch.arange(n_groups, device=labels.device)[:, None]
        return same_group_pairs(row_groups), members
