"""Data: embedded digits, few-shot subsets, CIFAR-10 from its on-disk format, ImageFolder of PNGs."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.support.datasets import write_cifar10
from tune_schane.data import DATASETS, build_data, few_shot_indices
from tune_schane.errors import BadInput

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def data(dataset="digits", **kw):
    args = {"root": None, "download": False, "shots": None, "seed": 0, "img_size": 32, "mean": MEAN, "std": STD}
    return build_data(dataset, **{**args, **kw})


def test_digits_shapes_split_and_labels():
    bundle = data()
    views, label = bundle.train[0]
    image, _ = bundle.val[0]
    assert views.shape == (2, 3, 32, 32) and views.dtype == torch.float32
    assert image.shape == (3, 32, 32)
    assert bundle.num_classes == 10 and isinstance(label, int)
    assert len(bundle.train) + len(bundle.val) == 1437 and bundle.test is None  # the pool; 360 are sealed test
    assert len(bundle.train_labels) == len(bundle.train)
    val_counts = Counter(int(bundle.val[i][1]) for i in range(len(bundle.val)))
    assert len(val_counts) == 10 and max(val_counts.values()) - min(val_counts.values()) <= 1  # balanced


def test_digits_val_split_is_the_same_for_every_trial_seed():
    a, b = data(seed=0), data(seed=5)
    assert torch.equal(a.val[7][0], b.val[7][0]) and a.train_labels == b.train_labels
    assert a.val_indices == b.val_indices


def test_views_differ_and_reproduce_under_the_same_seed():
    bundle = data()
    torch.manual_seed(3)
    first = bundle.train[10][0]
    torch.manual_seed(3)
    again = bundle.train[10][0]
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])


def test_normalisation_uses_the_given_mean_and_std():
    raw = data(mean=(0, 0, 0), std=(1, 1, 1))
    image = raw.val[0][0]
    assert image.min() >= 0 and image.max() <= 1
    normalised = data().val[0][0]
    torch.testing.assert_close(normalised, (image - 0.5) / 0.25)


def test_dataloader_batches_views_and_bundle_pickles():
    bundle = data(views=3, img_size=24)
    views, labels = next(iter(DataLoader(bundle.train, batch_size=8)))
    images, _ = next(iter(DataLoader(bundle.val, batch_size=8)))
    assert views.shape == (8, 3, 3, 24, 24) and labels.shape == (8,) and images.shape == (8, 3, 24, 24)
    clone = pickle.loads(pickle.dumps(bundle))
    torch.manual_seed(1)
    expected = bundle.train[5][0]
    torch.manual_seed(1)
    assert torch.equal(clone.train[5][0], expected)
    with pytest.raises(BadInput, match="views"):
        data(views=0)


def test_few_shot_subsets_are_deterministic_balanced_and_seeded():
    labels = [i % 4 for i in range(40)]
    a, b, c = few_shot_indices(labels, 3, seed=1), few_shot_indices(labels, 3, seed=1), few_shot_indices(labels, 3, 2)
    assert a == b and a != c
    assert Counter(labels[i] for i in a) == {0: 3, 1: 3, 2: 3, 3: 3}
    with pytest.raises(BadInput, match="class 3"):
        few_shot_indices([0, 0, 0, 3], 2, seed=0)
    with pytest.raises(BadInput, match="shots"):
        few_shot_indices(labels, 0, seed=0)


def test_build_data_applies_shots_to_train_only():
    bundle = data(shots=5, seed=2)
    assert len(bundle.train) == 50 and Counter(bundle.train_labels) == dict.fromkeys(range(10), 5)
    assert len(bundle.val) == 287  # the default: 20 % of the 1437-image pool, whatever the shots
    assert data(shots=5, seed=2).train_labels == bundle.train_labels
    full = data().train_labels
    assert bundle.train_labels == [full[i] for i in few_shot_indices(full, 5, seed=2)]
    with pytest.raises(BadInput, match="class"):
        data(shots=1000)


def test_cifar10_is_read_from_a_local_root_in_its_own_format(tmp_path):
    train_labels, test_labels = write_cifar10(tmp_path)
    bundle = data("cifar10", root=str(tmp_path), include_test=True)
    assert bundle.num_classes == 10 and len(bundle.train) == 80 and len(bundle.val) == 20  # val: 20 % of the pool
    assert sorted(bundle.train_indices + bundle.val_indices) == list(range(100))
    assert bundle.train_labels == [train_labels[i] for i in bundle.train_indices]
    views, label = bundle.train[42]
    image, _ = bundle.val[19]
    test_image, _ = bundle.test[19]
    assert views.shape == (2, 3, 32, 32) and views.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert test_image.shape == (3, 32, 32) and label == train_labels[bundle.train_indices[42]]
    assert [bundle.val[i][1] for i in range(20)] == [train_labels[i] for i in bundle.val_indices]
    assert [bundle.test[i][1] for i in range(20)] == test_labels and data("cifar10", root=str(tmp_path)).test is None
    few = data("cifar10", root=str(tmp_path), shots=1, seed=4)
    assert len(few.train) == len(set(train_labels)) and sorted(few.train_labels) == sorted(set(train_labels))
    clone = pickle.loads(pickle.dumps(bundle))  # Ray ships bundles to workers
    assert clone.train_labels == bundle.train_labels and clone.split_info == bundle.split_info


def test_corrupt_cifar_file_is_bad_input(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(BadInput, match="cifar10"):
        data("cifar10", root=str(tmp_path))


def test_missing_torchvision_root_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="data_root"):
        data("cifar10")
    with pytest.raises(BadInput, match="cifar100"):
        data("cifar100", root=str(tmp_path / "nowhere"))
    with pytest.raises(BadInput, match="cifar10"):
        data("cifar10", root=str(tmp_path))  # exists, but holds no dataset


def _write_image_folder(root, classes=("cat", "dog", "fox"), per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def test_image_folder_of_generated_pngs(tmp_path):
    _write_image_folder(tmp_path)
    bundle = data("imagefolder", root=str(tmp_path), shots=2)
    assert bundle.num_classes == 3 and len(bundle.train) == 6 and len(bundle.val) == 2  # 20 % of train/'s 12
    assert bundle.test is None
    assert bundle.train[0][0].shape == (2, 3, 32, 32)


def test_image_folder_errors(tmp_path):
    _write_image_folder(tmp_path)
    (tmp_path / "val" / "extra").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / "extra" / "x.png")
    with pytest.raises(BadInput, match="different class"):
        data("imagefolder", root=str(tmp_path), include_test=True)
    assert data("imagefolder", root=str(tmp_path)).test is None  # val/ is not scanned without include_test
    with pytest.raises(BadInput, match="train"):
        data("imagefolder", root=str(tmp_path / "train"))
    (tmp_path / "val").rename(tmp_path / "held")
    with pytest.raises(BadInput, match="test/ or val/"):
        data("imagefolder", root=str(tmp_path), include_test=True)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(BadInput, match="train"):
        data("imagefolder", root=str(tmp_path / "empty"))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(BadInput, match="cifar100"):
        data("mnist3d")
    assert {"digits", "cifar10", "cifar100", "flowers102", "oxford_pets", "stanford_cars", "fgvc_aircraft",
            "food101", "dtd", "imagefolder"} <= set(DATASETS)
