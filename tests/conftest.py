"""Session-wide fixtures: one local Ray for the tests that can share it, the tiny model, a small store.

Helpers that are not fixtures live in ``tests/support/`` (no test file imports another test file).
"""

from __future__ import annotations

import copy

import pytest

RAY_CPUS, RAY_GPUS = 2, 2  # this machine's two cores; two logical GPUs for the packing tests


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, 2 logical GPUs) for the whole session: starting one costs seconds.

    Only for tests whose Ray workers need nothing from the environment at start (a test that sets a
    variable the workers must inherit, such as the simulated OOM, starts its own Ray). The CLI leaves
    a Ray it did not start running, so in-process ``main(["sweep", ...])`` calls share it too.
    """
    ray_tune = pytest.importorskip("tune_schane.ray_tune")
    ray_tune.init_ray(None, num_cpus=RAY_CPUS, num_gpus=RAY_GPUS)
    yield ray_tune
    ray_tune.shutdown()


@pytest.fixture
def local_ray(ray_session):
    """The session's Ray, started again if a test with a Ray of its own shut it down."""
    ray_session.init_ray(None, num_cpus=RAY_CPUS, num_gpus=RAY_GPUS)
    return ray_session


@pytest.fixture(scope="session")
def _tiny_vit():
    from tests.support.tiny_models import vit

    return vit()


@pytest.fixture
def tiny_vit(_tiny_vit):
    """A fresh copy of the tiny timm ViT (32 px, 4 classes, projection 16) in train mode, built once."""
    return copy.deepcopy(_tiny_vit)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A store of one small sweep with known values (tests/support/analysis_fixtures.py), built once.

    Read-only: a test that writes into a store builds its own.
    """
    from tests.support.analysis_fixtures import build_store

    root = tmp_path_factory.mktemp("small") / "store"
    build_store(root)
    return root
