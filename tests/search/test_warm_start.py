"""Warm starts between neighbouring grid cells and per-cell patience (tune_schane/search/cell_sharing.py).

The searcher is driven as Ray's controller drives it (``suggest``, ``on_trial_complete``), with real
Optuna studies and no cluster: each test fixes what the trials "score" and reads what was handed out.
"""

from __future__ import annotations

import math
import textwrap

import pytest

from tune_schane.finetune.optim import scaled_lr
from tune_schane.search.cell_sharing import CellSharing, carried, neighbours
from tune_schane.space import load_space

ray_tune = pytest.importorskip("tune_schane.ray_tune")
from tune_schane.ray_tune import CONFIG_KEY, STATUS_KEY, CellSearcher  # noqa: E402

GRID = """\
name: warm
fixed: {model: test_vit, dataset: digits}
grid:
  batch_size: [16, 64, 256]
  loss: [supcon, schane, clce]
params:
  tau: {loguniform: [0.05, 0.5], when: {loss: [supcon, schane, clce]}}
  beta: {uniform: [0.0, 2.0], when: {loss: [schane, clce], batch_size: [64, 256]}}
  lam: {uniform: [0.1, 0.9], when: {loss: clce}}
  lr: {loguniform: [1.0e-3, 2.0e-2]}
lr_rule: sqrt
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0, warm_start: 2, patience: 0}
scheduler: {type: asha, max_epochs: 2, grace_period: 1, reduction_factor: 2}
num_samples: 4
"""


def space_from(tmp_path, body: str = GRID, **searcher: int):
    text = textwrap.dedent(body)
    if searcher:
        settings = ", ".join(f"{k}: {v}" for k, v in {"type": "optuna", "seed": 0, **searcher}.items())
        text = text.replace(text[text.index("searcher:"):].splitlines()[0], f"searcher: {{{settings}}}")
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path)


def finish(searcher: CellSearcher, trial_id: str, value: float | None, epochs: int = 2) -> None:
    """End a trial: completed with ``value`` at the last epoch, or (None) stopped by ASHA after one epoch."""
    if value is None:
        searcher.on_trial_complete(trial_id, {"epoch": 1, "val_top1": 10.0, STATUS_KEY: "running"})
    else:
        searcher.on_trial_complete(trial_id, {"epoch": epochs, "val_top1": value, STATUS_KEY: "running"})


def cell_of(config: dict) -> str:
    return f"{config['params']['loss']}@{config['params']['batch_size']}"


def test_neighbours_are_the_same_family_at_the_adjacent_batch_sizes(tmp_path):
    space = space_from(tmp_path)
    cells = space.cells()
    names = [f"{c['loss']}@{c['batch_size']}" for c in cells]
    got = {names[i]: sorted(names[j] for j in js) for i, js in enumerate(neighbours(cells))}
    assert got["supcon@16"] == ["supcon@64"]
    assert got["clce@64"] == ["clce@16", "clce@256"]
    assert got["schane@256"] == ["schane@64"]
    assert neighbours([{"loss": "ce"}, {"loss": "clce"}]) == [[], []]  # no batch-size axis: nothing shared


def test_carried_params_follow_the_target_cells_conditions(tmp_path):
    space = space_from(tmp_path)
    clce_64 = {"tau": 0.1, "beta": 1.5, "lam": 0.3, "lr": 0.004}
    assert carried(space, clce_64, {"batch_size": 16, "loss": "clce"}) == {"tau": 0.1, "lam": 0.3, "lr": 0.004}
    assert carried(space, clce_64, {"batch_size": 256, "loss": "clce"}) == clce_64
    assert carried(space, {"tau": 0.2, "lr": 0.01}, {"batch_size": 64, "loss": "supcon"}) == {"tau": 0.2, "lr": 0.01}


def run_until(searcher: CellSearcher, wanted, score, limit: int = 60) -> list[dict]:
    """Hand out and end trials (``score(config)``: value or None) until ``wanted(config)``; return them all."""
    configs = []
    for n in range(limit):
        config = searcher.suggest(f"t{n}")
        if not isinstance(config, dict):
            break
        configs.append(config)
        if wanted(config):
            return configs
        finish(searcher, f"t{n}", score(config))
    raise AssertionError(f"never handed out the wanted config in {len(configs)} trials")


def test_a_new_incumbent_is_run_in_each_neighbour_with_its_conditions_and_the_lr_rule(tmp_path):
    space = space_from(tmp_path)
    searcher = CellSearcher(space)
    handed = run_until(searcher, lambda c: c.get("warm_start_from") is not None,
                       lambda c: 90.0 if cell_of(c) == "clce@64" else None)
    source = next(c for c in handed if cell_of(c) == "clce@64")
    warm = handed[-1]
    assert warm["warm_start_from"] == "batch_size=64,loss=clce"
    assert cell_of(warm) in ("clce@16", "clce@256")
    params = {k: v for k, v in warm["params"].items() if k not in ("batch_size", "loss")}
    shared = {k: source["params"][k] for k in ("tau", "lam", "lr")}
    if cell_of(warm) == "clce@16":  # beta is inactive at batch 16: dropped, never sampled
        assert params == shared
    else:  # active at 256 and at 64: carried over as well
        assert params == {**shared, "beta": source["params"]["beta"]}
    # The sampled lr is the reference-batch lr: the trained lr moves by the space's sqrt rule.
    trained = scaled_lr(warm[CONFIG_KEY]["lr"], warm[CONFIG_KEY]["batch_size"], "sqrt")
    before = scaled_lr(source[CONFIG_KEY]["lr"], source[CONFIG_KEY]["batch_size"], "sqrt")
    assert trained / before == pytest.approx(math.sqrt(warm[CONFIG_KEY]["batch_size"] / 64))


def test_a_warm_start_into_a_cell_with_more_active_params_samples_the_missing_ones(tmp_path):
    space = space_from(tmp_path)
    searcher = CellSearcher(space)
    handed = run_until(searcher, lambda c: cell_of(c) == "schane@64" and c["warm_start_from"] is not None,
                       lambda c: 90.0 if cell_of(c) == "schane@16" else None)
    source = next(c for c in handed if cell_of(c) == "schane@16")
    warm = handed[-1]
    assert "beta" not in source["params"]
    assert 0.0 <= warm["params"]["beta"] <= 2.0  # active at 64: the cell's own study samples it
    assert {k: warm["params"][k] for k in ("tau", "lr")} == {k: source["params"][k] for k in ("tau", "lr")}
    assert "lam" not in warm["params"]  # and no lam outside clce, no beta for supcon anywhere
    supcon = [c["params"] for c in handed if c["params"]["loss"] == "supcon"]
    assert supcon and all("beta" not in p and "lam" not in p for p in supcon)


def test_a_cell_borrows_at_most_warm_start_configs_never_one_it_tried(tmp_path):
    space = space_from(tmp_path, warm_start=1, patience=0)
    searcher = CellSearcher(space)
    values = iter(range(50, 100))
    handed, n = [], 0
    while isinstance(config := searcher.suggest(f"t{n}"), dict):
        handed.append(config)
        finish(searcher, f"t{n}", float(next(values, 99)))  # every config beats its cell's incumbent
        n += 1
    assert len(handed) == len(space.cells()) * space.num_samples  # warm starts are samples of the budget
    for cell in {cell_of(c) for c in handed}:
        mine = [c for c in handed if cell_of(c) == cell]
        assert sum(c["warm_start_from"] is not None for c in mine) <= 1
        keys = [tuple(sorted(c["params"].items())) for c in mine]
        assert len(set(keys)) == len(keys), cell


def test_patience_stops_a_cell_only_after_it_has_an_incumbent(tmp_path):
    space = space_from(tmp_path, warm_start=0, patience=2)
    sharing = CellSharing(space)
    for _ in range(5):  # pruned or failed configs only: no incumbent, the cell keeps sampling
        sharing.ended(0, {"lr": 0.01}, None)
    assert sharing.keeps_sampling(0)
    sharing.ended(0, {"lr": 0.01}, 80.0)
    sharing.ended(0, {"lr": 0.02}, 70.0)
    assert sharing.keeps_sampling(0)
    sharing.ended(0, {"lr": 0.03}, None)
    assert not sharing.keeps_sampling(0)
    assert sharing.keeps_sampling(1)

    searcher = CellSearcher(space)  # in a sweep: the stopped cells' unused samples are never handed out
    n, handed = 0, []
    while isinstance(config := searcher.suggest(f"t{n}"), dict):
        handed.append(config)
        finish(searcher, f"t{n}", 80.0 if sum(cell_of(c) == cell_of(config) for c in handed) == 1 else None)
        n += 1
    per_cell = {cell: sum(cell_of(c) == cell for c in handed) for cell in {cell_of(c) for c in handed}}
    assert set(per_cell.values()) == {3}, per_cell  # the incumbent, then `patience` that did not beat it


@pytest.mark.parametrize("storage", [False, True])
def test_a_restored_searcher_keeps_its_warm_start_decisions(tmp_path, storage):
    """Ray restores the searcher from its snapshot on --resume: the same configs, warm starts included."""
    body = GRID + (f"optuna_storage: {tmp_path}/studies.log\n" if storage else "")
    space = space_from(tmp_path, body)

    def score(config):  # deterministic in the config: a smooth optimum, some configs stopped early
        value = 95.0 - 20 * abs(math.log10(config["params"]["lr"] / 0.005)) - config["params"]["batch_size"] / 32
        return value if value > 75 else None

    def drive(searcher, start, stop, log):
        for n in range(start, stop):
            config = searcher.suggest(f"t{n}")
            if not isinstance(config, dict):
                return
            log.append((cell_of(config), config["warm_start_from"], sorted(config["params"].items())))
            finish(searcher, f"t{n}", score(config))

    first = CellSearcher(space, sweep_id="s1")
    straight: list = []
    drive(first, 0, 40, straight)
    assert any(origin for _, origin, _ in straight), "the scenario should contain warm starts"

    space2 = space_from(tmp_path, body.replace(f"{tmp_path}/studies.log", f"{tmp_path}/studies2.log"))
    second = CellSearcher(space2, sweep_id="s1")
    resumed: list = []
    drive(second, 0, 17, resumed)
    second.save(str(tmp_path / "searcher.pkl"))
    restored = CellSearcher(space2, sweep_id="s1")
    restored.restore(str(tmp_path / "searcher.pkl"))
    drive(restored, 17, 40, resumed)
    assert resumed == straight


def test_a_warm_start_decided_after_the_last_snapshot_is_booked_on_resume_not_run_again(tmp_path):
    """The kill falls between Ray's snapshot and a warm-start trial that ended: the store has its row."""
    from tune_schane.finetune.config import TrialConfig
    from tune_schane.store import TrialStore
    from tune_schane.store.records import trial_row

    space = space_from(tmp_path, warm_start=1, patience=0)
    store = TrialStore(tmp_path / "store")
    searcher = CellSearcher(space, "sw", str(tmp_path / "store"))
    n = 0
    while not any(r.offers for r in searcher.sharing.records):  # until some cell has an offer waiting
        config = searcher.suggest(f"t{n}")
        finish(searcher, f"t{n}", 90.0 if cell_of(config) == "supcon@16" else None)
        n += 1
    searcher.save(str(tmp_path / "snapshot.pkl"))  # Ray's last snapshot: the offer is still waiting
    while (config := searcher.suggest(f"t{n}"))["warm_start_from"] is None:
        finish(searcher, f"t{n}", None)
        n += 1
    warm, warm_id = config, f"t{n}"  # handed out, ended and recorded ... then the kill
    finish(searcher, warm_id, 50.0)
    store.write_trials([trial_row(sweep_id="sw", trial_id=warm_id, status="completed",
                                  config=TrialConfig.from_dict(warm[CONFIG_KEY]), params=warm["params"],
                                  history=[{"epoch": 1, "val_top1": 40.0}, {"epoch": 2, "val_top1": 50.0}])])

    restored = CellSearcher(space, "sw", str(tmp_path / "store"))
    restored.restore(str(tmp_path / "snapshot.pkl"))
    assert warm_id in restored.assignments
    record = restored.sharing.records[space.cells().index({"batch_size": 64, "loss": "supcon"})]
    assert record.borrowed == 1 and not record.offers
    rest = []
    while isinstance(config := restored.suggest(f"r{len(rest)}"), dict):
        rest.append(config)
        finish(restored, f"r{len(rest) - 1}", None)
    assert not any(c["warm_start_from"] and cell_of(c) == "supcon@64" for c in rest)
    assert all(sorted(c["params"].items()) != sorted(warm["params"].items()) for c in rest)


def test_the_switches_default_to_the_benchmarks_choice_and_a_space_file_can_set_each(tmp_path):
    from tune_schane.space.schema import PATIENCE, STARTUP_TRIALS, WARM_START

    plain = space_from(tmp_path, GRID.replace("searcher: {type: optuna, seed: 0, warm_start: 2, patience: 0}",
                                              "searcher: {type: optuna, seed: 0}"))
    assert (plain.warm_start, plain.patience, plain.startup_trials) == (WARM_START, PATIENCE, STARTUP_TRIALS)
    assert (WARM_START, PATIENCE, STARTUP_TRIALS) == (3, 0, 3)  # docs/performance.md "Search efficiency"
    set_ = space_from(tmp_path, warm_start=0, patience=4, startup_trials=7)
    assert (set_.warm_start, set_.patience, set_.startup_trials) == (0, 4, 7)
    from tune_schane.ray_tune._optuna_search import make_cell_searcher

    assert make_cell_searcher(set_, set_.cells()[0], 0).sampler._n_startup_trials == 7
