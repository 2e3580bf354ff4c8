"""The reading recipes of trials/README.md, run as written on a store in ./trials (compacted or not)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tune_schane.store import TrialStore
from tune_schane.store.compaction import compact

README = Path(__file__).resolve().parents[2] / "trials" / "README.md"


def recipes(language: str) -> list[str]:
    text = README.read_text().split("## Reading without tune-schane", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture(params=["uncompacted", "compacted"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = TrialStore("trials")
    for sweep in ("my-sweep", "other"):
        for i, status in enumerate(["completed", "oom", "pruned"]):
            store.write_epochs([{"sweep_id": sweep, "trial_id": f"t{i}", "epoch": e, "val_top1": float(e)}
                                for e in (1, 2)])  # fmt: skip
            store.write_trials([{"sweep_id": sweep, "trial_id": f"t{i}", "status": "running", "epochs_run": 1}])
            store.write_trials([{"sweep_id": sweep, "trial_id": f"t{i}", "status": status, "epochs_run": 2}])
    if request.param == "compacted":
        compact(store)
    return store


def pairs(frame) -> list[tuple[str, str]]:
    return sorted(zip(frame["trial_id"], frame["status"], strict=True))


def run(code: str) -> dict:
    scope: dict = {}
    exec(code, scope)
    return scope


def test_readme_has_the_recipes():
    assert len(recipes("python")) == 4 and len(recipes("sql")) == 1


def test_pandas_recipe(store):
    t = run(recipes("python")[0])["t"]
    expected = store.load_trials("my-sweep")
    assert pairs(t) == pairs(expected)


def test_pyarrow_recipe(store):
    counts = run(recipes("python")[1])["counts"]
    sweeps = store.sweeps().set_index("sweep_id")
    for (sweep, status), n in counts.items():
        assert sweeps.loc[sweep, f"n_{status}"] == n
    assert counts.sum() == sweeps["n_trials"].sum() == 6


def test_one_sweeps_files_recipe(store):
    e = run(recipes("python")[2])["e"]
    assert len(e) == len(store.read_table("epochs", "my-sweep")) == 6 and set(e["sweep_id"]) == {"my-sweep"}


def test_polars_recipe(store):
    assert sorted(run(recipes("python")[3])["t"]["trial_id"]) == ["t0", "t1", "t2"]


def test_duckdb_recipe(store):
    import duckdb

    t = duckdb.sql(recipes("sql")[0]).df()
    expected = store.load_trials("my-sweep")
    assert pairs(t) == pairs(expected)
