"""The trial store on real Parquet files in tmp_path (no mocks)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.store_rows import epoch, trial
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig, field_types
from tune_schane.store import SCHEMA_VERSION, TRIAL_STATUSES, TrialStore, check_name
from tune_schane.store._schema import ADDED_COLUMNS, EPOCH_METRICS, trials_schema

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_trials_round_trip(tmp_path):
    store = TrialStore(tmp_path / "store")
    path = store.write_trials([trial(), trial(trial_id="t2", status="oom", error="CUDA out of memory")])
    assert path is not None and Path(path).parent == tmp_path / "store" / "trials"
    assert Path(path).name.startswith("part-") and path.endswith(".parquet")
    df = store.load_trials()
    assert list(df["trial_id"]) == ["t1", "t2"]
    row = df.iloc[0]
    assert row["status"] == "completed" and pd.isna(row["error"])
    assert row["config_loss"] == "schane" and row["config_batch_size"] == 128
    assert row["config_beta"] == 2.0 and pd.isna(row["config_lam"]) and pd.isna(row["config_shots"])
    assert not row["config_pretrained"]
    assert row["best_objective"] == 0.81 and row["epochs_run"] == 3 and row["resources_gpu"] == 0.25
    assert json.loads(row["versions"]) == {"torch": "2.14.1"}
    assert json.loads(row["params"]) == {"beta": 2.0, "loss": "schane"}
    assert df.iloc[1]["error"] == "CUDA out of memory"
    # stable dtypes whatever the nulls: ints stay Int64, bools boolean
    assert df["config_shots"].dtype == "Int64" and df["config_batch_size"].dtype == "Int64"
    assert df["config_pretrained"].dtype == "boolean" and df["written_at"].dtype == "datetime64[us, UTC]"


def test_config_columns_flat_or_nested(tmp_path):
    store = TrialStore(tmp_path)
    flat = {"sweep_id": "s", "trial_id": "t", "status": "running", "config_batch_size": 32}
    store.write_trials([flat, {"sweep_id": "s", "trial_id": "u", "status": "running", "config": TrialConfig()}])
    df = store.load_trials()
    assert list(df["config_batch_size"]) == [32, TrialConfig().batch_size]
    with pytest.raises(ValueError, match="both nested"):
        store.write_trials([{**flat, "config": {"batch_size": 16}}])
    with pytest.raises(ValueError, match="config_no_such_field"):
        store.write_trials([{**trial(), "config": {"no_such_field": 1}}])


def test_epochs_round_trip_keeps_nan_and_extra_metrics(tmp_path):
    store = TrialStore(tmp_path)
    store.write_epochs([
        epoch(n=1, val_top1=0.5, train_loss=2.0, valid_anchors=128, lr=1e-3),
        epoch(n=2, val_top1=0.6, train_loss=float("nan"), ray_iteration=2, note="text"),
    ])  # fmt: skip
    df = store.load_epochs()
    assert list(df["epoch"]) == [1, 2] and list(df["val_top1"]) == [0.5, 0.6]
    assert df.loc[0, "valid_anchors"] == 128.0 and df["valid_anchors"].dtype == "float64"
    assert math.isnan(df.loc[1, "train_loss"])  # a diverged epoch keeps its NaN loss
    assert pd.isna(df.loc[0, "extra_metrics"])
    assert json.loads(df.loc[1, "extra_metrics"]) == {"ray_iteration": 2.0}  # non-numbers dropped
    assert list(df.columns) == ["sweep_id", "trial_id", "epoch", "written_at", *EPOCH_METRICS, "extra_metrics"]


def test_files_readable_with_plain_pyarrow_and_pandas(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial()])
    store.write_trials([trial(trial_id="t2")])
    store.write_epochs([epoch(val_top1=0.5)])
    df = pd.read_parquet(tmp_path / "trials")
    assert sorted(df["trial_id"]) == ["t1", "t2"]
    assert pd.read_parquet(tmp_path / "epochs")["val_top1"].tolist() == [0.5]
    schema = pq.read_schema(next((tmp_path / "trials").glob("part-*.parquet")))
    assert schema.metadata[b"tune_schane.schema_version"] == str(SCHEMA_VERSION).encode()
    assert schema.metadata[b"tune_schane.table"] == b"trials"
    expected = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    for name, base in field_types().items():
        assert schema.field(f"config_{name}").type == expected[base]
    documented = {
        "sweep_id": pa.string(), "trial_id": pa.string(), "status": pa.string(), "error": pa.string(),
        "objective_name": pa.string(), "objective_mode": pa.string(), "best_objective": pa.float64(),
        "final_objective": pa.float64(), "epochs_run": pa.int64(), "wall_seconds": pa.float64(),
        "resources_cpu": pa.float64(), "resources_gpu": pa.float64(), "node": pa.string(),
        "versions": pa.string(), "commit": pa.string(), "params": pa.string(),
        "written_at": pa.timestamp("us", tz="UTC"),
        "stage": pa.string(), "confirm_job": pa.string(), "val_from": pa.string(), "val_images": pa.int64(),
        "test_top1": pa.float64(), "test_top5": pa.float64(), "test_loss": pa.float64(), "test_e2e_top1": pa.float64(),
        "test_epoch": pa.int64(), "test_images": pa.int64(), "test_epoch_pick": pa.string(), "steps_run": pa.int64(),
        "samples_seen": pa.int64(),
    }  # fmt: skip
    for name, dtype in documented.items():
        assert schema.field(name).type == dtype, name
    assert set(schema.names) == set(documented) | {f"config_{n}" for n in field_types()}


def test_resume_rewrite_keeps_last_row(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial(status="running", best_objective=0.2, epochs_run=1)])
    store.write_epochs([epoch(n=1, val_top1=0.2), epoch(n=2, val_top1=0.3)])
    store.write_trials([trial(status="completed", best_objective=0.9, epochs_run=3)])
    store.write_epochs([epoch(n=2, val_top1=0.35), epoch(n=3, val_top1=0.4)])
    df = store.load_trials()
    assert len(df) == 1 and df.loc[0, "status"] == "completed" and df.loc[0, "best_objective"] == 0.9
    assert store.load_epochs()["val_top1"].tolist() == [0.2, 0.35, 0.4]
    assert len(pd.read_parquet(tmp_path / "trials")) == 2  # nothing rewritten: both rows are on disk


def test_last_written_means_latest_written_at(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial(best_objective=0.9, written_at=T0 + timedelta(hours=1))])
    store.write_trials([trial(best_objective=0.1, written_at=T0)])  # older row, written later
    assert store.load_trials().loc[0, "best_objective"] == 0.9
    with pytest.raises(ValueError, match="timezone-aware"):
        store.write_trials([trial(written_at=datetime(2025, 1, 1))])


def test_sweeps_are_separable(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial("a", "t1"), trial("a", "t2", status="pruned"), trial("b", "t1", "diverged")])
    store.write_epochs([epoch("a", "t1", val_top1=0.1), epoch("b", "t1", val_top1=0.9)])
    assert store.load_trials("a")["trial_id"].tolist() == ["t1", "t2"]
    assert store.load_trials("b")["status"].tolist() == ["diverged"]
    assert store.load_epochs("b")["val_top1"].tolist() == [0.9]
    missing = store.load_trials("nope")
    assert missing.empty and list(missing.columns) == list(store.load_trials().columns)
    sweeps = store.sweeps().set_index("sweep_id")
    assert sweeps.loc["a", "n_trials"] == 2 and sweeps.loc["a", "n_completed"] == 1
    assert sweeps.loc["a", "n_pruned"] == 1 and sweeps.loc["b", "n_diverged"] == 1
    assert set(f"n_{s}" for s in TRIAL_STATUSES) <= set(sweeps.columns)
    assert (sweeps["first_written_at"] <= sweeps["last_written_at"]).all()


def test_empty_or_missing_store(tmp_path):
    store = TrialStore(tmp_path / "nothing-here")
    assert not store.exists()
    trials, epochs = store.load_trials(), store.load_epochs()
    assert trials.empty and list(trials.columns) == trials_schema().names
    assert epochs.empty and "val_top1" in epochs.columns
    assert store.sweeps().empty and "n_trials" in store.sweeps().columns
    assert store.write_trials([]) is None and store.write_epochs([]) is None
    assert not (tmp_path / "nothing-here").exists()
    store.write_epochs([epoch()])
    assert store.exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        TrialStore(tmp_path / "a-file").load_trials()


def test_tmp_partial_file_ignored(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial()])
    assert not list((tmp_path / "trials").glob(".tmp-*"))  # a finished write leaves no temporary file
    (tmp_path / "trials" / ".tmp-part-20250101T000000000000Z-dead.parquet").write_bytes(b"PAR1 half a fi")
    (tmp_path / "trials" / "notes.txt").write_text("not a part file")
    assert store.load_trials()["trial_id"].tolist() == ["t1"]
    (tmp_path / "trials" / "notes.txt").unlink()
    assert len(pd.read_parquet(tmp_path / "trials")) == 1  # plain pandas skips hidden files too


def test_corrupt_part_file_named_and_store_untouched(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial()])
    store.write_epochs([epoch()])
    bad = tmp_path / "trials" / "part-20990101T000000000000Z-bad.parquet"
    bad.write_bytes(os.urandom(256))
    before = digest(tmp_path)
    with pytest.raises(BadInput, match=str(bad)):
        store.load_trials()
    with pytest.raises(BadInput, match=str(bad)):
        store.sweeps()
    with pytest.raises(BadInput, match=str(bad)):
        store.load_epochs()  # epochs are filtered by the current trial rows, so they need that table too
    assert digest(tmp_path) == before


def test_foreign_parquet_file_refused(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial()])
    foreign = tmp_path / "trials" / "part-foreign.parquet"
    pq.write_table(pa.table({"sweep_id": ["s1"], "x": [1]}), foreign)
    with pytest.raises(BadInput, match="not a tune-schane part file") as info:
        store.load_trials()
    assert str(foreign) in str(info.value)


def test_schema_version_mismatch_refused(tmp_path):
    store = TrialStore(tmp_path)
    path = store.write_trials([trial()])
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"tune_schane.schema_version": str(SCHEMA_VERSION + 1).encode()}
    future = tmp_path / "trials" / "part-future.parquet"
    pq.write_table(table.replace_schema_metadata(meta), future)
    with pytest.raises(BadInput, match=f"schema version {SCHEMA_VERSION + 1}") as info:
        store.load_trials()
    assert str(future) in str(info.value)


def test_epochs_file_in_trials_folder_refused(tmp_path):
    store = TrialStore(tmp_path)
    path = store.write_epochs([epoch()])
    (tmp_path / "trials").mkdir()
    os.replace(path, tmp_path / "trials" / Path(path).name)
    with pytest.raises(BadInput, match="expected 'trials'"):
        store.load_trials()


def test_config_field_added_later_reads_as_null(tmp_path):
    """A part file written before a TrialConfig field existed still reads (the column is null)."""
    store = TrialStore(tmp_path)
    path = store.write_trials([trial()])
    old = pq.read_table(path).drop_columns(["config_layer_decay"])
    old = old.append_column("config_removed_field", pa.array([7]))
    os.remove(path)
    pq.write_table(old, tmp_path / "trials" / "part-old.parquet")
    df = store.load_trials()
    assert pd.isna(df.loc[0, "config_layer_decay"]) and df.loc[0, "config_removed_field"] == 7


def test_columns_added_later_read_as_null(tmp_path):
    """Part files written before the stage/test columns or the protocols' e2e_*, eval_seconds, test_e2e_top1 read."""
    store = TrialStore(tmp_path)
    for table, path, added in (("trials", store.write_trials([trial()]), ADDED_COLUMNS["trials"]),
                               ("epochs", store.write_epochs([epoch(val_top1=0.5)]), ADDED_COLUMNS["epochs"])):
        old = pq.read_table(path).drop_columns(list(added))
        os.remove(path)
        pq.write_table(old, tmp_path / table / "part-old.parquet")
    store.write_epochs([epoch(trial_id="t2", val_top1=0.7, e2e_top1=0.6, eval_seconds=1.5)])
    trials, epochs = store.load_trials(), store.load_epochs().sort_values("trial_id")
    assert pd.isna(trials.loc[0, "test_e2e_top1"]) and pd.isna(trials.loc[0, "stage"])
    assert epochs["val_top1"].tolist() == [0.5, 0.7] and epochs["e2e_top1"].isna().tolist() == [True, False]
    assert epochs["eval_seconds"].tolist()[1] == 1.5
    assert {"e2e_top1", "e2e_top5", "e2e_loss", "eval_seconds"} <= set(ADDED_COLUMNS["epochs"]) <= set(EPOCH_METRICS)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".hidden", "", "..", "a\x00b", "tab\there", "x" * 201])
def test_check_name_refuses_escaping_names(name):
    with pytest.raises(BadInput, match="sweep"):
        check_name("sweep", name)


def test_check_name_accepts_ordinary_ids():
    for name in ("sweep-2025-01-01T12:00", "trial_00042", "schane b=0.5", "a.b"):
        assert check_name("trial", name) == name


def test_file_uri(tmp_path):
    uri = (tmp_path / "store").as_uri()
    assert uri.startswith("file://")
    store = TrialStore(uri)
    path = store.write_trials([trial()])
    assert Path(path).is_file()
    assert TrialStore(uri).load_trials()["trial_id"].tolist() == ["t1"]
    assert TrialStore(tmp_path / "store").load_trials()["trial_id"].tolist() == ["t1"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (trial(status="done"), "status 'done'"),
        ({**trial(), "status": None}, "status is required"),
        ({k: v for k, v in trial().items() if k != "sweep_id"}, "sweep_id is required"),
        ({k: v for k, v in trial().items() if k != "trial_id"}, "trial_id is required"),
        (trial(sweep="../up"), "sweep_id"),
        (trial(objective_mode="maximise"), "objective_mode"),
        (trial(epochs_run=2.0), "epochs_run must be int64"),
        (trial(best_objective="0.9"), "best_objective must be double"),
        (trial(config={"pretrained": 1}), "config_pretrained must be bool"),
        (trial(colour="red"), "unknown column"),
    ],
)
def test_invalid_trial_rows_write_nothing(tmp_path, row, message):
    store = TrialStore(tmp_path)
    with pytest.raises(ValueError, match=message):
        store.write_trials([trial(trial_id="ok"), row])  # one bad row: the whole batch is refused
    assert not any(tmp_path.rglob("*.parquet"))
    assert store.load_trials().empty


def test_every_status_accepted(tmp_path):
    store = TrialStore(tmp_path)
    store.write_trials([trial(trial_id=f"t{i}", status=s) for i, s in enumerate(TRIAL_STATUSES)])
    assert sorted(store.load_trials()["status"]) == sorted(TRIAL_STATUSES)


def test_invalid_epoch_rows_write_nothing(tmp_path):
    store = TrialStore(tmp_path)
    for row, message in [
        (epoch(n=0), "1-based"),
        (epoch(val_top1="high"), "val_top1"),
        ({"sweep_id": "s", "trial_id": "t"}, "epoch is required"),
    ]:
        with pytest.raises(ValueError, match=message):
            store.write_epochs([epoch(), row])
    assert not any(tmp_path.rglob("*.parquet"))


def test_space_text_round_trips_and_is_absent_for_unknown_sweeps(tmp_path):
    store = TrialStore(tmp_path / "store")
    assert store.read_space("s1") is None
    store.write_space("s1", "name: demo\n")
    assert store.read_space("s1") == "name: demo\n"
    with pytest.raises(BadInput):
        store.write_space("../escape", "x")


def test_epochs_of_a_superseded_longer_attempt_are_hidden(tmp_path):
    """A trial re-run after a driver restart ends at epoch 1; the first attempt had written 3 epochs."""
    store = TrialStore(tmp_path / "store")
    store.write_epochs([{"sweep_id": "s", "trial_id": "t", "epoch": e, "val_top1": 10.0 * e} for e in (1, 2, 3)])
    store.write_epochs([{"sweep_id": "s", "trial_id": "t", "epoch": 1, "val_top1": 12.0},
                        {"sweep_id": "s", "trial_id": "u", "epoch": 1, "val_top1": 5.0}])  # u: no trial row yet
    row = {"sweep_id": "s", "trial_id": "t", "status": "pruned", "epochs_run": 1, "config": {}}
    store.write_trials([row])
    epochs = store.load_epochs("s")
    assert list(zip(epochs["trial_id"], epochs["epoch"], epochs["val_top1"], strict=True)) == [
        ("t", 1, 12.0), ("u", 1, 5.0)]
