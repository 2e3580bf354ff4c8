"""Naive float64 references written straight from the formulas in DESIGN.md section 1.

Deliberately slow and literal: Python loops over anchors, positives and negatives, scalar torch ops
in float64 (so autograd gives reference gradients too). No masks, no logsumexp, no shared code
with the implementation under test.
"""

from __future__ import annotations

import torch


def naive_anchor_losses(z: torch.Tensor, labels: list[int], tau: float, beta: float, detach_weights: bool = False,
                        sees=None) -> list[torch.Tensor]:
    """SCHaNe's loss of every anchor that has a positive (SupCon when beta == 0), in anchor order.

    ``sees(i, j)``: whether anchor i may look at row j (a negatives budget); None: every row.
    """
    z = z.double()
    z = z / z.norm(dim=1, keepdim=True)
    n = len(labels)
    sees = sees or (lambda i, j: True)

    def s(i: int, j: int) -> torch.Tensor:
        return (z[i] * z[j]).sum()

    losses = []
    for i in range(n):
        positives = [j for j in range(n) if j != i and labels[j] == labels[i] and sees(i, j)]
        negatives = [k for k in range(n) if labels[k] != labels[i] and sees(i, k)]
        if not positives:
            continue
        weights = {}
        if negatives:
            norm = sum(torch.exp(beta * s(i, k) / tau) for k in negatives)
            for k in negatives:
                w = len(negatives) * torch.exp(beta * s(i, k) / tau) / norm
                weights[k] = w.detach() if detach_weights else w
        denominator = sum(torch.exp(s(i, p) / tau) for p in positives)
        denominator = denominator + sum(weights[k] * torch.exp(s(i, k) / tau) for k in negatives)
        terms = [torch.log(torch.exp(s(i, p) / tau) / denominator) for p in positives]
        losses.append(-sum(terms) / len(positives))
    return losses


def naive_schane(z: torch.Tensor, labels: list[int], tau: float, beta: float, detach_weights: bool = False,
                 sees=None):
    """SCHaNe (SupCon when beta == 0); mean over anchors with a positive; 0.0 when none."""
    losses = naive_anchor_losses(z, labels, tau, beta, detach_weights, sees)
    if not losses:
        return torch.zeros((), dtype=torch.float64)
    return sum(losses) / len(losses)


def naive_grouped_schane(z: torch.Tensor, labels: list[int], tau: float, beta: float, groups: list[list[int]],
                         detach_weights: bool = False):
    """The ``group`` budget: each group's rows alone form a batch; mean over the groups with a valid anchor."""
    per_group = []
    for rows in groups:
        losses = naive_anchor_losses(z[rows], [labels[r] for r in rows], tau, beta, detach_weights)
        if losses:
            per_group.append(sum(losses) / len(losses))
    if not per_group:
        return torch.zeros((), dtype=torch.float64)
    return sum(per_group) / len(per_group)


def naive_ce(logits: torch.Tensor, labels: list[int]):
    logits = logits.double()
    total = 0.0
    for i, y in enumerate(labels):
        total = total - torch.log(torch.exp(logits[i, y]) / torch.exp(logits[i]).sum())
    return total / len(labels)


def naive_clce(logits, z, labels, tau, beta, lam, detach_weights=False):
    if lam == 0:
        return naive_ce(logits, labels)
    return (1 - lam) * naive_ce(logits, labels) + lam * naive_schane(z, labels, tau, beta, detach_weights)
