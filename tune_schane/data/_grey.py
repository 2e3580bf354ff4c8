"""Transforms for grey image tensors (the digits and Fashion-MNIST): one affine resample per view.

Both data sets are small grey images held as tensors. A view is drawn as a single
``F.grid_sample`` (crop, rotation, shift, optional mirror and the resize to the model's input
size in one resample), then brightness/contrast jitter and the model's normalisation: few torch ops
per view, because torchvision's per-transform pipeline costs many times more on tiny images and
these trials run on 2 CPU cores. Classes, not lambdas, so that datasets pickle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

Triple = tuple[float, float, float]


class GreyImages(Dataset):
    """Grey images ``[N, 1, H, W]``, uint8 (Fashion-MNIST, 4× less memory) or float in [0, 1] (digits);
    items are ``([3, H, W] float view in [0, 1], label)``: three equal channels for RGB backbones."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        return image.expand(3, -1, -1), int(self.labels[i])


class Normalise:
    """``[3, h, w]`` in [0, 1] -> resized to ``size`` (bilinear; None keeps it) -> ``(x - mean) / std``."""

    def __init__(self, mean: Triple, std: Triple, size: int | None = None) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(image.shape[-2:]) != (self.size, self.size):
            grey = F.interpolate(image[:1].unsqueeze(0), size=(self.size, self.size), mode="bilinear",
                                 align_corners=False, antialias=image.shape[-1] > self.size)[0]
            return (grey.clamp_(0, 1) - self.mean) / self.std  # broadcasts [1, H, W] to [3, H, W]
        return (image - self.mean) / self.std


class RandomAffineView(Normalise):
    """One random view of a ``[3, h, w]`` grey image in [0, 1], as a single affine resample, then normalise.

    Scale (a random resized crop of 60-100 % of the area, aspect 3/4-4/3), rotation (±12°), shift
    (±5 % of the side), a horizontal mirror with probability 1/2 when ``flip`` (off for digits: a
    mirrored 2 or 5 is not the same digit) and brightness/contrast jitter (±30 %), all drawn from
    torch's global RNG with one ``torch.rand`` call. The output is ``size × size`` (None: the input's
    size), so an upscale to the model's input costs nothing extra.
    """

    def __init__(self, mean: Triple, std: Triple, size: int | None = None, *, flip: bool = False,
                 scale: tuple[float, float] = (0.6, 1.0), degrees: float = 12.0, translate: float = 0.1,
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.3) -> None:
        super().__init__(mean, std, size)
        self.flip, self.scale, self.degrees, self.translate, self.jitter = flip, scale, degrees, translate, jitter
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
        mirror = -1.0 if self.flip and u[7] < 0.5 else 1.0  # negating the output x coefficient mirrors the view
        return torch.tensor([[mirror * cos * sx, mirror * sin * sx], [-sin * sy, cos * sy], [tx, ty]])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        u = torch.rand(8 if self.flip else 7).tolist()  # 7 draws without flip: the digits' stream as before
        x, y = self._base_grid(self.size or height, self.size or width)
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
