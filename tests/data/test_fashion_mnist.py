"""Fashion-MNIST from its IDX files: parsing, refusals of malformed files, the real data, val carve-outs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.offline_assets import need_fashion_mnist
from tune_schane.data import build_data
from tune_schane.data._fewshot import stratified_subset
from tune_schane.data.fashion_mnist import FILES, load_fashion_mnist
from tune_schane.errors import BadInput


def write_idx(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a split in the original IDX format: big-endian magic, dimensions, then raw uint8."""
    root.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = FILES[split]
    with gzip.open(root / images_name, "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(root / labels_name, "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def small_root(tmp_path):
    """5 images per class in train, 2 in test; each image's pixels encode its index, to check the order."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 5), ("test", 2)):
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(len(labels))
        images[:, 10:18, 10:18] = 200
        write_idx(tmp_path / "fm", split, images, labels)
    return tmp_path / "fm"


def test_idx_files_parse_in_order(small_root):
    train, test = load_fashion_mnist(str(small_root), include_test=True)
    assert len(train) == 50 and len(test) == 20
    assert load_fashion_mnist(str(small_root))[1] is None  # the test split is read only when asked for
    image, label = train[7]
    assert image.shape == (3, 28, 28) and image.dtype == torch.float32
    assert image[0, 0, 0] == pytest.approx(7 / 255) and image.max() == pytest.approx(200 / 255)
    assert 0 <= label < 10
    assert sorted(np.bincount(train.labels.numpy()).tolist()) == [5] * 10


def test_bundle_resizes_views_and_val_and_keeps_shots(small_root):
    bundle = build_data("fashion_mnist", root=str(small_root), download=False, shots=3, seed=1, img_size=48,
                        mean=(0.5,) * 3, std=(0.5,) * 3, views=2, val_size=10)
    views, _ = bundle.train[0]
    image, _ = bundle.val[0]
    assert views.shape == (2, 3, 48, 48) and image.shape == (3, 48, 48)
    assert len(bundle.train) == 30 and sorted(np.bincount(bundle.train_labels).tolist()) == [3] * 10
    assert len(bundle.val) == 10 and bundle.num_classes == 10
    assert views.min() >= -1.0 and views.max() <= 1.0  # normalised with mean = std = 0.5


def test_val_subset_is_balanced_and_independent_of_the_trial_seed(small_root):
    kw = dict(root=str(small_root), download=False, shots=2, img_size=28, mean=(0.5,) * 3, std=(0.5,) * 3,
              val_size=10)
    a = build_data("fashion_mnist", seed=0, **kw)
    b = build_data("fashion_mnist", seed=5, **kw)
    assert a.val.base.indices == b.val.base.indices == a.val_indices == b.val_indices
    assert a.split_info["val_from"] == "train_pool"  # carved out of the 50 training images, not the test split
    assert not set(a.val_indices) & set(a.train_indices + b.train_indices)
    labels = [a.val[i][1] for i in range(len(a.val))]
    assert sorted(labels) == list(range(10))  # one per class
    assert stratified_subset([0, 0, 0, 1], 2) in ([0, 3], [1, 3], [2, 3])
    with pytest.raises(BadInput, match="val_size"):
        stratified_subset([0, 1], 3)


def _corrupt(root: Path, name: str, data: bytes, gzipped: bool = True) -> None:
    (root / name).write_bytes(gzip.compress(data) if gzipped else data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / FILES["train"][0]).unlink(), "does not exist.*apt-get install dataset-fashion-mnist"),
        (lambda r: _corrupt(r, FILES["train"][0], b"not gzip", gzipped=False), "not a readable gzip file"),
        (lambda r: _corrupt(r, FILES["train"][0], struct.pack(">IIII", 2049, 1, 28, 28)), "bad magic number"),
        (lambda r: _corrupt(r, FILES["train"][0], struct.pack(">IIII", 2051, 50, 28, 28) + b"\0" * 100),
         "truncated"),
        (lambda r: _corrupt(r, FILES["test"][1], struct.pack(">II", 2049, 20) + bytes([12] * 20)), "label 12"),
        (lambda r: _corrupt(r, FILES["test"][1], struct.pack(">II", 2049, 3) + bytes(3)), "3 labels"),
        (lambda r: (r / FILES["test"][1]).write_bytes(gzip.compress(b"")[:5]), "gzip|magic"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(small_root, damage, message):
    damage(small_root)
    with pytest.raises(BadInput, match=message):
        load_fashion_mnist(str(small_root), include_test=True)  # half the damage is to the test files


def test_missing_root_names_the_install_command(tmp_path):
    with pytest.raises(BadInput, match=r"no_such.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "no_such"))


def test_the_real_dataset_is_complete_and_balanced():
    need_fashion_mnist()
    train, test = load_fashion_mnist(None, include_test=True)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert np.bincount(train.labels.numpy()).tolist() == [6000] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [1000] * 10
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
