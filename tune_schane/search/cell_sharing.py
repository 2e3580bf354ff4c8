"""What the cells of a batch-size grid tell each other: warm starts, and when a cell has seen enough.

Every grid cell (loss family × batch size, ...) stays its own search, with its own study, its own
ASHA and its own answer; no accuracy is ever compared across cells. Two things about the grid's
structure are still worth using (no Ray here: :class:`~tune_schane.ray_tune._searchers.CellSearcher`
calls this):

- **Warm starts.** When a cell finds a new incumbent (its best completed config), each neighbour
  (the cells equal on every other axis, at the adjacent batch size of the grid) gets that config
  queued as one of its own samples, trained and judged there (Optuna's ``enqueue_trial``). The
  sampled ``lr`` is the lr at the reference batch (``TrialConfig.lr_ref_batch``), so the space's
  ``lr_rule`` moves the lr the trial trains with, as it would for any sample. Parameters inactive
  in the neighbour (its ``when`` conditions) are dropped; active ones the source lacks are sampled by
  the neighbour's study. A cell borrows at most ``warm_start`` configs and never one it has already
  tried; a newer incumbent of the same source replaces the older offer still waiting.
- **Patience.** A cell stops sampling once ``patience`` configs in a row ended without beating its
  incumbent (pruned and failed configs did not beat it). A cell with no completed config never stops
  early, so no cell is starved; offers still waiting are taken first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..space.search_space import SearchSpace

AXIS = "batch_size"  # warm starts travel along this grid axis only


def neighbours(cells: list[dict[str, Any]], axis: str = AXIS) -> list[list[int]]:
    """For each cell, the indices of the cells equal on every other axis at the adjacent ``axis`` value."""
    values = sorted({cell[axis] for cell in cells if axis in cell})
    rank = {value: i for i, value in enumerate(values)}
    result = []
    for cell in cells:
        if axis not in cell:
            result.append([])
            continue
        others = {k: v for k, v in cell.items() if k != axis}
        result.append([j for j, other in enumerate(cells)
                       if axis in other and abs(rank[other[axis]] - rank[cell[axis]]) == 1
                       and {k: v for k, v in other.items() if k != axis} == others])
    return result


def carried(space: SearchSpace, params: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """``params`` as a config of ``cell``: only those active there (its conditions), in file order."""
    known, kept = {**space.fixed, **cell}, {}
    for spec in space.params.values():
        if spec.name in params and spec.active({**known, **kept}):
            kept[spec.name] = params[spec.name]
    return kept


def covers(config: dict[str, Any], params: dict[str, Any]) -> bool:
    """True when ``config`` holds every one of ``params`` with the same value (an offer, carried)."""
    return all(config.get(k) == v for k, v in params.items())


@dataclass
class Offer:
    params: dict[str, Any]
    source: int  # the cell it comes from


@dataclass
class CellRecord:
    tried: list[dict[str, Any]] = field(default_factory=list)  # params of every config the cell sampled
    best: float | None = None  # the incumbent's value
    since_best: int = 0  # configs ended in a row without beating the incumbent
    borrowed: int = 0  # warm starts taken
    offers: list[Offer] = field(default_factory=list)  # waiting, oldest first


class CellSharing:
    """The per-cell bookkeeping behind warm starts and patience (pickled with the searcher)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.cells = space.cells()
        self.neighbours = neighbours(self.cells)
        self.records = [CellRecord() for _ in self.cells]
        self.maximize = space.objective_mode == "max"

    def next_offer(self, cell: int) -> Offer | None:
        """The warm start ``cell`` should run next, if any (taken off its queue and counted)."""
        record = self.records[cell]
        while record.offers and record.borrowed < self.space.warm_start:
            offer = record.offers.pop(0)
            if not self._tried(cell, offer.params):
                record.borrowed += 1
                return offer
        return None

    def give_back(self, cell: int, offer: Offer) -> None:
        """An offer taken by :meth:`next_offer` that could not run now: first in line again."""
        self.records[cell].borrowed -= 1
        self.records[cell].offers.insert(0, offer)

    def sampled(self, cell: int, params: dict[str, Any]) -> Offer | None:
        """``cell`` now runs ``params`` (sampled, borrowed, or adopted on resume).

        Returns the waiting offer these params are, if any: a trial adopted on resume whose warm start
        was decided after the searcher's last snapshot (it is taken and counted now).
        """
        record = self.records[cell]
        record.tried.append(dict(params))
        for offer in record.offers:
            if covers(params, offer.params):
                record.offers.remove(offer)
                record.borrowed += 1
                return offer
        return None

    def ended(self, cell: int, params: dict[str, Any], value: float | None) -> None:
        """A config of ``cell`` ended (``value``: its mean over seeds; None if pruned or failed)."""
        record = self.records[cell]
        better = value is not None and (record.best is None or
                                        (value > record.best if self.maximize else value < record.best))
        if not better:
            record.since_best += 1
            return
        record.best, record.since_best = value, 0
        for other in self.neighbours[cell] if self.space.warm_start > 0 else ():
            offer = Offer(carried(self.space, params, self.cells[other]), cell)
            target = self.records[other]
            if target.borrowed >= self.space.warm_start or self._tried(other, offer.params):
                continue
            target.offers = [o for o in target.offers if o.source != cell] + [offer]

    def keeps_sampling(self, cell: int) -> bool:
        """False once the cell should stop sampling (patience spent, no offer waiting)."""
        record = self.records[cell]
        if self.space.patience <= 0 or record.best is None or record.since_best < self.space.patience:
            return True
        return any(not self._tried(cell, o.params) for o in record.offers) and record.borrowed < self.space.warm_start

    def _tried(self, cell: int, params: dict[str, Any]) -> bool:
        return any(covers(config, params) for config in self.records[cell].tried)
