"""The tiny timm ViT with every dropout knob, and one loss per family, for step-level tests."""

from __future__ import annotations

import timm
import torch

from tune_schane.finetune.model import ContrastiveClassifier
from tune_schane.losses import build_loss

NUM_CLASSES = 4
IMAGES, VIEWS = 8, 2
ROWS = IMAGES * VIEWS
LOSSES = {  # family -> build_loss arguments (tau, beta, lam, detach_weights)
    "ce": ("ce", None, None, None),
    "supcon": ("supcon", 0.1, None, None),
    "schane": ("schane", 0.1, 1.0, None),
    "schane-detached-weights": ("schane", 0.1, 1.0, None, True),
    "clce": ("clce", 0.1, 1.0, 0.5),
}


def make_loss(key: str):
    return build_loss(*LOSSES[key])


def vit(dropout: float = 0.0, drop_path: float = 0.0, seed: int = 0) -> ContrastiveClassifier:
    """test_vit with every timm dropout knob (build_model exposes drop_path only)."""
    torch.manual_seed(seed)
    backbone = timm.create_model("test_vit", num_classes=0, img_size=32, drop_rate=dropout,
                                 proj_drop_rate=dropout, attn_drop_rate=dropout, drop_path_rate=drop_path)
    return ContrastiveClassifier(backbone, backbone.num_features, NUM_CLASSES, proj_dim=16).train()
