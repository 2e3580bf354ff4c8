"""Every use of a pinned library's private API, in one place, each with why no public one does the job.

Each of these can break silently on the next Ray or Optuna release; ``tests/ray_tune/test_private_apis.py`` calls
every function here against the installed versions, so an upgrade fails there first, by name. Nothing
else in the package may use a private name of Ray or Optuna (``tests/test_layout.py`` greps for them).
"""

from __future__ import annotations

from typing import Any


def ray_recorded_address() -> tuple[str | None, str]:
    """``(host:port or None, the file it is recorded in)``: the cluster ``ray start`` recorded on this machine.

    Why private: Ray resolves ``--address auto`` inside ``ray.init`` and exposes neither the lookup nor
    the file; checking the head answers *before* ``ray.init`` (which otherwise retries for minutes) needs both.
    """
    from ray._common.utils import get_ray_address_file
    from ray._private import services

    return services.find_bootstrap_address(None), get_ray_address_file(None)


def ray_resolve_auto() -> str | None:
    """The address ``ray.init(address="auto")`` would join (RAY_ADDRESS, the recorded file, a local head).

    Why private: as :func:`ray_recorded_address`. Raises ConnectionError or ValueError when there is none.
    """
    from ray._private import services

    return services.canonicalize_bootstrap_address("auto")


def ray_placement_group(hex_id: str):
    """The ``PlacementGroup`` whose id is ``hex_id`` (a Ray Train worker group's, reported by its trial).

    Why private: ``ray.util.placement_group`` offers no constructor from an id; the trial that owns the
    group has ended by the time it must be removed, so only its id is left.
    """
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))


def torch_trainer_without_pg_cleaner():
    """A ``TorchTrainer`` subclass without Ray's ``PlacementGroupCleanerCallback``.

    Why private: Ray Train adds that callback itself (``_create_default_callbacks``) and offers no switch.
    It watches the controller through the State API, which needs the dashboard (``ray[default]``); without
    it the callback's detached actor warns every second and outlives the sweep. The worker group's
    placement group is released by ``ReleaseTrainResources`` instead (:mod:`._train_group`).
    """
    from ray.train.torch import TorchTrainer

    class _Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [cb for cb in super()._create_default_callbacks()
                    if type(cb).__name__ != "PlacementGroupCleanerCallback"]

    return _Trainer


def optuna_trial_handle(study: Any, number: int):
    """A live ``optuna.Trial`` for trial ``number`` of ``study``, asked by another process or before a restore.

    Why private: Optuna offers no public way back to a live ``Trial`` from a trial number (``Study.tell``
    takes a number, but ``report`` and ``set_user_attr`` need the ``Trial``); ``Trial(study, storage trial
    id)`` is what ``Study.ask`` itself builds, and the storage id is only on ``FrozenTrial._trial_id``.
    """
    import optuna

    frozen = study.get_trials(deepcopy=False)[number]
    return optuna.trial.Trial(study, frozen._trial_id)
