"""SCHaNe: supervised contrastive loss with hard-negative weighting.

Long et al. 2023, arXiv:2308.14893, with the importance weights of HCL (Robinson et al. 2021,
arXiv:2010.04592). The paper publishes no code; the choices below are ours (DESIGN.md section 1):

- ``β`` scales the temperature-scaled logit ``s/τ`` (HCL's reference code does the same);
- weights are normalised to mean 1 over the anchor's *actual* negatives, so β = 0 is exactly
  SupCon and the loss scale does not drift with β;
- other positives stay in the denominator, unweighted (SupCon's ``A(i)``);
- weights are differentiable by default, as in HCL; ``detach_weights=True`` stops their gradient;
- anchors with no positive are left out of the mean; a batch with none gives a zero loss that
  still back-propagates (zero gradients, never NaN);
- no ``τ/base_τ`` rescaling; computed in float32 or wider, autocast off, in log space.

A negatives budget (:class:`~.negatives.NegativeBudget`: ``group`` or ``subsample``) restricts the
pairs each anchor sees; the formula is unchanged over the kept pairs (weights normalised over the
kept negatives), and with ``group`` the loss is the mean over groups of each group's mean. The
default (``all``) is the loss above, computed exactly as without a budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._functional import check_inputs, mean_over_groups, mean_over_valid, schane_per_anchor
from ._negatives import NegativeBudget
from .output import LossOutput


def check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


class SCHaNeLoss(nn.Module):
    """``SCHaNeLoss(temperature, beta, detach_weights=False, negatives=None)(embeddings [N, D], labels [N])``.

    Embeddings need not be normalised. Returns a :class:`LossOutput` with ``loss`` (the mean over
    anchors that have a positive; with ``group``, over groups), ``contrastive`` (the same value,
    detached) and anchor counts of the pairs the anchors actually saw. ``negatives``: a
    :class:`~.negatives.NegativeBudget` (None: every pair).
    """

    def __init__(self, temperature: float = 0.1, beta: float = 1.0, detach_weights: bool = False,
                 negatives: NegativeBudget | None = None) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.beta = check_beta(beta)
        self.detach_weights = bool(detach_weights)
        self.negatives = negatives if negatives is not None else NegativeBudget()

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, beta={self.beta}, detach_weights={self.detach_weights}, "
                f"negatives={self.negatives}")

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_inputs(embeddings, labels)
        keep, members = self.negatives.pairs(labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            per_anchor, valid, n_pos, n_neg = schane_per_anchor(
                embeddings, labels, self.temperature, self.beta, self.detach_weights, keep
            )
            if members is None:
                loss = mean_over_valid(per_anchor, valid)
            else:
                loss = mean_over_groups(per_anchor, valid, members)
        return LossOutput(
            loss=loss,
            contrastive=loss.detach(),
            valid_anchors=valid.sum().detach(),
            pos_per_anchor=n_pos.float().mean().detach(),
            neg_per_anchor=n_neg.float().mean().detach(),
        )
