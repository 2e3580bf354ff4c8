"""The embedded offline default: scikit-learn's 1797 real 8×8 handwritten digits (10 classes).

It ships inside scikit-learn, so a fresh machine with no network trains on real images. Digits are
small and grey: they are resized once, up front, to the model's input size and kept as one
single-channel tensor (made 3-channel per item, as a view); a trial on 2 CPU cores should spend its
time in the model, not the loader. The train/val split is fixed (stratified 80/20, seed 0),
independent of the trial seed, so every trial of every sweep is scored on the same 360 validation
images. Augmentation: random resized crop with mild aspect change, rotation, shift and
brightness/contrast jitter in one affine resample; no horizontal flip (a flipped 2 or 5 is not the
same digit).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .grey import GreyImages, Normalise, RandomAffineView

SPLIT_SEED = 0
VAL_FRACTION = 0.2
NUM_CLASSES = 10

Triple = tuple[float, float, float]


def load_digits_split(img_size: int) -> tuple[GreyImages, GreyImages]:
    """(train, val) of grey images in [0, 1], resized (bilinear) to ``img_size``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.from_numpy(digits.target).long()
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=VAL_FRACTION, stratify=labels.numpy(),
                                          random_state=SPLIT_SEED)
    train_idx, val_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
    return GreyImages(images[train_idx], labels[train_idx]), GreyImages(images[val_idx], labels[val_idx])


def digits_transforms(mean: Triple, std: Triple) -> tuple[RandomAffineView, Normalise]:
    """(train, val) transforms for digit tensors."""
    return RandomAffineView(mean, std), Normalise(mean, std)
