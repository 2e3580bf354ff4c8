"""``build_data``: one entry point from a dataset name to a :class:`DataBundle`."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..errors import BadInput
from .digits import digits_transforms, load_digits_split
from .fewshot import few_shot_indices
from .torchvision_sets import SPLITS, labels_of, load_image_folder, load_torchvision
from .views import MultiView, Subset, Transformed

DATASETS = ("digits", *SPLITS, "imagefolder")


@dataclass
class DataBundle:
    train: Dataset  # items: (views [V, 3, H, W], label)
    val: Dataset  # items: (image [3, H, W], label)
    num_classes: int
    train_labels: list[int]  # label of each training item, in order


def image_transforms(img_size: int, mean, std) -> tuple[v2.Transform, v2.Transform]:
    """PIL image -> normalised tensor: random resized crop + flip for training, resize + centre crop for val."""
    import torch

    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    train = v2.Compose([v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
                        v2.RandomHorizontalFlip(), *to_tensor])
    resize = img_size if img_size <= 64 else round(img_size * 256 / 224)  # the usual 0.875 crop for photos
    val = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(img_size), *to_tensor])
    return train, val


def build_data(
    dataset: str,
    *,
    root: str | None,
    download: bool,
    shots: int | None,
    seed: int,
    img_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    views: int = 2,
) -> DataBundle:
    if dataset not in DATASETS:
        raise BadInput(f"dataset: unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    if dataset == "digits":
        train, val = load_digits_split(img_size)
        num_classes = 10
        train_tf, val_tf = digits_transforms(img_size, mean, std)
        labels = train.labels.tolist()
    else:
        if dataset == "imagefolder":
            train, val, num_classes = load_image_folder(root)
        else:
            train, val, num_classes = load_torchvision(dataset, root, download)
        train_tf, val_tf = image_transforms(img_size, mean, std)
        labels = labels_of(train)
    if shots is not None:
        keep = few_shot_indices(labels, shots, seed)
        train, labels = Subset(train, keep), [labels[i] for i in keep]
    return DataBundle(MultiView(train, train_tf, views), Transformed(val, val_tf), num_classes, labels)
