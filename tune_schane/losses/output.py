"""What every loss returns: the scalar to back-propagate plus its parts, for logging."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LossOutput:
    """``loss`` is the scalar to back-propagate; the other fields are detached logging values.

    ``ce``/``contrastive`` are None when the loss has no such part; ``valid_anchors`` counts the
    anchors with at least one positive (the others are left out of the contrastive mean);
    ``pos_per_anchor``/``neg_per_anchor`` are means over all anchors.
    """

    loss: Tensor
    ce: Tensor | None = None
    contrastive: Tensor | None = None
    valid_anchors: Tensor | None = None
    pos_per_anchor: Tensor | None = None
    neg_per_anchor: Tensor | None = None
