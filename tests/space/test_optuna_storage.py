"""The cells' Optuna studies in a storage (journal file, SQLite), without a Ray cluster, and the refusals.

Ray calls the searcher from its controller and checkpoints it with ``save``/``restore``; here the
tests do the same by hand, which is how a driver killed between two searcher checkpoints is
replayed exactly: a trial told after the checkpoint is told again (it must keep its first ending), a
trial asked after it is unknown to the restored Ray (it must be handed out again, not lost).
"""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from tune_schane.cli.main import main
from tune_schane.space import load_space
from tune_schane.space.storage import absolute, study_name

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune import STATUS_KEY, CellSearcher  # noqa: E402

State = optuna.trial.TrialState

SPACE = """\
name: stored
fixed: {model: test_vit, dataset: digits, img_size: 16}
grid: {loss: [ce, supcon]}
params:
  lr: {loguniform: [1.0e-4, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 3
max_concurrent: 1
resources: {cpu: 1}
"""


def done(epoch: int, value: float) -> dict:
    return {"epoch": epoch, "val_top1": value, STATUS_KEY: "running"}


def _url(kind: str, tmp_path) -> str:
    return f"sqlite:///{tmp_path}/studies.db" if kind == "sqlite" else str(tmp_path / "journal" / "studies.log")


def _reader(url: str):
    """Optuna's own storage for ``url``, opened independently of tune_schane.space.storage."""
    if url.startswith("sqlite:"):
        return url
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_restored_searcher_neither_tells_twice_nor_loses_a_trial_asked_after_its_checkpoint(tmp_path, kind):
    (tmp_path / "space.yaml").write_text(SPACE)
    url = _url(kind, tmp_path)
    space = dataclasses.replace(load_space(tmp_path / "space.yaml"), optuna_storage=url)
    searcher = CellSearcher(space, "sw")
    first = searcher.suggest("t0")  # cell ce
    searcher.suggest("t1")  # cell supcon
    searcher.on_trial_result("t0", done(1, 50.0))
    searcher.save(str(tmp_path / "searcher.pkl"))  # Ray's searcher checkpoint
    # After the checkpoint, before the driver dies: t0 ends, t2 is asked and runs an epoch.
    searcher.on_trial_complete("t0", done(3, 70.0))
    orphan = searcher.suggest("t2")  # cell ce again (round robin)
    searcher.on_trial_result("t2", done(1, 30.0))
    del searcher

    restored = CellSearcher(space, "sw")  # what Ray unpickles, then restores from its checkpoint
    restored.restore(str(tmp_path / "searcher.pkl"))
    # Ray reruns t0 and t1 from their checkpoints; it never heard of t2, so it asks for a new trial.
    restored.on_trial_result("t0", done(1, 50.0))
    restored.on_trial_complete("t0", done(3, 71.0))  # a second ending: the first one stays
    restored.on_trial_complete("t1", done(3, 60.0))
    again = restored.suggest("t3")
    assert again["params"] == orphan["params"] and again["cell"] == orphan["cell"] == first["cell"]
    restored.on_trial_result("t3", done(1, 30.0))
    restored.on_trial_complete("t3", done(2, 35.0))  # stopped by ASHA: PRUNED
    n = 4
    while (config := restored.suggest(f"t{n}")) is not restored.FINISHED:
        restored.on_trial_complete(f"t{n}", done(3, 40.0 + n) if n % 2 else None, error=not n % 2)
        assert config["group"] == f"g{n - 1}"
        n += 1

    reader = _reader(url)
    assert sorted(optuna.get_all_study_names(reader)) == ["sw/loss=ce", "sw/loss=supcon"]
    ce = optuna.load_study(study_name=study_name("sw", {"loss": "ce"}), storage=reader)
    supcon = optuna.load_study(study_name="sw/loss=supcon", storage=reader)
    for study in (ce, supcon):  # every sampled config told once; nothing left running
        assert len(study.trials) == space.num_samples
        assert all(t.state != State.RUNNING for t in study.trials)
    t0, t2 = ce.trials[0], ce.trials[1]
    assert (t0.state, t0.value, t0.intermediate_values) == (State.COMPLETE, 70.0, {1: 50.0, 3: 70.0})
    assert t0.user_attrs["ray_trial_ids"] == ["t0"]
    assert restored.optuna_trial("t3").number == 1 and t2.params == {"lr": orphan["params"]["lr"]}
    assert (t2.state, t2.value, t2.intermediate_values) == (State.PRUNED, 35.0, {1: 30.0, 2: 35.0})
    assert t2.user_attrs["ray_trial_ids"] == ["t3"]  # the trial that really ran it
    assert supcon.trials[0].value == 60.0 and ce.user_attrs == {"sweep": "sw", "cell": "loss=ce",
                                                                "objective": "val_top1"}
    assert [t.state for t in ce.trials + supcon.trials].count(State.FAIL) >= 1


def _sweep(tmp_path, *extra: str) -> int:
    return main(["sweep", str(tmp_path / "space.yaml"), "--store", str(tmp_path / "store"),
                 "--storage", str(tmp_path / "ray"), "--num-cpus", "2", *extra])


@pytest.mark.parametrize(("case", "expected"), [
    ("folder", "is a folder"),
    ("sqlite-as-journal", "open it as sqlite:///"),
    ("not-a-url", "cannot open"),
    ("taken", "already holds study"),
    ("resume-elsewhere", "holds no study of sweep"),
    ("grid-searcher", "grid searcher"),
    ("mlflow-file-store", "--mlflow"),
])
def test_unusable_storages_and_tracking_uris_exit_2_with_one_line_before_ray(tmp_path, capsys, monkeypatch, case,
                                                                             expected):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "space.yaml").write_text(SPACE)
    db = tmp_path / "studies.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="taken/loss=ce")
    args = {
        "folder": ["--optuna-storage", str(tmp_path)],
        "sqlite-as-journal": ["--optuna-storage", str(db)],
        "not-a-url": ["--optuna-storage", "nosuchdb://host/x"],
        "taken": ["--optuna-storage", f"sqlite:///{db}", "--name", "taken"],
        "resume-elsewhere": ["--optuna-storage", f"sqlite:///{db}", "--name", "other", "--resume"],
        "grid-searcher": ["--set", "searcher.type=grid", "--set", "params.lr={choice: [0.001]}",
                          "--set", "optuna_storage=x.log"],
        "mlflow-file-store": ["--mlflow", f"file://{tmp_path}/mlruns"],
    }[case]
    (tmp_path / "ray" / "other").mkdir(parents=True)  # an interrupted sweep to resume
    before = sorted(p.name for p in tmp_path.iterdir())
    code = _sweep(tmp_path, *args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert expected in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created (no store, no storage file)


def test_relative_storages_become_absolute_for_a_driver_that_resumes_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute("runs/studies.log") == str(tmp_path / "runs" / "studies.log")
    assert absolute("sqlite:///runs/s.db?timeout=20") == f"sqlite:///{tmp_path}/runs/s.db?timeout=20"
    assert absolute("sqlite:////abs/s.db") == "sqlite:////abs/s.db"
    assert absolute("postgresql://u@host/db") == "postgresql://u@host/db"
