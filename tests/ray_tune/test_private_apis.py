"""The private APIs of Ray and Optuna that tune_schane uses, all in tune_schane/ray_tune/_private_apis.py,
called against the installed versions: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

from tune_schane.ray_tune import _private_apis as private  # noqa: E402


def test_ray_address_lookup_reads_the_recorded_file_and_resolves_auto(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert private.ray_recorded_address() == (None, str(tmp_path / "ray" / "ray_current_cluster"))
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.3:6391")
    assert private.ray_recorded_address()[0] == "127.0.0.3:6391"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.2:6390")
    assert private.ray_resolve_auto() == "127.0.0.2:6390"


def test_placement_group_from_its_hex_id():
    from ray.util.placement_group import PlacementGroup

    hex_id = "ab" * 18  # a PlacementGroupID's length in this Ray
    group = private.ray_placement_group(hex_id)
    assert isinstance(group, PlacementGroup) and group.id.hex() == hex_id


def test_torch_trainer_still_builds_its_default_callbacks_itself():
    from ray.train.torch import TorchTrainer

    trainer = private.torch_trainer_without_pg_cleaner()
    assert issubclass(trainer, TorchTrainer)
    assert callable(getattr(TorchTrainer, "_create_default_callbacks", None))  # what the subclass overrides
    source = inspect.getsource(TorchTrainer._create_default_callbacks)  # wherever in its bases Ray defines it
    assert "PlacementGroupCleaner" in source  # the callback it leaves out is still the one Ray adds


def test_optuna_trial_handle_reports_and_notes_on_the_asked_trial():
    study = optuna.create_study(direction="maximize")
    asked = study.ask()
    asked.suggest_float("x", 0, 1)
    handle = private.optuna_trial_handle(study, asked.number)
    handle.report(0.5, step=1)
    handle.set_user_attr("ray_trial_ids", ["t1"])
    study.tell(asked.number, 0.7)
    (frozen,) = study.get_trials()
    assert frozen.intermediate_values == {1: 0.5} and frozen.user_attrs == {"ray_trial_ids": ["t1"]}
