"""The embedded offline default: scikit-learn's 1797 real 8×8 handwritten digits (10 classes).

It ships inside scikit-learn, so a fresh machine with no network trains on real images. Digits are
small and grey: they are made 3-channel and resized once, up front, to the model's input size and
kept as one tensor (a trial on 2 CPU cores should spend its time in the model, not the loader).
The train/val split is fixed (stratified 80/20, seed 0), independent of the trial seed, so every
trial of every sweep is scored on the same 360 validation images. Augmentation: random scale,
rotation, shift and brightness/contrast jitter in one affine resample; no horizontal flip (a flipped 2
or 5 is not the same digit).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLIT_SEED = 0
VAL_FRACTION = 0.2


class TensorImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def load_digits_split(img_size: int) -> tuple[TensorImages, TensorImages]:
    """(train, val) of float images in [0, 1], ``[3, img_size, img_size]``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = images.clamp_(0, 1).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=VAL_FRACTION, stratify=labels.numpy(),
                                          random_state=SPLIT_SEED)
    train_idx, val_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
    return TensorImages(images[train_idx], labels[train_idx]), TensorImages(images[val_idx], labels[val_idx])


class RandomAffineView:
    """One random view of a ``[3, H, W]`` tensor in [0, 1], as a single affine resample, then normalise.

    Scale (a random resized crop of 60-100 % of the area), rotation (±12°), translation (±10 %) and
    brightness/contrast jitter (±30 %), drawn from torch's global RNG. One ``grid_sample`` per view
    costs tens of microseconds; torchvision's per-transform pipeline costs 100x more on tiny images.
    """

    def __init__(self, mean, std, scale=(0.6, 1.0), degrees=12.0, translate=0.1, jitter=0.3) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.scale, self.degrees, self.translate, self.jitter = scale, degrees, translate, jitter

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        u = torch.rand(6)
        zoom = math.sqrt(self.scale[0] + (self.scale[1] - self.scale[0]) * u[0].item())  # side of the crop
        angle = math.radians(self.degrees * (2 * u[1].item() - 1))
        tx, ty = (self.translate * (2 * u[2:4] - 1)).tolist()
        cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
        theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=image.dtype).unsqueeze(0)
        grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
        view = F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        brightness = 1 + self.jitter * (2 * u[4].item() - 1)
        contrast = 1 + self.jitter * (2 * u[5].item() - 1)
        view = ((view * brightness - view.mean()) * contrast + view.mean()).clamp_(0, 1)
        return (view - self.mean) / self.std


class Normalise:
    def __init__(self, mean, std) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


def digits_transforms(img_size: int, mean, std) -> tuple[RandomAffineView, Normalise]:
    return RandomAffineView(mean, std), Normalise(mean, std)
