"""The partitioned layout and compaction of the trial store, on real files (tune_schane/store/compaction.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from tune_schane.cli.main import main
from tune_schane.finetune.config import TrialConfig
from tune_schane.store import TrialStore, partition_dir, sweep_key
from tune_schane.store.compaction import compact, compact_finished_sweep
from tune_schane.store.records import trial_row

HISTORY = [{"epoch": 1, "val_top1": 50.0}, {"epoch": 2, "val_top1": 60.0}]


def fill(store: TrialStore, sweeps=("a", "b"), trials=3) -> None:
    """Write as the sweep callback does: per trial, its epochs then its row (one part file each)."""
    for sweep in sweeps:
        for i in range(trials):
            store.write_epochs(
                [{"sweep_id": sweep, "trial_id": f"t{i}", "epoch": e, "val_top1": 10.0 * e + i} for e in (1, 2)]
            )
            store.write_trials(
                [
                    trial_row(
                        sweep_id=sweep,
                        trial_id=f"t{i}",
                        status="completed" if i else "oom",
                        config=TrialConfig(lr=1e-3 * (i + 1)),
                        history=HISTORY,
                    )
                ]
            )


def snapshot(store: TrialStore) -> tuple:
    return (store.load_trials(), store.load_epochs(), store.sweeps(), store.load_epochs("a"))


def assert_same(before: tuple, after: tuple) -> None:
    for old, new in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(old, new)


def parts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def test_one_sweep_reads_only_its_own_files(tmp_path):
    store = TrialStore(tmp_path)
    fill(store, sweeps=("a", "b", "c"))
    files = store.files("trials").for_sweep("a")
    assert len(files) == 3 and all(f.endswith(f"-s{sweep_key('a')}.parquet") for f in files)
    (tmp_path / "trials" / Path(store.files("trials").for_sweep("b")[0]).name).write_bytes(b"garbage")
    assert store.load_trials("a")["trial_id"].tolist() == ["t0", "t1", "t2"]  # b's broken file is not read
    assert len(store.load_epochs("c")) == 6


def test_compact_merges_to_one_file_per_table_and_reads_the_same(tmp_path):
    store = TrialStore(tmp_path)
    fill(store)
    store.write_trials(
        [trial_row(sweep_id="a", trial_id="t1", status="completed", config=TrialConfig(), history=HISTORY[:1])]
    )  # a resume rewrote t1: its 2nd epoch is superseded
    before = snapshot(store)
    done = compact(store)
    assert {(c.table, c.sweep_id) for c in done} == {(t, s) for t in ("trials", "epochs") for s in ("a", "b")}
    assert_same(before, snapshot(store))
    for table in ("trials", "epochs"):
        assert [p.parent.name for p in parts(tmp_path / table)] == [partition_dir("a"), partition_dir("b")]
    assert len(pd.read_parquet(tmp_path / "trials" / partition_dir("a"))) == 4  # superseded rows kept
    assert compact(store) == []  # nothing left to merge
    fill(store, sweeps=("a",), trials=1)  # a later write lands beside the compacted file
    assert len(store.files("trials").for_sweep("a")) == 2
    assert main(["compact", "--store", str(tmp_path), "--sweep", "a"]) == 0
    assert len(store.files("trials").for_sweep("a")) == 1


def _compact_killed_at(store: Path, point: str) -> int:
    env = {**os.environ, "TUNE_SCHANE_KILL_AT": point}
    code = "import sys; from tune_schane.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "compact", "--store", str(store)], env=env, capture_output=True, timeout=120
    )
    return proc.returncode


@pytest.mark.parametrize("point", ["compact-write", "compact-moved", "compact-delete:2"])
def test_kill_9_during_compaction_loses_nothing(tmp_path, point):
    """SIGKILL with the merged file still temporary, just renamed, and half the inputs deleted."""
    store = TrialStore(tmp_path)
    fill(store)
    before = snapshot(store)
    assert _compact_killed_at(tmp_path, point) == -9
    assert_same(before, snapshot(store))
    compact(store)  # a later compaction finishes the job
    assert_same(before, snapshot(store))
    assert len(parts(tmp_path / "trials")) == 2 and len(parts(tmp_path / "epochs")) == 2


def test_compaction_beside_a_writing_sweep(tmp_path):
    """Another process writes 60 trials of sweep w (and epochs) while this one compacts again and again."""
    store = TrialStore(tmp_path)
    fill(store, sweeps=("w",), trials=1)
    writer = textwrap.dedent(f"""
        from tune_schane.store import TrialStore
        store = TrialStore({str(tmp_path)!r})
        for i in range(60):
            store.write_epochs([{{"sweep_id": "w", "trial_id": f"n{{i}}", "epoch": 1, "val_top1": float(i)}}])
            store.write_trials([{{"sweep_id": "w", "trial_id": f"n{{i}}", "status": "completed", "epochs_run": 1}}])
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        while proc.poll() is None:
            compact(store, "w")
            assert store.sweeps()["n_trials"].iloc[0] >= 1
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    compact(store, "w")
    trials, epochs = store.load_trials("w"), store.load_epochs("w")
    assert sorted(trials["trial_id"]) == sorted(["t0", *(f"n{i}" for i in range(60))])
    assert len(epochs) == 2 + 60 and len(parts(tmp_path)) == 2


def _to_old_layout(root: Path) -> None:
    """Rename every part file to the names of the previous version (no sweep key): a flat old store."""
    for path in parts(root):
        path.rename(path.with_name(path.name.split("-s")[0] + ".parquet"))


def test_old_flat_store_reads_and_compact_migrates_it(tmp_path):
    store = TrialStore(tmp_path)
    fill(store)
    store.write_trials(
        [trial_row(sweep_id=s, trial_id="both", status="error", config=TrialConfig(), history=[]) for s in ("a", "b")]
    )  # one write holding two sweeps has no key either
    before = snapshot(store)
    _to_old_layout(tmp_path)
    assert not store.files("trials").keyed and len(store.files("trials").shared) == 7
    assert_same(before, snapshot(store))
    compact(store, "a")  # any compaction migrates every unkeyed file: they may hold any sweep
    assert_same(before, snapshot(store))
    assert all(p.parent.name.startswith("sweep=") for p in parts(tmp_path)) and len(parts(tmp_path)) == 4


def test_corrupt_file_of_one_sweep_hides_no_other_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = TrialStore(tmp_path / "store")
    fill(store, sweeps=("good", "bad"))
    compact(store, "good")
    bad = Path(store.files("trials").for_sweep("bad")[1])
    bad.write_bytes(os.urandom(200))
    assert main(["status", "--store", str(tmp_path / "store")]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and "bad" in out and str(bad) in err
    sweeps = store.sweeps().set_index("sweep_id")
    assert sweeps.loc["good", "n_trials"] == 3 and pd.isna(sweeps.loc["bad", "n_trials"])
    code = main(["analyze", "--store", str(tmp_path / "store"), "--sweep", "bad", "--out", str(tmp_path / "r")])
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err_lines) == 1 and str(bad) in err_lines[0]
    with pytest.raises(Exception, match="not a readable Parquet file"):
        compact(store, "bad")  # compaction refuses too: it never drops a row it cannot read
    compact_finished_sweep(store, "bad")  # ... but the end of a sweep only warns
    assert str(bad) in capsys.readouterr().err and bad.exists()


def test_ties_in_written_at_go_to_the_later_file_before_and_after_compaction(tmp_path):
    """Same key, same microsecond, 30 writes: the last one written wins, also inside the merged file."""
    store = TrialStore(tmp_path)
    same = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i in range(30):
        store.write_trials([{"sweep_id": "s", "trial_id": "t", "status": "running", "epochs_run": i,
                             "written_at": same}])  # fmt: skip
        store.write_epochs([{"sweep_id": "s", "trial_id": "t", "epoch": 1, "val_top1": float(i), "written_at": same}])
    assert store.load_trials("s").loc[0, "epochs_run"] == 29 and store.load_epochs().loc[0, "val_top1"] == 29.0
    compact(store)
    assert store.load_trials("s").loc[0, "epochs_run"] == 29 and store.load_epochs().loc[0, "val_top1"] == 29.0


def test_a_remote_filesystem_reads_the_same_in_parallel(tmp_path):
    """A non-local pyarrow filesystem (as s3:// would be), read 16 files at a time: same frames, same refusals."""
    import fsspec  # a torch dependency: always installed
    import pyarrow.fs as pafs

    store = TrialStore(tmp_path)
    fill(store, sweeps=("a", "b"), trials=5)
    compact(store, "b")
    remote = TrialStore(tmp_path)
    remote.fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("file")))
    assert not isinstance(remote.fs, pafs.LocalFileSystem)
    assert_same(snapshot(store), snapshot(remote))
    bad = Path(store.files("trials").for_sweep("a")[3])
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(Exception, match=f"{bad}: not a readable Parquet file"):
        remote.load_trials("a")
    assert remote.load_trials("b")["trial_id"].tolist() == [f"t{i}" for i in range(5)]
