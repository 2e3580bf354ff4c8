"""torchvision datasets read from a local root (no download unless asked), and ImageFolder.

Each entry names the torchvision class and its train/val split arguments. Splits: the official
test split is the validation set (these are fine-tuning benchmarks; tune on a held-out part of
train for a publishable protocol). CIFAR's md5 check is relaxed to "the files are there" so a
locally re-packed copy (or a test's small one) is read; the format is CIFAR's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from torch.utils.data import Dataset

from ..errors import BadInput

SPLITS = {  # name -> (class name, train kwargs, val kwargs)
    "cifar10": ("CIFAR10", {"train": True}, {"train": False}),
    "cifar100": ("CIFAR100", {"train": True}, {"train": False}),
    "flowers102": ("Flowers102", {"split": "train"}, {"split": "test"}),
    "oxford_pets": ("OxfordIIITPet", {"split": "trainval", "target_types": "category"},
                    {"split": "test", "target_types": "category"}),
    "stanford_cars": ("StanfordCars", {"split": "train"}, {"split": "test"}),
    "fgvc_aircraft": ("FGVCAircraft", {"split": "trainval"}, {"split": "test"}),
    "food101": ("Food101", {"split": "train"}, {"split": "test"}),
    "dtd": ("DTD", {"split": "train", "partition": 1}, {"split": "test", "partition": 1}),
}
LABEL_ATTRS = ("targets", "_labels", "labels", "_targets")


def _dataset_class(class_name: str, download: bool):
    import torchvision.datasets as tvd

    base = getattr(tvd, class_name)
    if download or class_name not in ("CIFAR10", "CIFAR100"):  # a download is always md5-checked
        return base

    class LocalCIFAR(base):  # type: ignore[misc, valid-type]
        # md5 None: torchvision's check_integrity then only checks that each file exists.
        train_list: ClassVar[list] = [[name, None] for name, _ in base.train_list]
        test_list: ClassVar[list] = [[name, None] for name, _ in base.test_list]
        meta: ClassVar[dict] = {**base.meta, "md5": None}

    LocalCIFAR.__name__ = LocalCIFAR.__qualname__ = f"Local{class_name}"
    return LocalCIFAR


def load_torchvision(name: str, root: str | None, download: bool) -> tuple[Dataset, Dataset, int]:
    """(train, val, num_classes) as PIL-image datasets."""
    if not root:
        raise BadInput(f"data_root: required for {name} (the folder holding the extracted dataset)")
    if not download and not Path(root).expanduser().is_dir():
        raise BadInput(f"data_root: {root} does not exist ({name} needs the dataset there; download is off)")
    class_name, train_kw, val_kw = SPLITS[name]
    cls = _dataset_class(class_name, download)
    try:
        train = cls(str(Path(root).expanduser()), download=download, **train_kw)
        val = cls(str(Path(root).expanduser()), download=download, **val_kw)
    except (RuntimeError, OSError, ValueError) as exc:
        hint = "" if download else " (download is off; set download: true to fetch it)"
        raise BadInput(f"data_root: {name} not found or unreadable under {root}: {exc}{hint}") from None
    return train, val, _num_classes(train, name)


def labels_of(dataset: Dataset) -> list[int]:
    """Labels without decoding images where the dataset keeps them."""
    for attr in LABEL_ATTRS:
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is not None:
        return [int(s[1]) for s in samples]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _num_classes(dataset: Dataset, name: str) -> int:
    classes = getattr(dataset, "classes", None)
    if classes:
        return len(classes)
    return max(labels_of(dataset)) + 1


def load_image_folder(root: str | None) -> tuple[Dataset, Dataset, int]:
    """``root/train/<class>/*`` and ``root/val/<class>/*`` with the same classes."""
    from torchvision.datasets import ImageFolder

    if not root:
        raise BadInput("data_root: required for imagefolder (a folder with train/ and val/)")
    parts = {}
    for split in ("train", "val"):
        folder = Path(root).expanduser() / split
        if not folder.is_dir():
            raise BadInput(f"data_root: {folder} does not exist (imagefolder needs train/ and val/)")
        try:
            parts[split] = ImageFolder(str(folder))
        except (FileNotFoundError, RuntimeError) as exc:
            raise BadInput(f"data_root: {folder}: {exc}") from None
    if parts["train"].classes != parts["val"].classes:
        raise BadInput(f"data_root: {root}: train/ and val/ have different class folders")
    return parts["train"], parts["val"], len(parts["train"].classes)
