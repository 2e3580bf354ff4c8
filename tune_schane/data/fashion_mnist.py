"""Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) read from its four original IDX ``.gz`` files.

70 000 real 28×28 grey photos of clothing in 10 classes (60 000 train, 10 000 test; MIT licence).
Debian packages the original files (``apt-get install dataset-fashion-mnist`` puts them in
:data:`DEFAULT_ROOT`), so a fresh machine with no network trains on real images; on another machine
point ``data_root`` at a folder holding the same four files (the dataset's own download).

The files are parsed here, not by torchvision, so that nothing can try to download and every
malformed file is refused with one line naming it (wrong magic number, wrong sizes, truncated
gzip, labels out of range, images and labels of different counts).

Images stay uint8 ``[N, 1, 28, 28]`` (47 MB for the training split) and are resized per view by the
same single-affine-resample augmentation as the digits (:class:`~tune_schane.data._grey.RandomAffineView`),
with horizontal flips (a mirrored shirt is still a shirt).

Roles (DESIGN.md section 5b): the 60 000 official training images are the training pool, which
:func:`~tune_schane.data._bundle.build_data` carves the validation set out of; the 10 000 official
test images are the *test* split, sealed from a search: without ``include_test`` the two ``t10k``
files are never opened, so a ``data_root`` holding only the two ``train`` files is enough to search.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import BadInput
from ._grey import GreyImages

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "install it with: apt-get install dataset-fashion-mnist"
NUM_CLASSES = 10
FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
TEST_FROM = "official test split (t10k files)"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: 0x00 0x00, type 0x08 (ubyte), then 3 or 1 dimensions


def _read_gz(path: Path) -> bytes:
    if not path.is_file():
        raise BadInput(f"data_root: {path} does not exist (Fashion-MNIST: {INSTALL_HINT})")
    try:  # one-shot zlib (gzip framing): several times faster than reading through gzip.open
        return zlib.decompress(path.read_bytes(), 16 + zlib.MAX_WBITS)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"data_root: {path} is not a readable gzip file ({type(exc).__name__})") from None


def read_idx_images(path: Path) -> np.ndarray:
    """``[N, rows, cols]`` uint8 from an IDX3 file; BadInput naming the file if it is not one."""
    data = _read_gz(path)
    if len(data) < 16 or struct.unpack(">I", data[:4])[0] != IMAGES_MAGIC:
        raise BadInput(f"data_root: {path} is not an IDX image file (bad magic number)")
    count, rows, cols = struct.unpack(">III", data[4:16])
    if len(data) != 16 + count * rows * cols:
        raise BadInput(f"data_root: {path} is truncated or padded ({len(data) - 16} pixel bytes for "
                       f"{count} images of {rows}x{cols})")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """``[N]`` uint8 labels from an IDX1 file; BadInput naming the file if it is not one."""
    data = _read_gz(path)
    if len(data) < 8 or struct.unpack(">I", data[:4])[0] != LABELS_MAGIC:
        raise BadInput(f"data_root: {path} is not an IDX label file (bad magic number)")
    (count,) = struct.unpack(">I", data[4:8])
    if len(data) != 8 + count:
        raise BadInput(f"data_root: {path} is truncated or padded ({len(data) - 8} label bytes for {count} labels)")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise BadInput(f"data_root: {path} has label {int(labels.max())}, outside 0..{NUM_CLASSES - 1}")
    return labels


def load_split(root: str | Path, split: str) -> GreyImages:
    images_file, labels_file = (Path(root).expanduser() / name for name in FILES[split])
    images, labels = read_idx_images(images_file), read_idx_labels(labels_file)
    if len(images) != len(labels):
        raise BadInput(f"data_root: {images_file.name} has {len(images)} images but {labels_file.name} "
                       f"has {len(labels)} labels")
    return GreyImages(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def load_fashion_mnist(root: str | None, include_test: bool = False) -> tuple[GreyImages, GreyImages | None]:
    """(training pool, test or None) = (the 60 000 training images, the 10 000 test images) from ``root``.

    The test files are read only with ``include_test``.
    """
    root = root or DEFAULT_ROOT
    if not Path(root).expanduser().is_dir():
        raise BadInput(f"data_root: {root} does not exist (Fashion-MNIST: {INSTALL_HINT}, "
                       "or set data_root to a folder holding its .gz files)")
    return load_split(root, "train"), (load_split(root, "test") if include_test else None)
