"""Optimiser, learning-rate rule and schedule of a trial (DESIGN.md section 2).

The learning rate scales with batch size by a recorded rule so that a batch-size study measures
batch size, not an accidental change of learning rate::

    none:    lr
    linear:  lr * B / B_ref            (Goyal et al. 2017)
    sqrt:    lr * sqrt(B / B_ref)      (the usual choice for Adam-type optimisers)

The schedule is stepped once per optimiser step: linear warm-up from 0 over ``warmup_epochs``, then
cosine decay to 0 at the last step. Biases, norm weights and ViT tokens/position embeddings get no
weight decay. With ``layer_decay`` (ViT/BEiT fine-tuning, e.g. 0.65) the backbone's layer ``l`` of
``L`` trains at ``lr * layer_decay ** (L - l)`` (timm's grouping); the new heads train at full ``lr``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import BadInput


def scaled_lr(lr: float, batch_size: int, rule: str, ref_batch: int = 256) -> float:
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * batch_size / ref_batch
    if rule == "sqrt":
        return lr * math.sqrt(batch_size / ref_batch)
    raise BadInput(f"lr_rule: unknown rule {rule!r} (none, linear, sqrt)")


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None) -> list[dict]:
    """Parameter groups with per-group ``lr`` (layer decay folded in) and weight decay."""
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    backbone = getattr(model, "backbone", model)
    heads = [p for name, p in model.named_parameters() if not name.startswith("backbone.") and p.requires_grad]
    skip = backbone.no_weight_decay() if hasattr(backbone, "no_weight_decay") else set()
    if layer_decay is not None:
        if not hasattr(backbone, "group_matcher"):
            raise BadInput(f"layer_decay: {type(backbone).__name__} has no layer grouping; use a ViT/BEiT-type model")
        groups = param_groups_layer_decay(backbone, weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay)
    else:
        groups = param_groups_weight_decay(backbone, weight_decay, no_weight_decay_list=skip)
    groups = [dict(g) for g in groups if g["params"]]
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale", 1.0)
    head_decay = [p for p in heads if p.ndim > 1]
    head_plain = [p for p in heads if p.ndim <= 1]
    groups.append({"params": head_decay, "weight_decay": weight_decay, "lr": lr})
    groups.append({"params": head_plain, "weight_decay": 0.0, "lr": lr})
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, layer_decay: float | None = None
) -> torch.optim.Optimizer:
    groups = param_groups(model, lr, weight_decay, layer_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise BadInput(f"optimizer: unknown optimizer {name!r} (adamw, sgd)")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base lr at ``step`` (0-based, before the step is taken)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float,
    total_steps: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine over the run. ``total_steps`` (a step/sample budget) replaces epochs × steps_per_epoch;
    ``epochs`` then counts reports and ``warmup_epochs`` is in reports (the same share of steps at every batch)."""
    if total_steps is None:
        total = max(1, epochs * steps_per_epoch)
        warmup = min(total, round(warmup_epochs * steps_per_epoch))
    else:
        total = max(1, total_steps)
        warmup = min(total, round(warmup_epochs * total / epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
