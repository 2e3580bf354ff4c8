"""Search spaces: the shipped files, define-by-run with real Optuna, grids, resources and refusals.

No Ray here: the space module compiles to neutral pieces, so everything is checked with plain Optuna
(``study.ask()`` / ``study.tell()``, which is what Ray's OptunaSearch does underneath).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import optuna
import pytest

from tune_schane.errors import BadInput
from tune_schane.space import SearchSpace, builtin_spaces, default_space_path, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAMILY_PARAMS = {"ce": set(), "supcon": {"tau"}, "schane": {"tau", "beta"}, "clce": {"tau", "beta", "lam"}}

BASE = """\
name: t
fixed: {model: test_vit, dataset: digits, img_size: 16}
params:
  loss: {choice: [ce, supcon, schane, clce]}
  tau: {loguniform: [0.05, 0.5], when: {loss: [supcon, schane, clce]}}
  beta: {uniform: [0.0, 4.0], when: {loss: [schane, clce]}}
  lam: {uniform: [0.1, 0.9], when: {loss: clce}}
  lr: {loguniform: [1e-4, 1e-2]}
  batch_size: {choice: [16, 32]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 3, grace_period: 1, reduction_factor: 2}
num_samples: 4
max_concurrent: 1
resources: {cpu: 1, gpu: 0}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def base_with(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


def loaded(tmp_path: Path, text: str = BASE) -> SearchSpace:
    return load_space(write(tmp_path, text))


# ---------------------------------------------------------------------------------- shipped spaces
def test_every_shipped_space_loads_and_makes_valid_trial_configs():
    paths = builtin_spaces()
    assert {p.name for p in paths} >= {"default.yaml", "batch_size_ablation.yaml", "vit_cifar100_gpu.yaml"}
    assert default_space_path() in paths
    for path in paths:
        space = load_space(path)
        assert space.source == path.read_text() and space.path == str(path)
        assert space.summary().startswith(f"space {space.name}")
        for cell in space.cells():
            config = space.trial_config(_random_draws(space, cell, 1)[0], cell)
            assert config.epochs == space.max_epochs
            assert {k: getattr(config, k) for k in cell} == cell


def test_shipped_space_shapes():
    default = load_space(default_space_path())  # the real regime: pretrained, few-shot Fashion-MNIST, confirmed
    assert len(default.cells()) == 8 and default.cells()[0] == {"loss": "ce", "batch_size": 16}  # one TPE each
    assert default.fixed["model"] == "mobilenetv2_100" and default.fixed["pretrained"] is True
    assert default.fixed["dataset"] == "fashion_mnist" and default.fixed["num_threads"] == 1
    assert default.budget == {"unit": "steps", "value": 36, "reports": 3} and default.confirm["seeds"] == 3
    toy = load_space(default_space_path().with_name("digits.yaml"))
    assert len(toy.cells()) == 12 and toy.fixed["model"] == "test_vit" and toy.grid["batch_size"] == [16, 32, 64]
    assert toy.resources_for(64) == {"cpu": 1.0, "gpu": 0.0}
    negatives = load_space(default_space_path().with_name("study_negatives.yaml"))
    batch = load_space(default_space_path().with_name("study_batch.yaml"))
    assert len(negatives.cells()) == 12 and len(batch.cells()) == 15
    assert negatives.fixed["batch_size"] == 64 and negatives.fixed["negatives"] == "group"
    assert negatives.budget == batch.budget == {"unit": "steps", "value": 48, "reports": 4}
    ablation = load_space(default_space_path().with_name("batch_size_ablation.yaml"))
    assert len(ablation.cells()) == 16 and ablation.repeats == 2 and ablation.num_samples == 3
    assert ablation.cells()[0] == {"batch_size": 16, "loss": "ce"}
    gpu = load_space(default_space_path().with_name("vit_cifar100_gpu.yaml"))
    assert gpu.resources_for(64)["gpu"] == 0.25 and gpu.resources_for(512)["gpu"] == 1.0
    gpu.check_cluster(cpus=64, gpus=8)
    with pytest.raises(BadInput, match=r"batch_size 64 asks for 0\.25 GPUs but the cluster has 0"):
        gpu.check_cluster(cpus=64, gpus=0)
    with pytest.raises(BadInput, match=r"batch_size 256 asks for 1 GPU but the cluster has 0\.5"):
        gpu.check_cluster(cpus=64, gpus=0.5)
    big = gpu.define_by_run({"batch_size": 512, "loss": "ce"})(optuna.create_study().ask())
    assert big["contrastive_chunk"] == 128
    assert "contrastive_chunk" not in gpu.define_by_run({"batch_size": 64, "loss": "ce"})(optuna.create_study().ask())


# ---------------------------------------------------------------------------------- define-by-run
def _run_study(space: SearchSpace, cell: dict, n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    objective = space.define_by_run(cell)
    out = []
    for i in range(n):
        trial = study.ask()
        params = objective(trial)
        assert params == trial.params  # what was returned is exactly what Optuna recorded
        out.append(params)
        study.tell(trial, float(i % 3))
    return out


def _random_draws(space: SearchSpace, cell: dict, n: int, seed: int = 0) -> list[dict]:
    """The random baseline as sweeps run it: Optuna's RandomSampler asking the define-by-run function."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    objective = space.define_by_run(cell)
    return [objective(study.ask()) for _ in range(n)]


def test_define_by_run_samples_only_the_active_params_and_configs_null_the_rest(tmp_path):
    space = loaded(tmp_path)
    sampled = _run_study(space, {}, 30)
    assert {p["loss"] for p in sampled} == set(FAMILY_PARAMS)
    for params in sampled:
        assert set(params) - {"loss", "lr", "batch_size"} == FAMILY_PARAMS[params["loss"]]
        assert 1e-4 <= params["lr"] <= 1e-2 and params["batch_size"] in (16, 32)
        config = space.trial_config(params, {}, repeat=1)
        for name in ("tau", "beta", "lam"):
            assert (getattr(config, name) is None) == (name not in FAMILY_PARAMS[params["loss"]]), (params, name)
            if name in params:
                assert getattr(config, name) == params[name]
        assert config.epochs == 3 and config.seed == 1 and config.model == "test_vit"


def test_conditions_on_grid_axes_and_int_params(tmp_path):
    text = base_with("  loss: {choice: [ce, supcon, schane, clce]}\n", "").replace("[supcon, schane, clce]", "clce")
    space = loaded(tmp_path, text.replace("[schane, clce]", "clce").replace(
        "  batch_size: {choice: [16, 32]}\n",
        "  views: {int: [2, 6], step: 2}\n  proj_dim: {int: [16, 256], log: true}\n",
    ) + "grid:\n  loss: [ce, clce]\n")
    assert space.cells() == [{"loss": "ce"}, {"loss": "clce"}]
    for cell in space.cells():
        for params in _run_study(space, cell, 6):
            assert "loss" not in params  # the cell is not part of the sampled params
            assert ("lam" in params) == (cell["loss"] == "clce")
            assert params["views"] in (2, 4, 6) and 16 <= params["proj_dim"] <= 256
        for params in _random_draws(space, cell, 20):
            assert ("tau" in params) == (cell["loss"] == "clce")
            assert params["views"] in (2, 4, 6) and 16 <= params["proj_dim"] <= 256


def test_the_same_seed_gives_the_same_configs(tmp_path):
    space = loaded(tmp_path)
    assert _run_study(space, {}, 15, seed=0) == _run_study(space, {}, 15, seed=0)
    assert _run_study(space, {}, 15, seed=0) != _run_study(space, {}, 15, seed=1)
    draws = [_random_draws(space, {}, 1, seed=7) for _ in range(2)]
    assert draws[0] == draws[1]
    a = _random_draws(space, {}, 20, seed=3)
    assert a == _random_draws(space, {}, 20, seed=3)
    for params in a:
        assert set(params) - {"loss", "lr", "batch_size"} == FAMILY_PARAMS[params["loss"]]
        assert 1e-4 <= params["lr"] <= 1e-2 and (params.get("beta", 0.0) <= 4.0)


def test_define_by_run_pickles_for_ray_checkpoints(tmp_path):
    import pickle

    objective = loaded(tmp_path).define_by_run({})
    assert pickle.loads(pickle.dumps(objective)) == objective


# ---------------------------------------------------------------------------------- grid searcher
GRID = """\
name: g
fixed: {model: test_vit, dataset: digits}
grid:
  batch_size: [16, 32, 64]
params:
  loss: {choice: [ce, supcon, clce]}
  tau: {choice: [0.1, 0.2], when: {loss: [supcon, clce]}}
  lam: {grid: [0.25, 0.75], when: {loss: clce}}
  lr: {choice: [0.001, 0.01]}
objective: {metric: val_loss, mode: min}
searcher: {type: grid}
scheduler: {type: fifo, max_epochs: 2}
"""


def test_grid_points_are_the_product_of_the_active_choices(tmp_path):
    space = loaded(tmp_path, GRID)
    points = space.grid_points()
    # per batch size and lr: ce 1 + supcon 2 (tau) + clce 2 × 2 (tau × lam) = 7
    assert len(points) == 3 * 7 * 2
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)  # no duplicates
    for point in points:
        assert set(point) - {"batch_size", "loss", "lr"} == {"ce": set(), "supcon": {"tau"},
                                                             "clce": {"tau", "lam"}}[point["loss"]]
    assert space.num_samples == 14  # every point of a cell: Ray's per-cell budget
    assert space.total_trials() == len(points)
    assert space.objective_mode == "min" and space.scheduler == "fifo"
    config = space.trial_config(points[-1], {"batch_size": 64})
    assert config.loss == "clce" and config.batch_size == 64 and config.epochs == 2


# ---------------------------------------------------------------------------------- resources
RESOURCES = BASE.replace("  batch_size: {choice: [16, 32]}\n", "").replace(
    "resources: {cpu: 1, gpu: 0}\n",
    "resources:\n  cpu: {by_batch_size: {64: 1, 512: 4}}\n  gpu: {by_batch_size: {32: 0.25, 128: 0.5, 256: 2}}\n",
) + "grid:\n  batch_size: [16, 32, 64, 256]\n"


def test_resources_follow_the_batch_size_and_the_cluster_is_checked(tmp_path):
    space = loaded(tmp_path, RESOURCES)
    assert space.batch_sizes() == [16, 32, 64, 256]
    assert space.resources_for(16) == {"cpu": 1.0, "gpu": 0.25}
    assert space.resources_for(32) == {"cpu": 1.0, "gpu": 0.25}
    assert space.resources_for(64) == {"cpu": 1.0, "gpu": 0.5}
    assert space.resources_for(256) == {"cpu": 4.0, "gpu": 2.0}
    space.check_cluster(cpus=4, gpus=2)
    with pytest.raises(BadInput, match=r"^resources: batch_size 256 asks for 2 GPUs but the cluster has 1$"):
        space.check_cluster(cpus=8, gpus=1)
    with pytest.raises(BadInput, match=r"batch_size 256 asks for 4 CPUs but the cluster has 2"):
        space.check_cluster(cpus=2, gpus=8)
    with pytest.raises(BadInput, match="stops at 256"):
        space.resources_for(300)


def test_numeric_strings_and_lr_rule_are_coerced_and_recorded(tmp_path):
    space = loaded(tmp_path, BASE + "lr_rule: linear\n")
    assert (space.params["lr"].low, space.params["lr"].high) == (1e-4, 1e-2)  # YAML read "1e-4" as text
    assert space.fixed["lr_rule"] == "linear"
    assert space.trial_config({"loss": "ce", "lr": 0.001}, {}).lr_rule == "linear"


# ---------------------------------------------------------------------------------- refusals
BAD_SPACES = [
    ("malformed-yaml", "params: {loss: [\n", "malformed YAML"),
    ("top-level-list", "- name: x\n", "expected a mapping at the top level"),
    ("unknown-top-key", BASE + "colour: red\n", "unknown key 'colour'"),
    ("unknown-spec-key", base_with("{choice: [16, 32]}", "{choice: [16, 32], weight: 2}"),
     r"params\.batch_size: unknown key 'weight'"),
    ("no-kind", base_with("{choice: [16, 32]}", "{when: {loss: ce}}"), r"params\.batch_size: give exactly one"),
    ("unknown-field-fixed", base_with("img_size: 16", "img_size: 16, colour: red"),
     r"fixed\.colour: unknown TrialConfig field"),
    ("unknown-field-params", BASE.replace("  lr:", "  learning_rate:"), r"params\.learning_rate: unknown"),
    ("unknown-field-grid", BASE + "grid: {batchsize: [16]}\n", r"grid\.batchsize: unknown TrialConfig field"),
    ("empty-choice", base_with("{choice: [16, 32]}", "{choice: []}"), r"params\.batch_size: choice needs a non-empty"),
    ("low-ge-high", base_with("[1e-4, 1e-2]", "[1e-2, 1e-4]"), r"params\.lr: low 0\.01 must be below high"),
    ("loguniform-nonpositive", base_with("[1e-4, 1e-2]", "[0, 1e-2]"), r"params\.lr: loguniform needs low > 0"),
    ("bound-not-number", base_with("[1e-4, 1e-2]", "[small, 1e-2]"), r"'small' is not a number"),
    ("int-bounds-not-ints", base_with("{choice: [16, 32]}", "{int: [16, 32.5]}"), "int bounds must be integers"),
    ("int-for-a-float", base_with("{loguniform: [1e-4, 1e-2]}", "{int: [1, 2]}"), r"params\.lr: lr is a float"),
    ("when-unknown", base_with("[1e-4, 1e-2]}", "[1e-4, 1e-2], when: {optim: sgd}}"),
     r"params\.lr\.when: unknown parameter 'optim'"),
    ("when-later-param", base_with("[1e-4, 1e-2]}", "[1e-4, 1e-2], when: {batch_size: 16}}"),
     "not defined before 'lr'"),
    ("when-impossible", base_with("when: {loss: clce}", "when: {loss: foo}"), r"params\.lam\.when: loss can never"),
    ("grid-param-with-optuna", base_with("{choice: [ce, supcon, schane, clce]}", "{grid: [ce, clce]}"),
     r"params\.loss: .*use the top-level grid: section"),
    ("grid-searcher-with-range", base_with("type: optuna", "type: grid").replace("num_samples: 4\n", ""),
     r"params\.tau: the grid searcher enumerates choices"),
    ("grid-searcher-num-samples", GRID + "num_samples: 5\n", "num_samples: the grid searcher runs every"),
    ("bad-mode", base_with("mode: max", "mode: maximise"), r"objective\.mode: 'maximise' must be max or min"),
    ("unknown-metric", base_with("metric: val_top1", "metric: accuracy"), r"objective\.metric: 'accuracy'"),
    ("unknown-searcher", base_with("type: optuna", "type: bayes"), r"searcher\.type: 'bayes'"),
    ("warm-start-negative", base_with("type: optuna", "type: optuna, warm_start: -1"),
     r"searcher\.warm_start: must be >= 0"),
    ("patience-not-int", base_with("type: optuna", "type: optuna, patience: soon"),
     r"searcher\.patience: expected an integer"),
    ("startup-with-random", base_with("type: optuna", "type: random, startup_trials: 3"),
     r"searcher\.startup_trials: only the optuna \(TPE\) searcher"),
    ("warm-start-with-grid", GRID.replace("type: grid", "type: grid, warm_start: 1"),
     r"searcher \(grid: every grid point runs once\): unknown key 'warm_start'"),
    ("unknown-scheduler", base_with("type: asha", "type: pbt"), r"scheduler\.type: 'pbt'"),
    ("grace-over-max", base_with("grace_period: 1", "grace_period: 5"), r"scheduler\.grace_period: 5 is more"),
    ("reduction-factor-1", base_with("reduction_factor: 2", "reduction_factor: 1"),
     r"scheduler\.reduction_factor: must be >= 2"),
    ("num-samples-0", base_with("num_samples: 4", "num_samples: 0"), "num_samples: must be >= 1"),
    ("num-samples-missing", base_with("num_samples: 4\n", ""), "num_samples: required"),
    ("repeats-0", BASE + "repeats: 0\n", "repeats: must be >= 1"),
    ("max-concurrent-0", base_with("max_concurrent: 1", "max_concurrent: 0"), "max_concurrent: must be >= 1"),
    ("negative-cpu", base_with("cpu: 1", "cpu: -1"), r"resources\.cpu: must be >= 0"),
    ("fractional-gpus-over-1", base_with("gpu: 0", "gpu: 1.5"), r"resources\.gpu: fractions"),
    ("batch-size-0-choice", base_with("{choice: [16, 32]}", "{choice: [0, 32]}"),
     r"params\.batch_size value 0: batch_size: must be >= 1"),
    ("fixed-loss-foo", base_with("img_size: 16", "img_size: 16, loss: foo").replace(
        "  loss: {choice: [ce, supcon, schane, clce]}\n", "").replace(", when: {loss: [supcon, schane, clce]}", "")
     .replace(", when: {loss: [schane, clce]}", "").replace(", when: {loss: clce}", ""), "unknown loss family 'foo'"),
    ("choice-wrong-type", base_with("{choice: [16, 32]}", "{choice: [16, big]}"), "batch_size must be int"),
    ("duplicate-choice", base_with("{choice: [16, 32]}", "{choice: [16, 16]}"), "16 is listed twice"),
    ("gpu-table-short", base_with("gpu: 0", "gpu: {by_batch_size: {16: 0.5}}"),
     r"resources\.gpu: the by_batch_size table stops at 16 but the space can produce batch_size 32"),
    ("fixed-epochs-contradiction", base_with("img_size: 16", "img_size: 16, epochs: 9"),
     r"fixed\.epochs: contradicts scheduler\.max_epochs 3"),
    ("epochs-searched", base_with("{choice: [16, 32]}", "{choice: [16, 32]}\n  epochs: {choice: [1, 2]}"),
     r"params\.epochs: epochs cannot be searched"),
    ("param-also-fixed", base_with("img_size: 16", "img_size: 16, lr: 0.1"), r"params\.lr: lr is also in fixed"),
    ("fifo-with-grace", base_with("type: asha", "type: fifo"), r"scheduler \(fifo\): unknown key 'grace_period'"),
    ("lr-rule-unknown", BASE + "lr_rule: cubic\n", "lr_rule: 'cubic' is not one of"),
    ("bad-name", base_with("name: t", "name: a b"), "name: 'a b' must be"),
    ("step-with-log", base_with("{loguniform: [1e-4, 1e-2]}", "{loguniform: [1e-4, 1e-2], step: 0.001}"),
     r"params\.lr\.step: a log range has no step"),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD_SPACES], ids=[c[0] for c in BAD_SPACES])
def test_malformed_spaces_are_refused_naming_the_file_and_the_problem(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(BadInput, match=expected) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message


def test_refusal_table_is_big_enough_and_the_base_is_valid(tmp_path):
    assert len(BAD_SPACES) >= 15
    space = loaded(tmp_path)
    assert math.isclose(space.params["lr"].low, 1e-4) and space.num_samples == 4


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_space(tmp_path / "nope.yaml")
