"""The per-cell Optuna searchers as the Ray glue builds them (:mod:`tune_schane.search.optuna_search`).

The logic is Ray-free; what is added here is the handle back to a trial asked before a restore, which
needs a private Optuna API (:mod:`._private_apis`). ``PruningAwareOptunaSearch`` keeps this import
path, so searcher states pickled by earlier sweeps still restore.
"""

from __future__ import annotations

from ..search.optuna_search import ListSearch, PruningAwareOptunaSearch
from ..search.optuna_search import make_cell_searcher as _make
from ..space.search_space import SearchSpace
from ._private_apis import optuna_trial_handle

__all__ = ["ListSearch", "PruningAwareOptunaSearch", "make_cell_searcher"]


def make_cell_searcher(space: SearchSpace, cell: dict, index: int,
                       sweep_id: str | None = None) -> PruningAwareOptunaSearch | ListSearch:
    """:func:`tune_schane.search.optuna_search.make_cell_searcher` with the private-API trial handle."""
    return _make(space, cell, index, sweep_id, trial_handle=optuna_trial_handle)
