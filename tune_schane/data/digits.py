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

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLIT_SEED = 0
VAL_FRACTION = 0.2
NUM_CLASSES = 10

Triple = tuple[float, float, float]


class TensorImages(Dataset):
    """Grey images ``[N, 1, H, W]`` in [0, 1]; items are ``([3, H, W] view of the image, label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].expand(3, -1, -1), int(self.labels[i])


def load_digits_split(img_size: int) -> tuple[TensorImages, TensorImages]:
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
    return TensorImages(images[train_idx], labels[train_idx]), TensorImages(images[val_idx], labels[val_idx])


class Normalise:
    """``(x - mean) / std`` per channel; a class (not a lambda) so that datasets pickle."""

    def __init__(self, mean: Triple, std: Triple) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


class RandomAffineView(Normalise):
    """One random view of a ``[3, H, W]`` grey image in [0, 1], as a single affine resample, then normalise.

    Scale (a random resized crop of 60-100 % of the area, aspect 3/4-4/3), rotation (±12°), shift
    (±5 % of the side) and brightness/contrast jitter (±30 %), all drawn from torch's global RNG
    with one ``torch.rand`` call. Few torch ops per view: torchvision's per-transform pipeline
    costs many times more on tiny images, and these trials run on 2 CPU cores.
    """

    def __init__(self, mean: Triple, std: Triple, scale: tuple[float, float] = (0.6, 1.0), degrees: float = 12.0,
                 translate: float = 0.1, ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.3) -> None:
        super().__init__(mean, std)
        self.scale, self.degrees, self.translate, self.jitter = scale, degrees, translate, jitter
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self._grids: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _base_grid(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Identity sampling coordinates (x, y), each ``[H, W, 1]``, cached per size."""
        if (height, width) not in self._grids:
            identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
            grid = F.affine_grid(identity, [1, 1, height, width], align_corners=False)[0]
            self._grids[(height, width)] = (grid[..., :1].contiguous(), grid[..., 1:].contiguous())
        return self._grids[(height, width)]

    def _theta(self, u: list[float]) -> torch.Tensor:
        """The ``[3, 2]`` map from output to input coordinates for uniforms ``u``."""
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[0]
        aspect = math.exp(self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * u[1])
        sx, sy = math.sqrt(area * aspect), math.sqrt(area / aspect)  # crop side / image side, per axis
        angle = math.radians(self.degrees * (2 * u[2] - 1))
        tx, ty = self.translate * (2 * u[3] - 1), self.translate * (2 * u[4] - 1)
        cos, sin = math.cos(angle), math.sin(angle)
        return torch.tensor([[cos * sx, sin * sx], [-sin * sy, cos * sy], [tx, ty]])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        u = torch.rand(7).tolist()
        x, y = self._base_grid(height, width)
        theta = self._theta(u)
        # Elementwise, not a matmul: a tiny BLAS call with 2 threads on busy cores can cost milliseconds.
        grid = (x * theta[0] + y * theta[1] + theta[2]).unsqueeze(0)
        grey = image[:1].unsqueeze(0)  # the three channels are equal: resample one
        view = F.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        brightness = 1 + self.jitter * (2 * u[5] - 1)
        contrast = 1 + self.jitter * (2 * u[6] - 1)
        centre = float(view.mean()) * brightness
        view = (view * (brightness * contrast) + centre * (1 - contrast)).clamp_(0, 1)
        return (view - self.mean) / self.std  # broadcasts [1, H, W] to [3, H, W]


def digits_transforms(mean: Triple, std: Triple) -> tuple[RandomAffineView, Normalise]:
    """(train, val) transforms for digit tensors."""
    return RandomAffineView(mean, std), Normalise(mean, std)
