"""ASHA over groups of seeds (tune_schane.search.group_asha), on its own: no Ray cluster, milliseconds.

With one seed per group it must decide exactly as Ray's own ASHA (one bracket) on the same stream
of results; with several seeds a group goes on or stops as a whole, on the mean of its seeds.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from tune_schane.search.group_asha import CONTINUE, STOP, WAIT, GroupASHA


def asha(max_t: int = 4, grace: int = 1, rf: int = 2, mode: str = "max") -> GroupASHA:
    return GroupASHA(grace_period=grace, reduction_factor=rf, max_t=max_t, mode=mode)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_t", "grace", "rf", "mode"), [(4, 1, 2, "max"), (9, 1, 3, "min"), (8, 2, 2, "max")])
def test_groups_of_one_decide_exactly_as_rays_asha(seed, max_t, grace, rf, mode):
    """Random interleavings of 12 trials' results: every decision equals Ray's AsyncHyperBandScheduler's."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    rng = random.Random(seed)
    ray_asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode=mode, max_t=max_t,
                                       grace_period=grace, reduction_factor=rf, brackets=1)
    ours = asha(max_t, grace, rf, mode)
    trials = {f"t{i}": SimpleNamespace(trial_id=f"t{i}", config={}) for i in range(12)}
    curves = {t: [rng.uniform(0, 100) for _ in range(max_t)] for t in trials}
    for t in trials.values():
        ray_asha.on_trial_add(None, t)
        ours.add(t.trial_id, t.trial_id, 1)
    next_epoch = dict.fromkeys(trials, 1)
    ray_names = {TrialScheduler.CONTINUE: CONTINUE, TrialScheduler.STOP: STOP}
    decisions = 0
    while next_epoch:
        trial_id = rng.choice(sorted(next_epoch))
        epoch = next_epoch[trial_id]
        value = curves[trial_id][epoch - 1]
        theirs = ray_names[ray_asha.on_trial_result(None, trials[trial_id], {"epoch": epoch, "m": value})]
        mine, released = ours.result(trial_id, epoch, value)
        assert (mine, released) == (theirs, {}), (trial_id, epoch)
        decisions += 1
        if mine == STOP:
            del next_epoch[trial_id]
        else:
            next_epoch[trial_id] += 1
    assert decisions > len(trials)


def test_a_config_seeds_wait_for_each_other_and_go_on_or_stop_together():
    ours = asha(max_t=4, grace=1, rf=2)
    for group, seeds in (("good", ("g0", "g1")), ("bad", ("b0", "b1"))):
        for trial in seeds:
            ours.add(trial, group, 2)
    assert ours.result("g0", 1, 80.0) == (WAIT, {})  # its sibling has not reached the rung yet
    assert ours.result("g1", 1, 60.0) == (CONTINUE, {"g0": True})  # judged on the mean, 70: the first group
    assert ours.recorded[1] == {"good": 70.0}
    # b0 alone (75) is above the good group's mean, but the group's mean (62.5) is not: both stop.
    assert ours.result("b0", 1, 75.0) == (WAIT, {})
    assert ours.result("b1", 1, 50.0) == (STOP, {"b0": False})
    # Rung 2: the good group is the only one there, so it goes on; max_t stops everyone.
    assert ours.result("g1", 2, 70.0) == (WAIT, {})
    assert ours.result("g0", 2, 90.0) == (CONTINUE, {"g1": True})
    assert ours.result("g0", 3, 91.0) == (CONTINUE, {})  # no rung at 3
    assert ours.result("g0", 4, 92.0) == (STOP, {})


def test_a_seed_that_reaches_a_decided_rung_late_follows_its_group():
    ours = asha(max_t=4, grace=1, rf=2)
    for trial in ("a0", "a1", "a2"):
        ours.add(trial, "a", 3)
    ours.add("x0", "x", 1)
    assert ours.result("x0", 1, 90.0) == (CONTINUE, {})
    assert ours.result("a0", 1, 10.0) == (WAIT, {})
    assert ours.ended("a1", 0) == {}  # a1 ended (out of memory) before rung 1: a0 still waits for a2
    assert ours.result("a2", 1, 20.0) == (STOP, {"a0": False})  # mean 15 < 90


def test_a_sibling_that_ends_early_is_not_waited_for():
    ours = asha(max_t=4, grace=1, rf=2)
    ours.add("s0", "s", 2)
    ours.add("s1", "s", 2)
    assert ours.result("s0", 1, 50.0) == (WAIT, {})
    assert ours.ended("s1", 0) == {"s0": True}  # diverged in epoch 1: s0 is judged alone (first group)
    assert ours.waiting_groups() == []


def test_force_judges_a_group_on_the_seeds_it_has():
    ours = asha(max_t=4, grace=1, rf=2)
    ours.add("s0", "s", 2)
    assert ours.result("s0", 1, 50.0) == (WAIT, {})
    assert ours.waiting_groups() == ["s"]
    assert ours.force("s") == {"s0": True}
    assert ours.waiting_groups() == []


@pytest.mark.parametrize("mode", ["max", "min"])
def test_a_config_within_the_tie_of_the_cutoff_goes_on(mode):
    sign = 1.0 if mode == "max" else -1.0
    plain, tied = asha(mode=mode), GroupASHA(grace_period=1, reduction_factor=2, max_t=4, mode=mode, tie=2.0)
    for ours in (plain, tied):
        for trial in ("a", "b", "c"):
            ours.add(trial, trial, 1)
        assert ours.result("a", 1, sign * 80.0)[0] == CONTINUE  # the first at the rung
    assert plain.result("b", 1, sign * 78.5)[0] == STOP  # below the cutoff (80)...
    assert tied.result("b", 1, sign * 78.5)[0] == CONTINUE  # ...but within 2 points of it: a tie
    assert tied.result("c", 1, sign * 77.0)[0] == STOP  # 3 points below stops with the tie too


def test_the_space_file_sets_the_tie():
    from tune_schane.errors import BadInput
    from tune_schane.space.search_space import parse_space

    base = {"params": {"lr": {"loguniform": [1e-3, 1e-2]}}, "num_samples": 2,
            "scheduler": {"type": "asha", "max_epochs": 4}}
    assert GroupASHA.for_space(parse_space(base)).tie == 0.0
    space = parse_space({**base, "scheduler": {"type": "asha", "max_epochs": 4, "tie": 1.5}})
    assert (space.rung_tie, GroupASHA.for_space(space).tie) == (1.5, 1.5)
    with pytest.raises(BadInput, match=r"scheduler\.tie"):
        parse_space({**base, "scheduler": {"type": "asha", "max_epochs": 4, "tie": -1}})
