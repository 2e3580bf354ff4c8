"""SupCon, the supervised contrastive loss (Khosla et al. 2020, arXiv:2004.11362), ``L_out`` form.

Choices the reference code makes and we do not: no hidden ``τ / base_τ`` rescaling of the loss
(SupContrast multiplies by ``τ / 0.07``); anchors without a positive are left out of the mean
rather than contributing 0 (``LossOutput.valid_anchors`` says how many counted).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._negatives import NegativeBudget
from ._schane import SCHaNeLoss


class SupConLoss(nn.Module):
    """``SupConLoss(temperature, negatives=None)(embeddings [N, D], labels [N]) -> LossOutput``.

    SupCon is SCHaNe with β = 0 (all hardness weights exactly 1); this module holds a SCHaNe loss
    at β = 0 rather than repeating the formula (``negatives``: a negatives budget, as for SCHaNe).
    """

    def __init__(self, temperature: float = 0.1, negatives: NegativeBudget | None = None) -> None:
        super().__init__()
        self.schane = SCHaNeLoss(temperature, beta=0.0, negatives=negatives)
        self.temperature = self.schane.temperature

    def forward(self, embeddings: Tensor, labels: Tensor):
        return self.schane(embeddings, labels)
