"""The resume ledger: what a resumed sweep needs from the trial store, read in one place, without Ray.

A sweep's driver can die at any moment; ``--resume`` restores Ray's saved experiment state, which may
be up to a second older than the store. Every part of the sweep that must not redo or forget what
happened asks this ledger instead of reading the store its own way:

- the searcher books trials the store holds but its snapshot never handed out (:meth:`known`, ``trials``);
- the store callback leaves the rows of trials that had ended alone (:meth:`settled`);
- the end-of-sweep reconciliation writes only the trials the store lacks (:meth:`known`);
- the confirm stage skips the jobs that ended (``trials``);
- ASHA gets back the rung results it had (:meth:`curve`): Ray restores a scheduler as it was pickled
  when the sweep *started*, so without them a resumed sweep compares its trials with an empty rung and
  lets them all through (a sweep killed at 55 s and resumed ended 31 completed / 5 pruned where
  uninterrupted runs end 23-24 / 12-13). :func:`replay_rungs` feeds them to a ``GroupASHA``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from .group_asha import GroupASHA

OPEN = ("error", "running")  # statuses a resume runs again (an errored trial is retried on purpose)


@dataclass
class ResumeLedger:
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the sweep's trial rows (none: empty)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)  # their epochs (read only when asked for)

    @classmethod
    def read(cls, store_uri: str | None, sweep_id: str | None, *, epochs: bool = False) -> ResumeLedger:
        """The store's rows for ``sweep_id`` (and its epochs with ``epochs``); empty when there is no store."""
        if not store_uri or not sweep_id:
            return cls()
        from ..store.trial_store import TrialStore

        store = TrialStore(store_uri)
        if not store.exists():
            return cls()
        return cls(store.load_trials(sweep_id), store.load_epochs(sweep_id) if epochs else pd.DataFrame())

    def known(self) -> set[str]:
        """Trial ids with a row, however they ended."""
        return set(self.trials["trial_id"]) if not self.trials.empty else set()

    def settled(self) -> set[str]:
        """Trials whose ending stands: a rerun of one (a stale saved state) must not write over its row."""
        if self.trials.empty:
            return set()
        return set(self.trials.loc[~self.trials["status"].isin(OPEN), "trial_id"])

    def status(self, trial_id: str) -> str | None:
        if self.trials.empty:
            return None
        rows = self.trials.loc[self.trials["trial_id"] == trial_id, "status"]
        return None if rows.empty else str(rows.iloc[-1])

    def curve(self, trial_id: str, metric: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of every report the store holds for the trial, in order."""
        if self.epochs.empty or metric not in self.epochs:
            return []
        rows = self.epochs.loc[self.epochs["trial_id"] == trial_id, ["epoch", metric]].sort_values("epoch")
        return [(int(e), float(v)) for e, v in rows.itertuples(index=False)]


def replay_rungs(asha: GroupASHA, trial_id: str, curve: Iterable[tuple[int, float]], *,
                 ended_after: int | None = None) -> dict[str, bool]:
    """Give ``asha`` back what it had seen of one trial; return the waiting siblings this judged (id -> go on?).

    ``curve`` holds the trial's reports up to where it stopped or was checkpointed; ``ended_after``: the
    trial had ended (any way) after that many epochs, so its siblings no longer wait for it. Each group's
    value at each rung is recorded again, so the cutoffs that later trials meet are the ones an
    uninterrupted sweep would have (a cutoff depends on the set of values at a rung, not on their order).
    The decisions about this trial itself were taken before the resume and are not returned.
    """
    released: dict[str, bool] = {}
    for epoch, value in curve:
        released.update(asha.result(trial_id, epoch, value if math.isfinite(value) else math.nan)[1])
    if ended_after is not None:
        released.update(asha.ended(trial_id, ended_after))
    released.pop(trial_id, None)
    return released
