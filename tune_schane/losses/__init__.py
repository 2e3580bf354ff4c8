"""The loss family: SupCon, SCHaNe and their CE blend CLCE (DESIGN.md section 1).

All five families a sweep compares are one formula, ``(1 − λ)·CE + λ·SCHaNe(τ, β)``:
``ce`` (λ = 0), ``supcon`` (β = 0, λ = 1), ``schane`` (λ = 1), ``clce`` (0 < λ < 1) and its ablation
``supcon_ce`` (β = 0, 0 < λ < 1: SupCon + CE, no hardness weighting).

The contrastive part takes a negatives budget (:mod:`._negatives`): ``all`` pairs of the batch (the
default), class-balanced groups of ``m`` images (``group``), or ``subsample`` ``m`` negatives per anchor.
"""

from __future__ import annotations

from ._functional import NonFiniteEmbeddings
from ._negatives import NEGATIVES, NegativeBudget
from ._schane import SCHaNeLoss
from ._supcon import SupConLoss
from .clce import CLCELoss
from .output import LossOutput

__all__ = [
    "NEGATIVES", "CLCELoss", "LossOutput", "NegativeBudget", "NonFiniteEmbeddings", "SCHaNeLoss", "SupConLoss",
    "build_loss",
]


def build_loss(
    family: str, tau: float | None, beta: float | None, lam: float | None, detach_weights: bool = False, *,
    negatives: str = "all", negatives_size: int | None = None, views: int = 1, seed: int = 0,
) -> CLCELoss:
    """The family's loss as one :class:`CLCELoss` (so the training loop has a single call shape).

    ``negatives``/``negatives_size``: the contrastive part's negatives budget (ignored by ``ce``);
    ``views``: rows per image (image-major rows), which ``group`` needs; ``seed``: with the step,
    seeds ``subsample``'s draw (a trial passes its order seed).
    """
    if family == "ce":
        return CLCELoss(lam=0.0)
    budget = NegativeBudget(negatives, negatives_size, views, seed)
    if family == "supcon":
        return CLCELoss(tau, 0.0, 1.0, negatives=budget)
    if family == "schane":
        return CLCELoss(tau, beta, 1.0, detach_weights, budget)
    if family == "clce":
        return CLCELoss(tau, beta, lam, detach_weights, budget)
    if family == "supcon_ce":
        return CLCELoss(tau, 0.0, lam, negatives=budget)
    raise ValueError(f"unknown loss family {family!r}")
