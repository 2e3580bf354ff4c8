"""One real sweep through the command line that writes to every tool at once (issue 15 items 3 and 4):

- the Optuna studies in SQLite (``--optuna-storage``): one study per grid cell named
  ``<sweep>/<cell>``, whose trial states, values, intermediate values and best values are the store's;
- MLflow (``--mlflow``, a local SQLite tracking store, through Ray's ``MLflowLoggerCallback``): one
  run per trial holding the objective's history;
- TensorBoard (Ray's ``TBXLoggerCallback``): an event file per trial folder holding the objective.

The store callback runs beside Ray's logger callbacks; every check reads the tools' own files with
their own readers (``optuna``, ``MlflowClient``, the TFRecord event format), never our code.
"""

from __future__ import annotations

import struct
import textwrap

import pytest

from tune_schane.cli.main import main
from tune_schane.store import TrialStore

pytest.importorskip("tune_schane.ray_tune")
optuna = pytest.importorskip("optuna")
mlflow_tracking = pytest.importorskip("mlflow.tracking")

# Seed 1 asks each cell's TPE (random while it starts up) for one diverging lr (1e8: FAIL) and two
# that train, so ASHA has something to compare inside each cell.
SPACE = """\
name: tools
fixed: {model: test_vit, dataset: digits, img_size: 16, shots: 12, num_threads: 1, warmup_epochs: 0,
        lr_rule: none, batch_size: 16}
grid: {loss: [ce, supcon]}
params:
  lr: {choice: [0.001, 0.01, 1.0e8]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 1}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 3
max_concurrent: 2
resources: {cpu: 1}
"""
STATES = {"completed": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL", "oom": "FAIL", "error": "FAIL"}


def tensorboard_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of one event file: TFRecords (length, crc, Event protobuf, crc), parsed with tensorboardX's protos."""
    from tensorboardX.proto import event_pb2

    data, offset, scalars = path.read_bytes(), 0, {}
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def assert_curve(got: list[tuple[int, float]], want: list[tuple[int, float]], rel: float = 1e-9) -> None:
    assert [step for step, _ in sorted(got)] == [step for step, _ in want]
    assert [value for _, value in sorted(got)] == pytest.approx([value for _, value in want], rel=rel)


@pytest.mark.slow
def test_sweep_writes_optuna_studies_mlflow_runs_and_tensorboard_files_matching_the_store(tmp_path, capsys, local_ray):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    studies, tracking = f"sqlite:///{tmp_path}/studies.db", f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["sweep", str(space), "--name", "tools-1", "--store", str(tmp_path / "store"),
                 "--storage", str(tmp_path / "ray"), "--num-cpus", "2", "--optuna-storage", studies,
                 "--mlflow", tracking])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert f"optuna-dashboard {studies}" in out and f"tensorboard --logdir {tmp_path}/ray/tools-1" in out
    trials = TrialStore(tmp_path / "store").load_trials("tools-1").set_index("trial_id")
    epochs = TrialStore(tmp_path / "store").load_epochs("tools-1")
    assert len(trials) == 6
    assert {"completed", "diverged"} <= set(trials["status"]), trials["status"]
    history = {tid: [(int(e.epoch), float(e.val_top1)) for e in epochs[epochs["trial_id"] == tid]
                     .sort_values("epoch").itertuples()] for tid in trials.index}

    # Optuna: one study per cell; every trial's state, value and curve are the store's.
    assert sorted(optuna.get_all_study_names(studies)) == ["tools-1/loss=ce", "tools-1/loss=supcon"]
    told = set()
    for loss in ("ce", "supcon"):
        study = optuna.load_study(study_name=f"tools-1/loss={loss}", storage=studies)
        assert study.user_attrs == {"sweep": "tools-1", "cell": f"loss={loss}", "objective": "val_top1"}
        assert len(study.trials) == 3
        for ot in study.trials:
            (trial_id,) = ot.user_attrs["ray_trial_ids"]
            row = trials.loc[trial_id]
            told.add(trial_id)
            assert row["config_loss"] == loss and row["config_lr"] == ot.params["lr"]
            assert ot.state.name == STATES[row["status"]], (trial_id, row["status"])
            assert ot.intermediate_values == dict(history[trial_id])
            if row["status"] == "completed":
                assert ot.value == pytest.approx(row["final_objective"])
        completed = trials[(trials["config_loss"] == loss) & (trials["status"] == "completed")]
        assert study.best_value == pytest.approx(completed["final_objective"].max())
    assert told == set(trials.index)

    # MLflow: one run per trial, the objective's history at step = epoch.
    client = mlflow_tracking.MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("tools-1")
    runs = client.search_runs([experiment.experiment_id])
    by_trial = {next(t for t in trials.index if run.data.tags["trial_name"].endswith(t)): run for run in runs}
    assert len(runs) == 6 and set(by_trial) == set(trials.index)
    for trial_id, run in by_trial.items():
        assert run.data.tags["sweep"] == "tools-1"
        assert float(run.data.params["trial_config/lr"]) == trials.loc[trial_id, "config_lr"]
        logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_top1")]
        assert_curve(logged, history[trial_id])  # a stopped trial's -inf placeholder is not logged
        assert run.info.status == ("FAILED" if trials.loc[trial_id, "status"] in ("diverged", "oom", "error")
                                   else "FINISHED")

    # TensorBoard: one event file per trial folder, holding the objective per epoch.
    for trial_id in trials.index:
        (events,) = (tmp_path / "ray" / "tools-1" / f"trial_{trial_id}").glob("events.out.tfevents.*")
        curve = tensorboard_scalars(events).get("ray/tune/val_top1", [])
        assert_curve(curve, history[trial_id], rel=1e-6)  # float32 in the event file; no -inf placeholder
