"""``tune-schane sweep SPACE --set ...``: overrides applied to a space before it is validated."""

from __future__ import annotations

import pytest
import yaml

from tune_schane.errors import BadInput
from tune_schane.space import apply_overrides, builtin_dir, load_space

FEWSHOT = builtin_dir() / "study_batch.yaml"
FULL_SCALE = ["shots=null", "val_size=10000", "img_size=224", "model=tf_efficientnet_lite2", "num_threads=null",
              "num_workers=8", "budget.value=6000", "budget.reports=10", "grid.batch_size=[256,512,1024,2048]",
              "resources.gpu=1", "max_concurrent=8", "num_samples=20"]


def test_the_shipped_study_space():
    space = load_space(FEWSHOT)
    assert space.fixed["pretrained"] is True and space.fixed["dataset"] == "fashion_mnist"
    assert space.scheduler == "fifo" and space.confirm == {"top": 1, "seeds": 5, "epoch": "final"}
    assert space.total_trials() == 30 and len(space.cells()) == 15
    assert space.grid["loss"] == ["ce", "supcon_ce", "clce", "supcon", "schane"]


def test_full_scale_overrides_from_the_space_file_header_validate():
    header = FEWSHOT.read_text()
    assert all(item in header for item in FULL_SCALE)  # the header documents exactly these
    space = load_space(FEWSHOT, FULL_SCALE)
    assert space.fixed["shots"] is None and space.fixed["img_size"] == 224
    assert space.grid["batch_size"] == [256, 512, 1024, 2048] and space.max_concurrent == 8
    assert space.resources_for(1024)["gpu"] == 1
    assert space.budget == {"unit": "steps", "value": 6000, "reports": 10} and space.max_epochs == 10
    # the space kept in the store is what really ran: the overrides, then the resolved YAML
    assert space.source.splitlines()[1] == "# --set shots=null"
    assert yaml.safe_load(space.source)["fixed"]["model"] == "tf_efficientnet_lite2"


def test_override_rules():
    data = {"fixed": {"model": "x"}, "grid": {"loss": ["ce"]}, "num_samples": 2}
    out = apply_overrides(data, ["num_samples=5", "shots=3", "grid.batch_size=[8]", "scheduler.type=fifo"])
    assert out == {"fixed": {"model": "x", "shots": 3}, "grid": {"loss": ["ce"], "batch_size": [8]},
                   "num_samples": 5, "scheduler": {"type": "fifo"}}
    assert data == {"fixed": {"model": "x"}, "grid": {"loss": ["ce"]}, "num_samples": 2}  # input untouched
    with pytest.raises(BadInput, match="not a mapping"):
        apply_overrides(data, ["num_samples.x=1"])
    with pytest.raises(BadInput, match="key=value"):
        apply_overrides(data, ["oops"])


def test_bad_overrides_are_named_by_the_validator():
    with pytest.raises(BadInput, match="colour"):
        load_space(FEWSHOT, ["colour=red"])
    with pytest.raises(BadInput, match="batch_size"):
        load_space(FEWSHOT, ["grid.batch_size=[]"])
