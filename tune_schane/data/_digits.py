"""The embedded offline default: scikit-learn's 1797 real 8×8 handwritten digits (10 classes).

It ships inside scikit-learn, so a fresh machine with no network trains on real images. Digits are
small and grey: they are resized once, up front, to the model's input size and kept as one
single-channel tensor (made 3-channel per item, as a view); a trial on 2 CPU cores should spend its
time in the model, not the loader.

The data set has no official split, so one is fixed here (stratified 80/20, seed 0, independent of
every trial seed): the 360 held-out images are the *test* split, sealed from a search (dropped
before anything is returned unless asked for), and the other 1437 are the training pool that
:func:`~tune_schane.data._bundle.build_data` carves the validation set out of.

Augmentation: random resized crop with mild aspect change, rotation, shift and brightness/contrast
jitter in one affine resample; no horizontal flip (a flipped 2 or 5 is not the same digit).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._grey import GreyImages, Normalise, RandomAffineView

SPLIT_SEED = 0
TEST_FRACTION = 0.2
NUM_CLASSES = 10
TEST_FROM = "held-out 20 % of digits (stratified, seed 0)"

Triple = tuple[float, float, float]


def split_indices(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices into the digits' ``target``, sorted: the fixed stratified 80/20 split."""
    from sklearn.model_selection import train_test_split

    pool, test = train_test_split(np.arange(len(target)), test_size=TEST_FRACTION, stratify=target,
                                  random_state=SPLIT_SEED)
    return np.sort(pool), np.sort(test)


def load_digits_split(img_size: int, include_test: bool = False) -> tuple[GreyImages, GreyImages | None]:
    """(training pool, test or None) of grey images in [0, 1], resized (bilinear) to ``img_size``.

    Without ``include_test`` the held-out images are dropped before anything is resized or returned.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pool_idx, test_idx = (torch.from_numpy(part) for part in split_indices(digits.target))
    keep = torch.cat([pool_idx, test_idx]) if include_test else pool_idx
    images = torch.from_numpy(digits.images[keep.numpy()]).float().div_(16.0).unsqueeze(1)  # [N, 1, 8, 8]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False).clamp_(0, 1)
    labels = torch.from_numpy(digits.target[keep.numpy()]).long()
    n_pool = len(pool_idx)
    pool = GreyImages(images[:n_pool], labels[:n_pool])
    return pool, (GreyImages(images[n_pool:], labels[n_pool:]) if include_test else None)


def digits_transforms(mean: Triple, std: Triple) -> tuple[RandomAffineView, Normalise]:
    """(train, val/test) transforms for digit tensors."""
    return RandomAffineView(mean, std), Normalise(mean, std)
