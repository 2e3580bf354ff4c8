"""Pure functions behind the contrastive losses: a masked logsumexp, hardness weights, the loss.

Notation follows DESIGN.md section 1: ``N`` embeddings ``z_1..z_N`` with labels ``y``, logits
``l_ij = z_i·z_j / τ``, ``A(i) = {j ≠ i}``, positives ``P(i)`` (same label, not self) and negatives
``N(i)`` (other label).

SupCon (Khosla et al. 2020, arXiv:2004.11362, the ``L_out`` form) and SCHaNe (Long et al. 2023,
arXiv:2308.14893, with the importance weights of Robinson et al. 2021, arXiv:2010.04592) are the
same computation: SCHaNe adds ``log w_ik`` to every negative logit inside the denominator, and with
``β = 0`` those log-weights are exactly zero, so the code skips them and β = 0 *is* SupCon.

Everything runs in float32 or wider (float64 stays float64 so ``gradcheck`` works) with autocast
off, in log space, so τ down to 0.01 with bf16/fp16 embeddings stays finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class NonFiniteEmbeddings(ValueError):
    """The embeddings hold NaN or inf: the model diverged upstream of the loss."""


def check_inputs(embeddings: Tensor, labels: Tensor, logits: Tensor | None = None) -> None:
    """Raise ``ValueError`` naming the problem for shapes or values the losses cannot handle."""
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D [N, D], got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels ({labels.shape[0]}) do not match embeddings ({embeddings.shape[0]})"
        )
    if embeddings.shape[0] < 2:
        raise ValueError(f"a contrastive loss needs at least 2 embeddings, got {embeddings.shape[0]}")
    if logits is not None and (logits.dim() != 2 or logits.shape[0] != labels.shape[0]):
        raise ValueError(f"logits must be [N={labels.shape[0]}, C], got shape {tuple(logits.shape)}")
    if not torch.isfinite(embeddings).all():
        raise NonFiniteEmbeddings("embeddings contain NaN or inf")


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, the input's own dtype when it is wider."""
    return torch.promote_types(x.dtype, torch.float32)


def masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise ``log Σ_{j: mask_ij} exp(x_ij)`` for ``x: [N, M]``, ``mask: [N, M]`` bool -> ``[N]``.

    Subtracts the detached maximum over the kept entries. Masked entries are set to -inf *before*
    the subtraction and the exp, so a huge masked value (the self-similarity at small τ) can
    neither overflow nor leak a NaN gradient. A row with no kept entry returns ``log(tiny)``, a
    large finite negative number, with zero gradient.
    """
    xm = x.masked_fill(~mask, float("-inf"))
    row_max = xm.amax(dim=1, keepdim=True).detach()
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    total = (xm - row_max).exp().sum(dim=1)
    return total.clamp_min(torch.finfo(x.dtype).tiny).log() + row_max.squeeze(1)


def hardness_log_weights(logits: Tensor, neg: Tensor, beta: float) -> Tensor:
    """Per-anchor offset ``c_i`` of the HCL log-weights on negatives, ``[N]``.

    ``w_ik = |N(i)| · exp(β l_ik) / Σ_{k'∈N(i)} exp(β l_ik')``, so ``log w_ik = β l_ik + c_i`` with
    ``c_i = log|N(i)| − logsumexp_{k∈N(i)} β l_ik``. β scales the temperature-scaled logit (HCL's
    convention) and the weights average to 1 over the anchor's actual negatives (those it sees, under
    a negatives budget), so the loss scale does not drift with β. ``neg: [N, N]`` bool marks each
    anchor's negatives; an anchor with no negative gets a finite, unused offset.
    """
    n_neg = neg.sum(dim=1).clamp_min(1).to(logits.dtype)
    return n_neg.log() - masked_logsumexp(beta * logits, neg)


def schane_per_anchor(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float,
    beta: float = 0.0,
    detach_weights: bool = False,
    keep: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-anchor SCHaNe loss (SupCon when ``beta == 0``).

    ``embeddings: [N, D]`` (normalised here), ``labels: [N]``. Returns ``(loss [N], valid [N] bool,
    n_pos [N], n_neg [N])``; ``loss`` is meaningless where ``valid`` is False (no positive).

    ``L_i = log D_i − mean_{p∈P(i)} l_ip`` where ``log D_i`` is the logsumexp over ``A(i)`` of
    ``l_ia + log w_ia`` (``log w = 0`` on positives, ``β l_ik + c_i`` on negatives): the log of the
    SCHaNe denominator. This is ``-1/|P| Σ_p log(exp(l_ip)/D_i)`` rearranged so that no ``[N, N]``
    log-probability and no positive mask is materialised (positives = same label minus self).

    ``keep: [N, N]`` bool (a negatives budget, :mod:`._negatives`) restricts every anchor to the pairs
    it may see: ``P(i)``, ``N(i)``, the hardness weights' normalisation and the reported counts then
    run over kept pairs only (self is excluded whatever ``keep`` says). None: every pair.
    """
    dtype = compute_dtype(embeddings)
    z = F.normalize(embeddings.to(dtype), dim=1)
    logits = (z / temperature) @ z.T  # folding 1/τ into z saves a pass over [N, N]
    same = labels[:, None] == labels[None, :]  # self included
    neg = ~same
    if keep is not None:
        same = same & keep
        same.diagonal().fill_(True)  # self stays in `same` so that the subtractions below hold
        neg = neg & keep
    n_same = same.sum(dim=1)
    n_pos, n_neg = n_same - 1, neg.sum(dim=1)
    pos_sum = torch.where(same, logits, 0.0).sum(dim=1) - logits.diagonal()
    if beta > 0:
        offset = hardness_log_weights(logits, neg, beta)
        log_w = beta * logits + offset[:, None]
        weighted = logits + (log_w.detach() if detach_weights else log_w)
        den_logits = torch.where(same, logits, weighted)
    else:
        den_logits = logits.clone()
    if keep is not None:
        den_logits = den_logits.masked_fill(~(same | neg), float("-inf"))
    # A(i) excludes self; every row keeps at least one entry (N >= 2; a budget keeps a positive or a negative)
    den_logits.diagonal().fill_(float("-inf"))
    log_den = torch.logsumexp(den_logits, dim=1)
    per_anchor = log_den - pos_sum / n_pos.clamp_min(1).to(dtype)
    return per_anchor, n_pos > 0, n_pos, n_neg


def mean_over_valid(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid anchors; 0 (still attached to the graph) when there is none. No host sync."""
    count = valid.sum().clamp_min(1).to(per_anchor.dtype)
    return torch.where(valid, per_anchor, 0.0).sum() / count


def mean_over_groups(per_anchor: Tensor, valid: Tensor, members: Tensor) -> Tensor:
    """Mean over groups of each group's mean over its valid anchors; ``members: [G, N]`` bool.

    A group without a valid anchor is left out, as such anchors are; 0 (still attached to the graph)
    when no group has one. With a single group this is :func:`mean_over_valid`. No host sync.
    """
    member = members & valid
    count = member.sum(dim=1)
    group_loss = torch.where(member, per_anchor, 0.0).sum(dim=1) / count.clamp_min(1).to(per_anchor.dtype)
    has = count > 0
    return torch.where(has, group_loss, 0.0).sum() / has.sum().clamp_min(1).to(per_anchor.dtype)
