"""The sweep's searchers and scheduler on their own, without a Ray cluster.

Ray calls these objects from its controller; here the tests call them the same way (``suggest``,
``on_trial_result``, ``on_trial_complete``) with real Optuna studies and Ray's own ASHA, which is
how every ending, the mean over repeated seeds and the per-cell ASHA are checked in milliseconds.
"""

from __future__ import annotations

import math
import textwrap
from types import SimpleNamespace

import optuna
import pytest

from tune_schane.space import load_space

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune import CELL_KEY, STATUS_KEY, CellASHA, CellSearcher, PruningAwareOptunaSearch  # noqa: E402

State = optuna.trial.TrialState


def write_space(tmp_path, body: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def done(epoch: int, value: float) -> dict:
    return {"epoch": epoch, "val_top1": value, STATUS_KEY: "running"}


def test_optuna_hears_diverged_oom_and_errored_trials_as_failed_and_stopped_ones_as_pruned(tmp_path):
    """The searcher's side of every ending, with a real Optuna study (no Ray cluster needed)."""
    import optuna

    space = load_space(write_space(tmp_path, """\
name: tell
params:
  lr: {loguniform: [1.0e-4, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 6
"""))
    searcher = PruningAwareOptunaSearch(space=space.define_by_run({}), metric="val_top1", mode="max",
                                                 sampler=optuna.samplers.TPESampler(seed=0), max_epochs=3)
    endings = {
        "done": ({"epoch": 3, "val_top1": 80.0, STATUS_KEY: "running"}, False),
        "stopped": ({"epoch": 1, "val_top1": 20.0, STATUS_KEY: "running"}, False),
        "diverged": ({"epoch": 1, "val_top1": -math.inf, STATUS_KEY: "diverged"}, False),
        "oom": ({"epoch": 1, "val_top1": -math.inf, STATUS_KEY: "oom"}, False),
        "errored": (None, True),
    }
    for trial_id, (result, error) in endings.items():
        assert searcher.suggest(trial_id) is not None
        searcher.on_trial_complete(trial_id, result, error=error)
    states = {trial_id: searcher.optuna_trial(trial_id).state for trial_id in endings}
    state = optuna.trial.TrialState
    assert states == {"done": state.COMPLETE, "stopped": state.PRUNED, "diverged": state.FAIL, "oom": state.FAIL,
                      "errored": state.FAIL}


REPEATS = """\
name: repeats
params:
  lr: {loguniform: [1.0e-4, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 4
repeats: 3
"""


def test_repeats_share_a_config_and_the_searcher_hears_the_mean_of_the_group(tmp_path):
    space = load_space(write_space(tmp_path, REPEATS))
    searcher = CellSearcher(space)
    suggested = {f"t{i}": searcher.suggest(f"t{i}") for i in range(12)}
    assert searcher.suggest("t12") is searcher.FINISHED  # 4 configs x 3 seeds, then done
    groups = [[suggested[f"t{3 * g + r}"] for r in range(3)] for g in range(4)]
    for g, group in enumerate(groups):
        assert {m["group"] for m in group} == {f"g{g}"} and [m["repeat"] for m in group] == [0, 1, 2]
        assert len({m["params"]["lr"] for m in group}) == 1  # one sampled config per group...
        assert [m["trial_config"]["seed"] for m in group] == [0, 1, 2]  # ...run with consecutive seeds

    # Intermediate values of a repeated group are not Optuna's (three trials are not one learning curve).
    searcher.on_trial_result("t0", done(1, 50.0))
    # g0: all completed -> COMPLETE with the mean over its seeds.
    for trial_id, value in (("t0", 60.0), ("t1", 70.0), ("t2", 80.0)):
        searcher.on_trial_complete(trial_id, done(3, value))
    # g1: completed, pruned and failed -> PRUNED (one seed stopped early: the group's value is not known).
    searcher.on_trial_complete("t3", done(3, 90.0))
    searcher.on_trial_complete("t4", done(1, 10.0))
    searcher.on_trial_complete("t5", None, error=True)
    # g2: completed and failed only -> FAIL; g3: diverged and oom -> FAIL.
    searcher.on_trial_complete("t6", done(3, 90.0))
    searcher.on_trial_complete("t7", {"epoch": 1, "val_top1": -math.inf, STATUS_KEY: "diverged"})
    assert searcher.optuna_trial("t6").state == State.RUNNING  # heard only once the whole group ended
    searcher.on_trial_complete("t8", done(3, 85.0))
    searcher.on_trial_complete("t9", {"epoch": 2, "val_top1": -math.inf, STATUS_KEY: "oom"})
    searcher.on_trial_complete("t10", {"epoch": 1, "val_top1": -math.inf, STATUS_KEY: "diverged"})
    searcher.on_trial_complete("t11", None, error=True)
    first = searcher.optuna_trial("t0")
    assert first.state == State.COMPLETE and first.value == pytest.approx(70.0) and first.intermediate_values == {}
    assert [searcher.optuna_trial(f"t{3 * g}").state for g in (1, 2, 3)] == [State.PRUNED, State.FAIL, State.FAIL]
    assert [t.state for t in searcher.studies()[0].trials] == [State.COMPLETE, State.PRUNED, State.FAIL, State.FAIL]
    searcher.on_trial_complete("t0", done(3, 0.0))  # a second end of a trial is ignored
    assert searcher.optuna_trial("t0").value == pytest.approx(70.0)


def test_a_single_repeat_group_reports_intermediate_values_and_pickles(tmp_path):
    space = load_space(write_space(tmp_path, REPEATS.replace("repeats: 3", "repeats: 1")))
    searcher = CellSearcher(space)
    searcher.suggest("a")
    searcher.on_trial_result("a", done(1, 40.0))
    searcher.on_trial_result("a", {"epoch": 2, "val_top1": -math.inf, STATUS_KEY: "oom"})  # no placeholder
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))  # Ray checkpoints the searcher mid-sweep
    restored = CellSearcher(space)
    restored.restore(str(path))
    restored.on_trial_complete("a", done(1, 40.0))
    ot = restored.optuna_trial("a")
    assert ot.intermediate_values == {1: 40.0} and ot.state == State.PRUNED


CELLS = """\
name: cells
grid:
  loss: [ce, supcon]
params:
  lr: {loguniform: [1.0e-3, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}
num_samples: 4
"""


def _fake_trial(trial_id: str, cell: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={CELL_KEY: cell})  # what ASHA reads of a Ray trial


def test_asha_runs_per_cell_so_a_slow_family_is_judged_against_its_own_cell(tmp_path):
    """CE learns far faster than SupCon: one ASHA over both cells would stop every SupCon trial."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    space = load_space(write_space(tmp_path, CELLS))
    per_cell = CellASHA(space)
    one = ASHAScheduler(time_attr="epoch", metric="val_top1", mode="max", max_t=4, grace_period=1,
                        reduction_factor=2)
    trials = {"ce1": (0, 90.0), "ce2": (0, 80.0), "ce3": (0, 70.0), "sc1": (1, 20.0), "sc2": (1, 30.0),
              "sc3": (1, 10.0)}
    decisions = {}
    for scheduler, name in ((per_cell, "cell"), (one, "one")):
        for trial_id, (cell, value) in trials.items():
            trial = _fake_trial(trial_id, cell)
            scheduler.on_trial_add(None, trial)
            decisions[name, trial_id] = scheduler.on_trial_result(None, trial, done(1, value))
    stop, go = TrialScheduler.STOP, TrialScheduler.CONTINUE
    assert [decisions["one", t] for t in ("sc1", "sc2", "sc3")] == [stop, stop, stop]
    assert [decisions["cell", t] for t in ("sc1", "sc2", "sc3")] == [go, go, stop]  # ASHA still acts in a cell
    assert [decisions["cell", t] for t in ("ce1", "ce2", "ce3")] == [go, stop, stop]
    assert sorted(per_cell.by_cell) == [0, 1]
    assert per_cell.debug_string() == "ASHA per grid cell (2 cells): 3 trials stopped early"
    # A later trial of a cell is judged against that cell's rung only.
    late = _fake_trial("sc4", 1)
    per_cell.on_trial_add(None, late)
    assert per_cell.on_trial_result(None, late, done(1, 25.0)) == go  # above SupCon's cutoff, far below CE's


def test_seeds_wait_at_a_rung_then_resume_or_stop_together(tmp_path):
    """CellASHA with repeats: 2, as Ray's controller calls it: PAUSE, then resume or stop_trial."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    space = load_space(write_space(tmp_path, CELLS + "repeats: 2\n"))
    scheduler = CellASHA(space)
    trials = {t: SimpleNamespace(trial_id=t, config={CELL_KEY: 0, "group": t[0]}, status=Trial.RUNNING,
                                 is_saving=False, last_result=None) for t in ("a0", "a1", "b0", "b1")}
    stopped = []

    def stop_trial(trial):
        stopped.append(trial.trial_id)
        trial.status = Trial.TERMINATED

    controller = SimpleNamespace(get_trials=lambda: list(trials.values()), stop_trial=stop_trial)
    for trial in trials.values():
        scheduler.on_trial_add(controller, trial)
    assert scheduler.on_trial_result(controller, trials["a0"], done(1, 90.0)) == TrialScheduler.PAUSE
    trials["a0"].status = Trial.PAUSED
    assert scheduler.choose_trial_to_run(controller) is None  # a1 is still running: a0 waits
    assert scheduler.on_trial_result(controller, trials["a1"], done(1, 70.0)) == TrialScheduler.CONTINUE
    assert scheduler.choose_trial_to_run(controller) is trials["a0"]  # its group goes on
    trials["a0"].status = Trial.RUNNING
    assert scheduler.on_trial_result(controller, trials["b0"], done(1, 60.0)) == TrialScheduler.PAUSE
    trials["b0"].is_saving = True  # Ray is still writing b0's pause checkpoint ...
    assert scheduler.on_trial_result(controller, trials["b1"], done(1, 50.0)) == TrialScheduler.STOP
    assert stopped == []  # ... so b0 is stopped once paused (or the store would record it without its epoch)
    trials["b0"].status, trials["b0"].is_saving = Trial.PAUSED, False
    assert scheduler.choose_trial_to_run(controller) is None and stopped == ["b0"]
    assert scheduler.debug_string() == "ASHA per grid cell (1 cells): 2 trials stopped early, 2 waits for sibling seeds"
