"""CLCE: cross-entropy blended with SCHaNe (Long et al. 2024, arXiv:2402.14551).

``L = (1 − λ)·CE(logits, y) + λ·L_SCHaNe``, ``λ ∈ [0, 1]``; CE applies to the classifier logits of
every view. Like timm's ``JsdCrossEntropy`` this module *holds* its parts instead of inheriting.

Choices: at ``λ = 0`` the contrastive part is not computed at all (plain CE fine-tuning; its
temperature is then unused). At ``λ = 1`` CE has no weight in ``loss``; it is still reported so the
training loop can train the classifier on detached features and accuracy stays measurable
(DESIGN.md section 1); that is the loop's job, not the loss's.

A negatives budget (:mod:`._negatives`) applies to the contrastive part only; CE always runs over
every row of the batch. The loop tells the loss which step it is (:meth:`CLCELoss.set_step`) so that
``subsample`` draws a fresh, reproducible mask each step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._functional import check_inputs, compute_dtype
from ._negatives import NegativeBudget
from ._schane import SCHaNeLoss
from .output import LossOutput


def check_lam(lam: float) -> float:
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    return float(lam)


class CLCELoss(nn.Module):
    """``CLCELoss(temperature, beta, lam, detach_weights=False, negatives=None)``.

    Called as ``loss_fn(logits [N, C], embeddings [N, D], labels [N]) -> LossOutput``.
    ``negatives``: a :class:`~.negatives.NegativeBudget` for the contrastive part (None: every pair).
    """

    def __init__(
        self, temperature: float = 0.1, beta: float = 1.0, lam: float = 0.5, detach_weights: bool = False,
        negatives: NegativeBudget | None = None,
    ) -> None:
        super().__init__()
        self.lam = check_lam(lam)
        self.ce = nn.CrossEntropyLoss()
        # At λ = 0 the contrastive term is never computed, so its hyperparameters are not needed.
        self.contrastive = (
            SCHaNeLoss(temperature, beta, detach_weights, negatives) if self.lam > 0 else None
        )

    def extra_repr(self) -> str:
        return f"lam={self.lam}"

    def set_step(self, step: int) -> None:
        """The training step about to run (seeds a ``subsample`` budget's draw; nothing else uses it)."""
        if self.contrastive is not None:
            self.contrastive.negatives.set_step(step)

    def forward(self, logits: Tensor, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_inputs(embeddings, labels, logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            ce = self.ce(logits.to(compute_dtype(logits)), labels)
        if self.contrastive is None:
            return LossOutput(loss=ce, ce=ce.detach())
        con = self.contrastive(embeddings, labels)
        loss = (1.0 - self.lam) * ce + self.lam * con.loss
        con.loss, con.ce = loss, ce.detach()
        return con

    def classifier_ce(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The CE that trains the classifier on detached features at λ = 1 (added by the training step).

        A method of the loss so that a data-parallel wrapper can compute it on the global batch.
        """
        return cross_entropy(logits, labels)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Float32 cross-entropy outside autocast (used by evaluation)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.to(compute_dtype(logits)), labels)
