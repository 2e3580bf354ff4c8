"""A trial that ended within the second between Ray's last snapshot and a driver kill (no Ray cluster).

Ray snapshots the searcher with its experiment state about once a second. A trial handed out and
ended inside that window is in the store but not in the snapshot; the restored searcher must book it
(its config counts against the budget, its study hears it) or the resumed sweep runs one trial too
many. Replayed by hand here: save, hand out and end one more trial, write its row, restore.
"""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest

from tune_schane.finetune.config import TrialConfig
from tune_schane.space import load_space
from tune_schane.store import TrialStore
from tune_schane.store.records import trial_row

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune import CONFIG_KEY, STATUS_KEY, CellSearcher  # noqa: E402

SPACE = """\
name: ghost
fixed: {model: test_vit, dataset: digits, img_size: 16}
grid: {loss: [ce, clce]}
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: clce}}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 3
repeats: REPEATS
resources: {cpu: 1}
"""


def _row(store: TrialStore, trial_id: str, suggestion: dict, status: str, values: list[float]) -> None:
    history = [{"epoch": e, "val_top1": v} for e, v in enumerate(values, start=1)]
    store.write_trials([trial_row(sweep_id="sw", trial_id=trial_id, status=status,
                                  config=TrialConfig.from_dict(suggestion[CONFIG_KEY]), history=history,
                                  params=suggestion["params"])])


def _drain(searcher: CellSearcher, prefix: str) -> list[dict]:
    out = []
    while (suggestion := searcher.suggest(f"{prefix}{len(out)}")) not in (None, CellSearcher.FINISHED):
        out.append(suggestion)
    return out


@pytest.mark.parametrize("repeats", [1, 2])
@pytest.mark.parametrize("storage", [False, True])
def test_a_trial_ended_after_the_last_snapshot_is_booked_not_run_again(tmp_path, repeats, storage):
    (tmp_path / "space.yaml").write_text(SPACE.replace("REPEATS", str(repeats)))
    space = load_space(tmp_path / "space.yaml")
    if storage:
        space = dataclasses.replace(space, optuna_storage=f"sqlite:///{tmp_path}/studies.db")
    store = TrialStore(tmp_path / "store")
    searcher = CellSearcher(space, "sw", str(tmp_path / "store"))
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", {"epoch": 3, "val_top1": 50.0, STATUS_KEY: "running"})
    _row(store, "a", first, "completed", [40.0, 45.0, 50.0])
    searcher.save(str(tmp_path / "snapshot.pkl"))  # Ray's last experiment snapshot

    ghost = searcher.suggest("ghost")  # handed out, stopped by ASHA at epoch 1, recorded ... then the kill
    searcher.on_trial_complete("ghost", {"epoch": 1, "val_top1": 10.0, STATUS_KEY: "running"})
    _row(store, "ghost", ghost, "pruned", [10.0])

    restored = CellSearcher(space, "sw", str(tmp_path / "store"))
    restored.restore(str(tmp_path / "snapshot.pkl"))
    assert "ghost" in restored.assignments
    rest = _drain(restored, "r")
    assert len(rest) == space.total_trials() - 2  # a and the ghost ran; without booking: one more
    handed = [json.dumps(s["params"], sort_keys=True) + str(s["repeat"]) for s in rest]
    assert json.dumps(ghost["params"], sort_keys=True) + str(ghost["repeat"]) not in handed
    if repeats == 2:  # the ghost was the second seed of a's config: taken off the queue, never run again
        assert ghost["params"] == first["params"] and all(s["params"] != first["params"] for s in rest)
    else:  # its own group, and the cell's study heard it as pruned, with the ghost's config
        assert all(s["params"] != ghost["params"] for s in rest)  # the sampler does not draw it again
        study = restored.searchers[ghost["cell"]].study
        told = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
        assert [t.params for t in told] == [{k: v for k, v in ghost["params"].items() if k != "loss"}]


def test_a_told_trial_whose_row_died_with_the_driver_is_written_from_its_folder_and_booked(tmp_path):
    """Ray tells the searcher a trial ended before the store callback writes its row: a kill inside that
    write, for a trial started after the last snapshot, leaves it told in the study, unknown to Ray and
    without a row. The resume writes the row from the trial's latest checkpoint (status from the study,
    params from the study and the cell), then the restored searcher books it: no replacement is sampled."""
    from tune_schane.finetune.config import dump_config
    from tune_schane.finetune.outcomes import CONFIG_FILE, HISTORY_FILE
    from tune_schane.ray_tune._recording import record_told_trials

    (tmp_path / "space.yaml").write_text(SPACE.replace("REPEATS", "1"))
    space = dataclasses.replace(load_space(tmp_path / "space.yaml"), optuna_storage=f"sqlite:///{tmp_path}/s.db")
    store = TrialStore(tmp_path / "store")
    searcher = CellSearcher(space, "sw", str(tmp_path / "store"))
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", {"epoch": 3, "val_top1": 50.0, STATUS_KEY: "running"})
    _row(store, "a", first, "completed", [40.0, 45.0, 50.0])
    searcher.save(str(tmp_path / "snapshot.pkl"))

    ghost = searcher.suggest("ghost")  # ran one epoch, ASHA stopped it, the study heard ... then the kill
    searcher.on_trial_complete("ghost", {"epoch": 1, "val_top1": 10.0, STATUS_KEY: "running"})
    checkpoint = tmp_path / "ray" / "sw" / "trial_ghost" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)  # what the trial wrote beside its state (Trial.write_outputs)
    dump_config(TrialConfig.from_dict(ghost[CONFIG_KEY]).resolved(), checkpoint / CONFIG_FILE)
    (checkpoint / HISTORY_FILE).write_text(json.dumps([{"epoch": 1.0, "val_top1": 10.0}]))
    (checkpoint.parent / "params.json").write_text('{"trial_config": {"lo')  # the driver's file, cut by the kill
    assert "ghost" not in set(store.load_trials("sw")["trial_id"])

    assert record_told_trials(str(tmp_path / "ray" / "sw"), str(tmp_path / "store"), "sw", space) == 1
    assert record_told_trials(str(tmp_path / "ray" / "sw"), str(tmp_path / "store"), "sw", space) == 0
    row = store.load_trials("sw").set_index("trial_id").loc["ghost"]
    assert row["status"] == "pruned" and row["epochs_run"] == 1 and row["best_objective"] == 10.0
    assert json.loads(row["params"]) == ghost["params"] and row["config_lr"] == ghost[CONFIG_KEY]["lr"]

    restored = CellSearcher(space, "sw", str(tmp_path / "store"))
    restored.restore(str(tmp_path / "snapshot.pkl"))
    assert "ghost" in restored.assignments
    rest = _drain(restored, "r")
    assert len(rest) == space.total_trials() - 2  # a and the ghost ran; without the row: one more
    for searcher_of_cell in restored.searchers:  # every study trial is a store row or still to run
        told = searcher_of_cell.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED))
        assert all(set(t.user_attrs["ray_trial_ids"]) <= {"a", "ghost"} for t in told)
