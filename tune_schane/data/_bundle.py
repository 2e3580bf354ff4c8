"""``build_data``: one entry point from a dataset name to a :class:`DataBundle`.

Three roles of data (DESIGN.md section 5b), so that what a search chooses on is never what a result
is reported on:

- **training pool**: digits: the fixed stratified 80 % (1437 images); fashion_mnist: the 60 000
  official training images; torchvision sets: the train split of :data:`SPLITS`; imagefolder:
  ``root/train/``.
- **val** (what TPE, ASHA and the best-epoch pick see): a fixed class-balanced subset of the pool,
  :func:`stratified_subset` with its own fixed seed, so the same images for every trial seed.
  ``val_size`` images; None means :func:`default_val_size`: 20 % of the pool, capped at 10 000
  (digits 287, fashion_mnist 10 000, cifar10/100 10 000, flowers102 204). 20 % is the usual
  hold-out share; the cap keeps scoring from dominating an epoch on a CPU while 10 000 images still
  pin top-1 down to ±0.5 points or better (one standard error). Every class keeps at least one image.
- **train**: the pool minus val. Few-shot subsets (``shots``) are drawn from that remainder, so val
  is disjoint from every seed's training images by construction.
- **test**: digits: the held-out 20 % (360 images); fashion_mnist and torchvision sets: the official
  test split; imagefolder: ``root/test/``, else ``root/val/``. Sealed: without ``include_test`` it
  is never read (files unopened, datasets unconstructed, folders unscanned) and ``test`` is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import BadInput
from ._digits import NUM_CLASSES, digits_transforms, load_digits_split
from ._digits import TEST_FROM as DIGITS_TEST_FROM
from ._fewshot import few_shot_indices, stratified_subset
from ._grey import Normalise, RandomAffineView
from ._torchvision_sets import SPLITS, image_folder_test, labels_of, load_image_folder, load_torchvision
from ._views import MultiView, Subset, Transformed
from .fashion_mnist import TEST_FROM as FASHION_TEST_FROM
from .fashion_mnist import load_fashion_mnist

DATASETS: tuple[str, ...] = ("digits", "fashion_mnist", *SPLITS, "imagefolder")
DEFAULT_VAL_FRACTION = 0.2  # of the training pool, when val_size is None
DEFAULT_VAL_CAP = 10_000

Triple = tuple[float, float, float]


@dataclass
class DataBundle:
    """What a trial trains and scores on, and where each part came from."""

    train: Dataset  # items: (views [V, 3, H, W], label)
    val: Dataset  # items: (image [3, H, W], label): one deterministic, un-augmented view
    num_classes: int
    train_labels: list[int]  # label of each training item, in order (after the few-shot subset)
    test: Dataset | None = None  # like val; None unless build_data(include_test=True)
    train_indices: list[int] = field(default_factory=list)  # into the training pool, in train's order
    val_indices: list[int] = field(default_factory=list)  # into the training pool, in val's order
    split_info: dict[str, Any] = field(default_factory=dict)  # each role's source and size
    # The training items again with the val transform, one deterministic view each (same order and labels as
    # train): what a linear probe extracts frozen features from (tune_schane/finetune/probe.py). Built lazily, like val.
    train_eval: Dataset | None = None


class _Source(NamedTuple):
    """A dataset's pool and (if asked for) test split, before the val carve-out."""

    pool: Dataset
    labels: list[int]
    test: Dataset | None
    num_classes: int
    train_tf: Any
    eval_tf: Any
    pool_from: str
    test_from: str


def image_transforms(img_size: int, mean: Triple, std: Triple) -> tuple[v2.Transform, v2.Transform]:
    """PIL image -> normalised tensor: random resized crop + flip for training, resize + centre crop for val.

    Small inputs (<= 64 px, e.g. CIFAR at 32) are not over-resized before the centre crop: there is
    no border to spare on a 32 px image.
    """
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    train = v2.Compose([v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
                        v2.RandomHorizontalFlip(), *to_tensor])
    resize = img_size if img_size <= 64 else round(img_size * 256 / 224)  # the usual 0.875 crop for photos
    val = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(img_size), *to_tensor])
    return train, val


def _check_args(dataset: str, img_size: int, views: int) -> None:
    if dataset not in DATASETS:
        raise BadInput(f"dataset: unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    if img_size < 1:
        raise BadInput(f"img_size: must be >= 1, got {img_size}")
    if views < 1:
        raise BadInput(f"views: must be >= 1, got {views}")


def _load(dataset: str, root: str | None, download: bool, img_size: int, mean: Triple, std: Triple,
          include_test: bool) -> _Source:
    if dataset == "digits":
        pool, test = load_digits_split(img_size, include_test)
        return _Source(pool, pool.labels.tolist(), test, NUM_CLASSES, *digits_transforms(mean, std),
                       "fixed stratified 80 % of digits (seed 0)", DIGITS_TEST_FROM)
    if dataset == "fashion_mnist":
        pool, test = load_fashion_mnist(root, include_test)
        return _Source(pool, pool.labels.tolist(), test, NUM_CLASSES, RandomAffineView(mean, std, img_size, flip=True),
                       Normalise(mean, std, img_size), "official training split (train files)", FASHION_TEST_FROM)
    if dataset == "imagefolder":
        pool, test, num_classes = load_image_folder(root, include_test)
        pool_from, test_from = f"{root}/train", str(image_folder_test(root))
    else:
        pool, test, num_classes = load_torchvision(dataset, root, download, include_test)
        pool_from, test_from = f"{dataset} {SPLITS[dataset][1]}", f"official test split ({SPLITS[dataset][2]})"
    return _Source(pool, labels_of(pool), test, num_classes, *image_transforms(img_size, mean, std), pool_from,
                   test_from)


def default_val_size(pool_size: int) -> int:
    """The validation images when ``val_size`` is None: 20 % of the pool, at least 1, at most 10 000."""
    return min(max(int(pool_size * DEFAULT_VAL_FRACTION), 1), DEFAULT_VAL_CAP)


def carve(labels: list[int], val_size: int | None, shots: int | None, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices into the pool: a fixed balanced val, then ``shots`` per class (``seed``) of the rest."""
    if val_size is None:
        spare = len(labels) - len(set(labels))  # each class keeps one training image
        val_size = min(default_val_size(len(labels)), spare)
        if val_size < 1:
            raise BadInput(f"dataset: its training pool has one image per class ({len(labels)} images): "
                           "no validation set can be held out of it")
    val = stratified_subset(labels, val_size, reserve=1)
    held = set(val)
    train = [i for i in range(len(labels)) if i not in held]
    if shots is not None:
        train = [train[j] for j in few_shot_indices([labels[i] for i in train], shots, seed)]
    return train, val


def build_data(
    dataset: str,
    *,
    root: str | None,
    download: bool,
    shots: int | None,
    seed: int,
    img_size: int,
    mean: Triple,
    std: Triple,
    views: int = 2,
    val_size: int | None = None,
    include_test: bool = False,
) -> DataBundle:
    """Load ``dataset``'s pool, carve val out of it, keep ``shots`` training images per class, wrap in views.

    ``seed`` picks the few-shot subset only (the trial's ``subset_seed``); val does not depend on it.
    ``root``/``download`` are ignored for ``digits``; ``fashion_mnist`` reads its IDX files from
    ``root`` (default: where Debian's package puts them). ``include_test`` reads the sealed test
    split too (see the module docstring); a search never sets it.
    """
    _check_args(dataset, img_size, views)
    src = _load(dataset, root, download, img_size, mean, std, include_test)
    if not src.labels:
        raise BadInput(f"dataset: {dataset} has no training images")
    train_idx, val_idx = carve(src.labels, val_size, shots, seed)
    info = {"pool_from": src.pool_from, "pool_images": len(src.labels), "val_from": "train_pool",
            "val_images": len(val_idx), "train_images": len(train_idx), "test_from": src.test_from,
            "test_images": None if src.test is None else len(src.test)}
    return DataBundle(
        train=MultiView(Subset(src.pool, train_idx), src.train_tf, views),
        val=Transformed(Subset(src.pool, val_idx), src.eval_tf),
        num_classes=src.num_classes,
        train_labels=[src.labels[i] for i in train_idx],
        test=None if src.test is None else Transformed(src.test, src.eval_tf),
        train_indices=train_idx,
        val_indices=val_idx,
        split_info=info,
        train_eval=Transformed(Subset(src.pool, train_idx), src.eval_tf),
    )
