"""Asynchronous successive halving (ASHA) that judges a sampled config's seeds as one group.

With ``repeats > 1`` every sampled config runs as several trials that differ only in their seed.
Plain ASHA judges each trial on its own: it stops one seed of a config and lets the other through,
so the paired analysis (CE against a family at the same batch size and seed) loses its pairs. Here
the unit ASHA judges is the *group* of a config's seeds:

- at a rung (epoch ``grace_period * reduction_factor**k`` below ``max_t``) the group's value is the
  mean of its seeds' values at that rung, compared with the cutoff of the groups already recorded
  there (the top ``1 / reduction_factor`` quantile, as in Ray's ASHA);
- a seed that reaches a rung before its siblings *waits* (the Ray scheduler pauses it) until every
  sibling still alive has reached it; then the group is continued or stopped as a whole;
- with ``tie`` > 0 (``scheduler: {tie: 2.0}``, objective units: the measured seed noise) a group whose
  mean is within ``tie`` of the cutoff goes on: a difference the seeds cannot resolve is not a reason to stop;
- a sibling that ended early (diverged, out of memory, errored) is no longer waited for.

With one seed per group this is exactly Ray's ASHA with one bracket (``tests/search/test_group_asha.py``
checks it against Ray's own on the same results). Nothing here imports Ray: the scheduler in
``tune_schane.ray_tune._scheduler`` turns these decisions into Ray's CONTINUE / PAUSE / STOP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONTINUE, WAIT, STOP = "continue", "wait", "stop"


@dataclass
class _Group:
    size: int  # seeds expected
    values: dict[int, dict[str, float]] = field(default_factory=dict)  # rung -> trial -> value
    decided: dict[int, bool] = field(default_factory=dict)  # rung -> continued?
    ended: dict[str, int] = field(default_factory=dict)  # trial -> last epoch, for seeds that ended
    waiting: dict[str, int] = field(default_factory=dict)  # trial -> the rung it waits at


class GroupASHA:
    """ASHA over groups of seeds for one grid cell. ``mode`` is ``max`` or ``min``."""

    tie = 0.0  # (a class default: states pickled before ``tie`` existed decide as before)

    def __init__(self, *, grace_period: int, reduction_factor: float, max_t: int, mode: str, tie: float = 0.0) -> None:
        self.rf, self.max_t, self.sign = reduction_factor, max_t, 1.0 if mode == "max" else -1.0
        self.tie = tie  # a mean within this of the cutoff counts as a tie, and goes on
        self.rungs: list[int] = []  # ascending milestones below max_t: the only ones that decide
        milestone = grace_period
        while milestone < max_t:
            self.rungs.append(milestone)
            milestone = round(milestone * reduction_factor)
        self.recorded: dict[int, dict[str, float]] = {m: {} for m in self.rungs}  # rung -> group -> mean
        self.groups: dict[str, _Group] = {}
        self.group_of: dict[str, str] = {}

    @classmethod
    def for_space(cls, space) -> GroupASHA:
        """One grid cell's ASHA as a sweep of ``space`` (a :class:`~tune_schane.space.SearchSpace`) runs it."""
        return cls(grace_period=space.grace_period, reduction_factor=space.reduction_factor,
                   max_t=space.max_epochs, mode=space.objective_mode, tie=space.rung_tie)

    def add(self, trial: str, group: str, size: int) -> None:
        self.groups.setdefault(group, _Group(size))
        self.group_of[trial] = group

    def result(self, trial: str, epoch: int, value: float) -> tuple[str, dict[str, bool]]:
        """A trial's result: its decision, and the waiting siblings this result decided (trial -> go on?)."""
        if epoch >= self.max_t:
            return STOP, {}  # trained to the end: Ray's ASHA stops it here too
        group = self.groups[self.group_of[trial]]
        rung = next((m for m in reversed(self.rungs) if epoch >= m and trial not in group.values.get(m, {})), None)
        if rung is None:
            return CONTINUE, {}
        if rung in group.decided:  # the group was judged at this rung before this seed got there
            group.values[rung][trial] = self.sign * value
            return (CONTINUE if group.decided[rung] else STOP), {}
        group.values.setdefault(rung, {})[trial] = self.sign * value
        group.waiting[trial] = rung
        decided = self._decide(self.group_of[trial], rung)
        if trial in decided:
            return (CONTINUE if decided.pop(trial) else STOP), decided
        return WAIT, decided

    def ended(self, trial: str, epoch: int) -> dict[str, bool]:
        """A trial ended (any way) after ``epoch`` epochs: its siblings stop waiting for it."""
        name = self.group_of.get(trial)
        if name is None:
            return {}
        group = self.groups[name]
        group.ended[trial] = epoch
        group.waiting.pop(trial, None)
        out: dict[str, bool] = {}
        for rung in sorted(set(group.waiting.values())):
            out.update(self._decide(name, rung))
        return out

    def force(self, group_name: str) -> dict[str, bool]:
        """Decide every rung a group waits at on the seeds recorded so far (nothing else can report)."""
        group, out = self.groups[group_name], {}
        for rung in sorted(set(group.waiting.values())):
            out.update(self._decide(group_name, rung, force=True))
        return out

    def waiting_groups(self) -> list[str]:
        return [name for name, group in self.groups.items() if group.waiting]

    def _decide(self, name: str, rung: int, force: bool = False) -> dict[str, bool]:
        group = self.groups[name]
        values = group.values.get(rung, {})
        gone = sum(1 for t, last in group.ended.items() if last < rung and t not in values)
        if not values or (len(values) < group.size - gone and not force):
            return {}
        mean = float(np.mean(list(values.values())))
        recorded = self.recorded[rung]
        cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100) if recorded else None
        go = cutoff is None or not mean < cutoff - self.tie
        recorded[name], group.decided[rung] = mean, go
        released = {t: go for t, r in group.waiting.items() if r == rung}
        for t in released:
            del group.waiting[t]
        return released
