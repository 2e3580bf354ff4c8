"""The grid's searcher under Ray Tune: :class:`tune_schane.search.cell_search.CellSearch` as a Ray ``Searcher``.

The logic (a searcher per cell, ``repeats`` seeds per config, warm starts and patience between cells)
is Ray-free in :mod:`tune_schane.search.cell_search`; what this adds is Ray's base class, Ray's
checkpoints of the searcher (the whole state pickles) and, on restore, the trials the store holds but
the snapshot never handed out.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

from ray.tune.search import Searcher

from ..search.cell_search import CellSearch
from ..search.cell_sharing import CellSharing
from ..search.optuna_search import PruningAwareOptunaSearch
from ..space.search_space import SearchSpace
from ._private_apis import optuna_trial_handle

__all__ = ["CellSearcher", "PickledState", "PruningAwareOptunaSearch"]


class PickledState:
    """Ray checkpoints searchers and schedulers through save/restore; the whole state pickles."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class CellSearcher(PickledState, CellSearch, Searcher):
    """:class:`CellSearch` behind Ray's ``Searcher``; Optuna trials asked before a restore reached again."""

    def __init__(self, space: SearchSpace, sweep_id: str | None = None, store_uri: str | None = None) -> None:
        Searcher.__init__(self, metric=space.objective_metric, mode=space.objective_mode)
        CellSearch.__init__(self, space, sweep_id, store_uri, trial_handle=optuna_trial_handle)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.__dict__.setdefault("objective", self.space.objective_metric)  # pickled before the Ray-free split
        for searcher in self.searchers:
            if isinstance(searcher, PruningAwareOptunaSearch) and getattr(searcher, "trial_handle", None) is None:
                searcher.trial_handle = optuna_trial_handle
        if not hasattr(self, "sharing"):  # a sweep started before warm starts existed: it goes on without
            self.sharing = CellSharing(dataclasses.replace(self.space, warm_start=0, patience=0))
        self.adopt_unknown_trials()
