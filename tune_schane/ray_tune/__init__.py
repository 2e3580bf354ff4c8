"""Everything that touches Ray: the only package that imports ``ray`` (DESIGN.md section 3).

- :mod:`._trainable`: the trial under Ray (config dict -> the plain loop, one report per epoch) and
  the keys of its reports;
- :mod:`._searchers`: the grid's searcher (tune_schane.search.cell_search, Ray-free) behind Ray's
  ``Searcher``, with Ray's checkpoints of it;
- :mod:`._anchor`: Ray's own ``OptunaSearch`` + ``ASHAScheduler`` over the whole space (what the search
  benchmark measures against);
- :mod:`._scheduler`: ASHA per grid cell;
- :mod:`._recording`: every finished trial into the store (the callback, reconciliation on resume);
- :mod:`._driver`: ``init_ray``, ``ray_running``, ``run_sweep``, ``shutdown``;
- :mod:`._confirm`: the confirm stage's jobs (tune_schane.search.confirm) run once each, kill-safe through the store.
"""

from ._confirm import run_confirm
from ._driver import CHECKPOINTS_KEPT, init_ray, ray_running, run_sweep, shutdown
from ._recording import StoreCallback, reconcile_store, record_ray_trial
from ._scheduler import CellASHA
from ._searchers import CellSearcher, PruningAwareOptunaSearch
from ._trainable import CELL_KEY, CONFIG_KEY, ERROR_KEY, GPU_IDS_KEY, STATUS_KEY, trainable, trial_status

__all__ = ["CELL_KEY", "CHECKPOINTS_KEPT", "CONFIG_KEY", "ERROR_KEY", "GPU_IDS_KEY", "STATUS_KEY", "CellASHA",
           "CellSearcher", "PruningAwareOptunaSearch", "StoreCallback", "init_ray", "ray_running", "reconcile_store",
           "record_ray_trial", "run_confirm", "run_sweep", "shutdown", "trainable", "trial_status"]
