"""The resume ledger gives ASHA back its rung results: a resumed sweep decides as an uninterrupted one would.

Ray restores a scheduler as it was pickled when the sweep started, so before the ledger a resumed sweep
met empty rungs and let its trials through (killed at 55 s and resumed, the toy sweep ended 31 completed /
5 pruned where uninterrupted runs end 23-24 / 12-13). Here the same trials run through GroupASHA
uninterrupted, and interrupted half-way with a fresh GroupASHA that is given the store's rows back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tune_schane.search.group_asha import STOP, GroupASHA
from tune_schane.search.ledger import ResumeLedger, replay_rungs

MAX_T = 9


def _asha() -> GroupASHA:
    return GroupASHA(grace_period=1, reduction_factor=3, max_t=MAX_T, mode="max")


def _curves(n: int, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    quality = rng.uniform(50, 90, n)
    return {f"t{i}": list(quality[i] - 30 / np.arange(1, MAX_T + 1) + rng.normal(0, 2, MAX_T)) for i in range(n)}


def _run(asha: GroupASHA, curves: dict[str, list[float]], trials: list[str], trial_rows: list, epoch_rows: list):
    """One worker: each trial reports until ASHA stops it. Returns the epochs each trial ran."""
    ran = {}
    for trial in trials:
        asha.add(trial, trial, 1)
        for epoch, value in enumerate(curves[trial], start=1):
            epoch_rows.append({"trial_id": trial, "epoch": epoch, "val_top1": value})
            if asha.result(trial, epoch, value)[0] == STOP:
                break
        asha.ended(trial, epoch)
        ran[trial] = epoch
        trial_rows.append({"trial_id": trial, "status": "completed" if epoch == MAX_T else "pruned"})
    return ran


def test_a_resumed_asha_given_the_ledger_decides_as_the_uninterrupted_one():
    curves = _curves(24)
    order = list(curves)
    whole = _run(_asha(), curves, order, [], [])
    assert 0 < sum(e == MAX_T for e in whole.values()) < len(whole)  # ASHA stopped some: a real test

    trial_rows, epoch_rows = [], []
    before = _run(_asha(), curves, order[:12], trial_rows, epoch_rows)  # then the driver dies
    ledger = ResumeLedger(pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows))
    resumed = _asha()
    for trial in reversed(order[:12]):  # Ray adds restored trials latest first
        resumed.add(trial, trial, 1)
        curve = ledger.curve(trial, "val_top1")
        assert replay_rungs(resumed, trial, curve, ended_after=curve[-1][0]) == {}
    after = _run(resumed, curves, order[12:], [], [])
    assert {**before, **after} == whole

    forgetful = _run(_asha(), curves, order[12:], [], [])  # what Ray's restored scheduler did
    assert sum(e == MAX_T for e in forgetful.values()) > sum(whole[t] == MAX_T for t in order[12:])


def test_grouped_seeds_waiting_at_a_rung_are_released_by_the_replay():
    asha = _asha()
    for trial in ("a0", "a1"):
        asha.add(trial, "a", 2)
    replayed = replay_rungs(asha, "a0", [(1, 80.0)])  # a0 waits at rung 1 for its sibling
    assert replayed == {}
    assert replay_rungs(asha, "a1", [(1, 82.0)]) == {"a0": True}  # the group judged: a0 goes on


def test_the_ledger_answers_from_the_store_rows():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["completed", "error", "pruned"]})
    epochs = pd.DataFrame({"trial_id": ["a", "a", "c"], "epoch": [2, 1, 1], "val_top1": [60.0, 50.0, 40.0]})
    ledger = ResumeLedger(trials, epochs)
    assert ledger.known() == {"a", "b", "c"} and ledger.settled() == {"a", "c"}
    assert ledger.status("b") == "error" and ledger.status("zz") is None
    assert ledger.curve("a", "val_top1") == [(1, 50.0), (2, 60.0)] and ledger.curve("b", "val_top1") == []
    assert ResumeLedger.read(None, "s").known() == set()
