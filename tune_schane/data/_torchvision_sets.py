"""torchvision datasets read from a local root (no download unless asked), and ImageFolder.

Each entry names the torchvision class and its training-pool/test split arguments. The pool is the
split a fine-tuning benchmark trains on (pets/aircraft: ``"trainval"``); the validation set a search
scores is carved out of it by :func:`~tune_schane.data._bundle.build_data`. The official test split
(Flowers102: ``split="test"``, not its small ``"val"``) is the sealed *test* split: its dataset is
constructed only with ``include_test``, so a search never reads it.

ImageFolder: ``root/train/<class>/`` is the pool; the test split is ``root/test/<class>/`` where that
folder exists, else ``root/val/<class>/`` (the held-out split its owner made; it is no longer what a
search scores). Neither is scanned without ``include_test``, so ``root/train/`` alone is enough to search.

CIFAR integrity: torchvision's CIFAR10/100 compare each batch file's md5 with hard-coded sums, so
only the byte-exact official files pass. With ``download=False`` we read them through subclasses
whose md5 entries are ``None``; torchvision's ``check_integrity`` then checks only that each file
exists. The files must still be CIFAR's own pickle format (a re-packed copy or a test's small
one reads; a corrupt file fails when it's unpickled). With ``download=True`` the stock classes
verify md5 and fetch the archive if needed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import torchvision.datasets as tvd
from torch.utils.data import Dataset

from ..errors import BadInput

SPLITS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {  # name -> (class, pool kwargs, test kwargs)
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
KNOWN_CLASSES = {"cifar10": 10, "cifar100": 100, "flowers102": 102, "oxford_pets": 37, "stanford_cars": 196,
                 "fgvc_aircraft": 100, "food101": 101, "dtd": 47}
LABEL_ATTRS = ("targets", "_labels", "labels", "_targets")


class LocalCIFAR10(tvd.CIFAR10):
    """CIFAR-10 from local files, md5 not checked (see the module docstring)."""

    train_list: ClassVar[list] = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list: ClassVar[list] = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta: ClassVar[dict] = {**tvd.CIFAR10.meta, "md5": None}


class LocalCIFAR100(tvd.CIFAR100):
    """CIFAR-100 from local files, md5 not checked (see the module docstring)."""

    train_list: ClassVar[list] = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list: ClassVar[list] = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta: ClassVar[dict] = {**tvd.CIFAR100.meta, "md5": None}


LOCAL = {"CIFAR10": LocalCIFAR10, "CIFAR100": LocalCIFAR100}


def load_torchvision(name: str, root: str | None, download: bool,
                     include_test: bool = False) -> tuple[Dataset, Dataset | None, int]:
    """(training pool, official test split or None, num_classes) as PIL-image datasets."""
    if not root:
        raise BadInput(f"data_root: required for {name} (the folder holding the extracted dataset)")
    path = Path(root).expanduser()
    if not download and not path.is_dir():
        raise BadInput(f"data_root: {root} does not exist ({name} needs the extracted dataset there; download is off)")
    class_name, pool_kw, test_kw = SPLITS[name]
    cls = getattr(tvd, class_name) if download else LOCAL.get(class_name, getattr(tvd, class_name))
    try:
        pool = cls(str(path), download=download, **pool_kw)
        test = cls(str(path), download=download, **test_kw) if include_test else None
    except (RuntimeError, OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        said = str(exc).strip().rstrip(".") or type(exc).__name__
        hint = "" if download else "; download is off, so the extracted files must already be there"
        raise BadInput(f"data_root: no readable {name} dataset under {root} (torchvision: {said}{hint})") from None
    return pool, test, _num_classes(pool, name)


def labels_of(dataset: Dataset) -> list[int]:
    """Labels without decoding images where the dataset keeps them."""
    for attr in LABEL_ATTRS:
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    samples = getattr(dataset, "samples", None) or getattr(dataset, "_samples", None)
    if samples is not None and len(samples) == len(dataset):
        return [int(s[1]) for s in samples]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _num_classes(dataset: Dataset, name: str) -> int:
    """``len(classes)`` where the dataset has them (Flowers102 doesn't), else the known count."""
    classes = getattr(dataset, "classes", None)
    return len(classes) if classes else KNOWN_CLASSES[name]


def image_folder_test(root: str) -> Path:
    """The folder an imagefolder's test split comes from: ``root/test`` if it exists, else ``root/val``."""
    test = Path(root).expanduser() / "test"
    return test if test.is_dir() else test.with_name("val")


def _scan(folder: Path, root: str, needs: str) -> Dataset:
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise BadInput(f"data_root: {folder} does not exist (imagefolder needs {needs} under {root})")
    try:
        return ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as exc:
        raise BadInput(f"data_root: {folder}: {exc}") from None


def load_image_folder(root: str | None, include_test: bool = False) -> tuple[Dataset, Dataset | None, int]:
    """(``root/train/<class>/*``, the test folder's images or None, num_classes); the classes must agree."""
    if not root:
        raise BadInput("data_root: required for imagefolder (a folder with train/<class>/, and test/ or val/)")
    pool = _scan(Path(root).expanduser() / "train", root, "train/")
    if not include_test:
        return pool, None, len(pool.classes)
    folder = image_folder_test(root)
    test = _scan(folder, root, "test/ or val/ (the held-out test split) beside train/")
    if pool.classes != test.classes:
        only = sorted(set(pool.classes) ^ set(test.classes))
        raise BadInput(f"data_root: {root}: train/ and {folder.name}/ have different class folders "
                       f"(not in both: {only})")
    return pool, test, len(pool.classes)
