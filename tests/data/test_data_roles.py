"""The three roles of data (DESIGN.md section 5b) and the three seeds of a trial.

val is carved out of the training pool (fixed, balanced, disjoint from every seed's training images);
the test split is sealed (never read without ``include_test``); ``subset_seed`` / ``init_seed`` /
``order_seed`` each move one source of chance.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.support.datasets import write_cifar10
from tests.support.offline_assets import need_fashion_mnist
from tests.support.store_rows import trial as store_row
from tune_schane.analysis.export import config_from_row
from tune_schane.data import _bundle as bundle_module
from tune_schane.data import build_data
from tune_schane.data._digits import split_indices
from tune_schane.data.fashion_mnist import DEFAULT_ROOT, FILES, load_fashion_mnist
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig, dump_config, load_config
from tune_schane.finetune.model import build_model
from tune_schane.finetune.trial import Trial
from tune_schane.store import TrialStore

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SEEDS = range(31)


def data(dataset="digits", **kw):
    args = {"root": None, "download": False, "shots": None, "seed": 0, "img_size": 16, "mean": MEAN, "std": STD}
    return build_data(dataset, **{**args, **kw})


@pytest.fixture(scope="module")
def fashion_pool():
    """The real 60 000 training images, read once for the module (the seed loops need no re-reads)."""
    need_fashion_mnist()
    return load_fashion_mnist(None)


def train_only_root(tmp_path: Path) -> Path:
    """A data_root holding only (links to) Fashion-MNIST's two training files: no t10k file at all."""
    need_fashion_mnist()
    root = tmp_path / "train_only"
    root.mkdir()
    for name in FILES["train"]:
        (root / name).symlink_to(Path(DEFAULT_ROOT) / name)
    return root


def assert_balanced(labels, classes=10):
    counts = Counter(labels)
    assert len(counts) == classes and max(counts.values()) - min(counts.values()) <= 1, counts


# --- val: carved from the pool, fixed, balanced, disjoint ----------------------------------------


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_val_is_fixed_balanced_and_disjoint_from_every_seeds_training_images(dataset, request, monkeypatch):
    if dataset == "fashion_mnist":
        pool = request.getfixturevalue("fashion_pool")
        monkeypatch.setattr(bundle_module, "load_fashion_mnist", lambda root, include_test: pool)
    full = data(dataset)
    val = set(full.val_indices)
    n_pool = full.split_info["pool_images"]
    assert full.split_info["val_from"] == "train_pool" and full.test is None
    assert full.val_indices == sorted(val) and not val & set(full.train_indices)  # full data: disjoint too
    assert sorted(full.train_indices + full.val_indices) == list(range(n_pool))  # pool = train + val
    assert len(val) == {"digits": 287, "fashion_mnist": 10_000}[dataset]  # the default: 20 % of the pool, ≤ 10 000
    assert_balanced(full.val.base.base.labels[full.val_indices].tolist())  # the pool's labels at val
    for seed in SEEDS:
        few = data(dataset, shots=2, seed=seed)
        assert few.val_indices == full.val_indices  # the same val for every seed
        assert not val & set(few.train_indices), seed
        assert len(few.train) == 20 and Counter(few.train_labels) == dict.fromkeys(range(10), 2)
    assert data(dataset, shots=2, seed=0).train_indices != data(dataset, shots=2, seed=1).train_indices


def test_val_size_counts_validation_images_and_leaves_every_class_a_training_image():
    bundle = data(val_size=1427)  # 1437 pool images, 10 classes: the largest possible val
    assert len(bundle.val) == 1427 and Counter(bundle.train_labels) == dict.fromkeys(range(10), 1)
    assert set(data(val_size=50).val_indices) < set(data(val_size=60).val_indices)  # a larger val extends a smaller
    with pytest.raises(BadInput, match=r"val_size: must be between 1 and 1427 .*1437.*got 1428"):
        data(val_size=1428)
    with pytest.raises(BadInput, match="shots: class"):
        data(val_size=1400, shots=5)  # what val leaves is too little for 5 per class


# --- test: sealed ---------------------------------------------------------------------------------


def test_fashion_mnist_searches_on_a_root_with_only_the_training_files(tmp_path):
    root = train_only_root(tmp_path)
    bundle = data("fashion_mnist", root=str(root), shots=2, val_size=100)
    assert bundle.test is None and bundle.split_info["test_images"] is None
    assert len(bundle.train) == 20 and len(bundle.val) == 100 and bundle.split_info["pool_images"] == 60_000
    with pytest.raises(BadInput, match=FILES["test"][0]):
        data("fashion_mnist", root=str(root), shots=2, val_size=100, include_test=True)


def test_digits_test_is_the_held_out_fifth_and_disjoint_from_the_pool():
    from sklearn.datasets import load_digits

    assert data().test is None and data().split_info["test_images"] is None
    target = load_digits().target
    pool, test = split_indices(target)
    assert len(pool) == 1437 and len(test) == 360 and not set(pool) & set(test)
    assert sorted([*pool, *test]) == list(range(1797))
    bundle = data(include_test=True, img_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    assert bundle.split_info["test_images"] == 360 and len(bundle.test) == 360
    raw = torch.from_numpy(load_digits().images).float() / 16  # 8 px: no resize, so images compare exactly
    assert all(torch.allclose(bundle.test[i][0][0], raw[test[i]]) for i in range(0, 360, 37))
    assert [bundle.test[i][1] for i in range(360)] == target[test].tolist()
    assert all(torch.allclose(bundle.val[i][0][0], raw[pool[j]]) for i, j in enumerate(bundle.val_indices[:20]))


def test_torchvision_test_split_is_not_constructed_without_include_test(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")  # torchvision checks it exists
    bundle = data("cifar10", root=str(tmp_path))
    assert bundle.test is None and len(bundle.train) + len(bundle.val) == 100
    assert "official test split" in bundle.split_info["test_from"]
    with pytest.raises(BadInput, match="cifar10"):
        data("cifar10", root=str(tmp_path), include_test=True)


def write_image_folder(root: Path, splits: dict[str, int], classes=("ant", "bee", "cow")) -> None:
    """Tiny PNGs, ``splits[name]`` per class; each pixel block encodes (split, class, index)."""
    for s, (split, per_class) in enumerate(splits.items()):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(np.full((10, 12, 3), (s * 60, c * 60, i * 20), np.uint8)).save(
                    root / split / cls / f"{i}.png")


def image_paths(dataset) -> set[str]:
    while not hasattr(dataset, "samples"):
        dataset = dataset.base
    return {path for path, _ in dataset.samples}


@pytest.mark.parametrize("with_test", [False, True])
def test_image_folder_test_is_test_or_else_val_and_never_scanned_for_a_search(tmp_path, with_test):
    splits = {"train": 5, "val": 2, **({"test": 3} if with_test else {})}
    write_image_folder(tmp_path, splits)
    held = "test" if with_test else "val"
    bundle = data("imagefolder", root=str(tmp_path), shots=2)
    assert bundle.test is None and bundle.split_info["test_from"] == str(tmp_path / held)
    assert len(bundle.val) == 3 and len(bundle.train) == 6  # val: 20 % of train/'s 15 images
    assert not set(bundle.val_indices) & set(bundle.train_indices)
    sealed = data("imagefolder", root=str(tmp_path), shots=2, include_test=True)
    assert len(sealed.test) == 3 * splits[held] and sealed.split_info["test_images"] == len(sealed.test)
    assert all(Path(p).parent.parent.name == held for p in image_paths(sealed.test))
    assert not image_paths(sealed.test) & image_paths(sealed.train)  # test/ (or val/) vs train/
    assert all(Path(p).parent.parent.name == "train" for p in image_paths(sealed.train))
    assert sealed.test[0][0].shape == (3, 16, 16) and sealed.train_indices == bundle.train_indices
    (tmp_path / held / "ant" / "0.png").write_bytes(b"not a png")
    (tmp_path / held / "zzz").mkdir()  # an empty class folder: ImageFolder refuses it when scanned
    assert data("imagefolder", root=str(tmp_path), shots=2).test is None  # a search never looks


def test_a_search_trial_never_loads_a_test_image(tmp_path, monkeypatch):
    """A whole trial on a root without the t10k files; and no test file is even asked for."""
    root = train_only_root(tmp_path)
    from tune_schane.data import fashion_mnist

    opened = []
    real = fashion_mnist._read_gz
    monkeypatch.setattr(fashion_mnist, "_read_gz", lambda path: opened.append(path.name) or real(path))
    cfg = TrialConfig(dataset="fashion_mnist", data_root=str(root), model="test_vit", shots=2, val_size=50,
                      epochs=1, batch_size=10, img_size=32, device="cpu", num_threads=2)
    trial = Trial(cfg)
    (metrics,) = list(trial.run())
    assert trial.data.test is None and len(trial.data.val) == 50 and len(trial.data.train) == 20
    assert 0.0 <= metrics["val_top1"] <= 100.0
    assert sorted(opened) == sorted(FILES["train"])


# --- seeds -----------------------------------------------------------------------------------------


def tiny_trial(**seeds) -> Trial:
    return Trial(TrialConfig(model="test_vit", dataset="digits", img_size=32, shots=3, batch_size=10, epochs=1,
                             device="cpu", num_threads=2, **seeds))


def order(trial: Trial) -> list[int]:
    """The training images of epoch 1, as pool indices, in the order the loader visits them."""
    return [trial.data.train_indices[i] for i in trial._train_loader(1).sampler]


def same_init(a: Trial, b: Trial) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@functools.cache
def trials() -> dict[str, Trial]:
    return {"base": tiny_trial(seed=1), "init": tiny_trial(seed=1, init_seed=9),
            "subset": tiny_trial(seed=1, subset_seed=9), "order": tiny_trial(seed=1, order_seed=9),
            "explicit": tiny_trial(seed=0, subset_seed=1, init_seed=1, order_seed=1), "other": tiny_trial(seed=2)}


def test_init_seed_moves_the_init_only():
    base, other = trials()["base"], trials()["init"]
    assert other.data.train_indices == base.data.train_indices and order(other) == order(base)
    assert not same_init(other, base)
    torch.manual_seed(9)  # init_seed seeds the model's construction, nothing else runs in between
    rebuilt = build_model("test_vit", 10, img_size=32, proj_dim=128)
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in other.model.state_dict().items())


def test_subset_seed_moves_the_images_only():
    base, other = trials()["base"], trials()["subset"]
    assert other.data.train_indices != base.data.train_indices and other.data.val_indices == base.data.val_indices
    assert same_init(other, base)
    assert list(other._train_loader(1).sampler) == list(base._train_loader(1).sampler)  # same order of positions


def test_order_seed_moves_the_order_only():
    base, other = trials()["base"], trials()["order"]
    assert other.data.train_indices == base.data.train_indices and same_init(other, base)
    assert order(other) != order(base) and sorted(order(other)) == sorted(order(base))


def test_unset_seeds_follow_seed_as_before():
    base, explicit, other = trials()["base"], trials()["explicit"], trials()["other"]
    assert base.config.seeds() == (1, 1, 1) and base.config.subset_seed is None  # kept None when resolved
    assert explicit.data.train_indices == base.data.train_indices and order(explicit) == order(base)
    assert same_init(explicit, base)
    assert other.data.train_indices != base.data.train_indices and order(other) != order(base)
    assert not same_init(other, base)


def test_seed_fields_validate_and_an_exported_config_follows_a_new_seed(tmp_path):
    for name in ("subset_seed", "init_seed", "order_seed"):
        with pytest.raises(BadInput, match=name):
            TrialConfig(**{name: -1}).validate()
        with pytest.raises(BadInput, match=name):
            TrialConfig.from_dict({name: "x"})
    assert TrialConfig(seed=4, init_seed=0).seeds() == (4, 0, 4)
    dump_config(TrialConfig(seed=2).resolved(), tmp_path / "best.yaml")
    assert load_config(tmp_path / "best.yaml", ["seed=5"]).config.seeds() == (5, 5, 5)
    pinned = load_config(tmp_path / "best.yaml", ["seed=5", "subset_seed=2"]).config
    assert pinned.seeds() == (2, 5, 5)


def test_a_store_written_before_the_seed_fields_still_reads(tmp_path):
    store = TrialStore(tmp_path)
    path = store.write_trials([store_row(config=TrialConfig(seed=3).to_dict())])
    old = pq.read_table(path).drop_columns(["config_subset_seed", "config_init_seed", "config_order_seed"])
    os.remove(path)
    pq.write_table(old, tmp_path / "trials" / "part-old.parquet")
    row = store.load_trials().iloc[0]
    assert all(pd.isna(row[f"config_{n}"]) for n in ("subset_seed", "init_seed", "order_seed"))
    assert config_from_row(row).seeds() == (3, 3, 3)  # an old trial reruns as it ran: seed moved all three
