"""The loss family: SupCon, SCHaNe and their CE blend CLCE (DESIGN.md section 1).

All five families a sweep compares are one formula, ``(1 − λ)·CE + λ·SCHaNe(τ, β)``:
``ce`` (λ = 0), ``supcon`` (β = 0, λ = 1), ``schane`` (λ = 1), ``clce`` (0 < λ < 1) and its ablation
``supcon_ce`` (β = 0, 0 < λ < 1: SupCon + CE, no hardness weighting).
"""

from __future__ import annotations

from .clce import CLCELoss
from .functional import NonFiniteEmbeddings
from .output import LossOutput
from .schane import SCHaNeLoss
from .supcon import SupConLoss

__all__ = ["CLCELoss", "LossOutput", "NonFiniteEmbeddings", "SCHaNeLoss", "SupConLoss", "build_loss"]


def build_loss(
    family: str, tau: float | None, beta: float | None, lam: float | None, detach_weights: bool = False
) -> CLCELoss:
    """The family's loss as one :class:`CLCELoss` (so the training loop has a single call shape)."""
    if family == "ce":
        return CLCELoss(lam=0.0)
    if family == "supcon":
        return CLCELoss(tau, 0.0, 1.0)
    if family == "schane":
        return CLCELoss(tau, beta, 1.0, detach_weights)
    if family == "clce":
        return CLCELoss(tau, beta, lam, detach_weights)
    if family == "supcon_ce":
        return CLCELoss(tau, 0.0, lam)
    raise ValueError(f"unknown loss family {family!r}")
