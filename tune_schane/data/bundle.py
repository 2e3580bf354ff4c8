"""``build_data``: one entry point from a dataset name to a :class:`DataBundle`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import BadInput
from .digits import NUM_CLASSES, digits_transforms, load_digits_split
from .fashion_mnist import load_fashion_mnist
from .fewshot import few_shot_indices, stratified_subset
from .grey import Normalise, RandomAffineView
from .torchvision_sets import SPLITS, labels_of, load_image_folder, load_torchvision
from .views import MultiView, Subset, Transformed

DATASETS: tuple[str, ...] = ("digits", "fashion_mnist", *SPLITS, "imagefolder")

Triple = tuple[float, float, float]


@dataclass
class DataBundle:
    """What a trial trains and scores on."""

    train: Dataset  # items: (views [V, 3, H, W], label)
    val: Dataset  # items: (image [3, H, W], label): one deterministic, un-augmented view
    num_classes: int
    train_labels: list[int]  # label of each training item, in order (after the few-shot subset)


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
) -> DataBundle:
    """Load ``dataset``, keep ``shots`` training images per class (``seed`` picks them), wrap in views.

    ``root``/``download`` are ignored for ``digits``; ``fashion_mnist`` reads its IDX files from
    ``root`` (default: where Debian's package puts them). ``val_size`` scores a fixed, class-balanced
    subset of the validation split (the same for every trial seed); None scores all of it.
    """
    _check_args(dataset, img_size, views)
    if dataset == "digits":
        train, val = load_digits_split(img_size)
        num_classes = NUM_CLASSES
        train_tf, val_tf = digits_transforms(mean, std)
        labels = train.labels.tolist()
    elif dataset == "fashion_mnist":
        train, val = load_fashion_mnist(root)
        num_classes = NUM_CLASSES
        train_tf = RandomAffineView(mean, std, img_size, flip=True)
        val_tf = Normalise(mean, std, img_size)
        labels = train.labels.tolist()
    else:
        if dataset == "imagefolder":
            train, val, num_classes = load_image_folder(root)
        else:
            train, val, num_classes = load_torchvision(dataset, root, download)
        train_tf, val_tf = image_transforms(img_size, mean, std)
        labels = labels_of(train)
    if not labels:
        raise BadInput(f"dataset: {dataset} has no training images")
    if shots is not None:
        keep = few_shot_indices(labels, shots, seed)
        train, labels = Subset(train, keep), [labels[i] for i in keep]
    if val_size is not None:
        val = Subset(val, stratified_subset(labels_of(val), val_size))
    return DataBundle(MultiView(train, train_tf, views), Transformed(val, val_tf), num_classes, labels)
