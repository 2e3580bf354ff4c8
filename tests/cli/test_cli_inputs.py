"""Malformed input across the command line: exit 2, one line naming the problem, no traceback, store untouched.

Each case is (id, argv, setup, expected text). ``setup(tmp)`` writes whatever files the case needs
into ``tmp`` and may return extra argv. Every case runs against a store that already holds a real
sweep; the store's bytes are hashed before and after. Cases here fail before any training starts,
so the whole table runs in-process in seconds.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tune_schane.cli.main import main
from tune_schane.finetune.config import TrialConfig
from tune_schane.store import TrialStore
from tune_schane.store.records import trial_row

GOOD_SPACE = """\
name: ok
fixed: {model: test_vit, dataset: digits, img_size: 16}
params:
  loss: {choice: [ce, clce]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
objective: {metric: val_top1, mode: max}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, max_epochs: 2, grace_period: 1, reduction_factor: 2}
num_samples: 2
max_concurrent: 1
resources: {cpu: 1}
"""


def space_with(old: str, new: str) -> str:
    assert old in GOOD_SPACE, old
    return GOOD_SPACE.replace(old, new)


def write(name: str, text: str | bytes):
    def setup(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(textwrap.dedent(text))
        return []

    return setup


def nothing(tmp: Path) -> list[str]:
    return []


def corrupt_fashion_mnist(tmp: Path) -> list[str]:
    """All four IDX files present, the training images not an IDX file."""
    import gzip

    from tune_schane.data.fashion_mnist import FILES

    (tmp / "fm").mkdir()
    for images, labels in FILES.values():
        (tmp / "fm" / images).write_bytes(gzip.compress(b"\0\0\x08\x03 not an image file"))
        (tmp / "fm" / labels).write_bytes(gzip.compress(b"\0\0\x08\x01" + bytes(4)))
    return []


def corrupt_part(tmp: Path) -> list[str]:
    (tmp / "store" / "trials" / "part-99999999T000000000000Z-bad.parquet").write_bytes(b"PAR1 not really")
    return []


def foreign_part(tmp: Path) -> list[str]:
    pq.write_table(pa.table({"x": [1, 2]}), tmp / "store" / "trials" / "part-99999999T000000000000Z-foreign.parquet")
    return []


def other_version_part(tmp: Path) -> list[str]:
    good = sorted((tmp / "store" / "trials").glob("part-*.parquet"))[0]
    table = pq.read_table(good)
    meta = dict(table.schema.metadata)
    meta[b"tune_schane.schema_version"] = b"99"
    target = tmp / "store" / "trials" / "part-99999999T000000000000Z-v99.parquet"
    pq.write_table(table.replace_schema_metadata(meta), target)
    return []


def failed_only_store(tmp: Path) -> list[str]:
    store = TrialStore(tmp / "failed")
    store.write_trials([trial_row(sweep_id="bad", trial_id="t0", status="oom", config=TrialConfig(), history=[],
                                  error="out of memory")])
    return ["--store", str(tmp / "failed")]


def empty_store(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["--store", str(tmp / "empty")]


def a_file(tmp: Path) -> list[str]:
    (tmp / "plain-file").write_text("x")
    return []


def dead_address(tmp: Path) -> list[str]:
    """A loopback port nothing listens on: the head of a cluster that is gone."""
    from tests.support.raykit import free_port

    return ["--address", f"127.0.0.2:{free_port()}"]


CASES = [
    # --- trial configs (train) ---
    ("train-missing-file", ["train", "{tmp}/nope.yaml"], nothing, "no such file"),
    ("train-malformed-yaml", ["train", "{tmp}/c.yaml"], write("c.yaml", "loss: [ce\n"), "malformed YAML"),
    ("train-not-a-mapping", ["train", "{tmp}/c.yaml"], write("c.yaml", "- 1\n- 2\n"), "mapping"),
    ("train-binary-file", ["train", "{tmp}/c.yaml"], write("c.yaml", b"\xff\xfe\x00\x01"), "c.yaml"),
    ("train-unknown-key", ["train", "{tmp}/c.yaml"], write("c.yaml", "temperature: 0.1\n"), "unknown config key"),
    ("train-wrong-type", ["train", "--set", "batch_size=abc"], nothing, "batch_size"),
    ("train-float-batch", ["train", "--set", "batch_size=12.5"], nothing, "batch_size"),
    ("train-tau-zero", ["train", "--set", "loss=supcon", "--set", "tau=0"], nothing, "tau"),
    ("train-beta-negative", ["train", "--set", "loss=schane", "--set", "beta=-1"], nothing, "beta"),
    ("train-lam-out-of-range", ["train", "--set", "lam=1.5"], nothing, "lam"),
    ("train-unknown-loss", ["train", "--set", "loss=triplet"], nothing, "loss"),
    ("train-lr-rule", ["train", "--set", "lr_rule=cubic"], nothing, "lr_rule"),
    ("train-lr-negative", ["train", "--set", "lr=-0.1"], nothing, "lr"),
    ("train-epochs-zero", ["train", "--set", "epochs=0"], nothing, "epochs"),
    ("train-memory-budget-zero", ["train", "--set", "memory_budget_mb=0"], nothing, "memory_budget_mb"),
    ("train-bad-override", ["train", "--set", "novalue"], nothing, "key=value"),
    ("train-unknown-override", ["train", "--set", "colour=red"], nothing, "unknown config key"),
    ("train-unknown-model", ["train", "--set", "model=resnet9000"], nothing, "unknown timm model"),
    ("train-unknown-dataset", ["train", "--set", "dataset=mnist3d"], nothing, "mnist3d"),
    ("train-dataset-no-root", ["train", "--set", "dataset=cifar10"], nothing, "data_root"),
    ("train-dataset-missing-root", ["train", "--set", "dataset=cifar10", "--set", "data_root={tmp}/none"],
     nothing, "cifar10"),
    ("train-fashion-missing-root", ["train", "--set", "dataset=fashion_mnist", "--set", "data_root={tmp}/none"],
     nothing, "apt-get install dataset-fashion-mnist"),
    ("train-fashion-corrupt-idx", ["train", "--set", "dataset=fashion_mnist", "--set", "data_root={tmp}/fm"],
     corrupt_fashion_mnist, "train-images-idx3-ubyte.gz"),
    ("train-no-packaged-weights-offline", ["train", "--set", "model=resnet18", "--set", "pretrained=true"], nothing,
     "none are packaged"),
    ("train-val-size-too-large", ["train", "--set", "val_size=100000"], nothing, "val_size"),
    ("train-weights-missing", ["train", "--set", "weights={tmp}/w.safetensors"], nothing, "weights"),
    ("train-weights-garbage", ["train", "--set", "weights={tmp}/w.safetensors"],
     write("w.safetensors", b"garbage"), "weights"),
    ("train-batch-too-large", ["train", "--set", "shots=2", "--set", "batch_size=64"], nothing, "batch_size"),
    ("train-out-is-a-file", ["train", "--out", "{tmp}/plain-file"], a_file, "--out"),
    ("train-escaping-sweep-id", ["train", "--sweep-id", "../escape"], nothing, "sweep"),
    # --- search spaces (sweep), all refused before Ray starts ---
    ("sweep-missing-file", ["sweep", "{tmp}/nope.yaml"], nothing, "no such file"),
    ("sweep-malformed-yaml", ["sweep", "{tmp}/s.yaml"], write("s.yaml", "params: {loss: [\n"), "malformed YAML"),
    ("sweep-unknown-top-key", ["sweep", "{tmp}/s.yaml"], write("s.yaml", GOOD_SPACE + "colour: red\n"), "colour"),
    ("sweep-empty-choice", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("{choice: [ce, clce]}", "{choice: []}")), "choice"),
    ("sweep-low-ge-high", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("[1.0e-4, 1.0e-2]", "[1.0e-2, 1.0e-4]")), "lr"),
    ("sweep-loguniform-nonpositive", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("[1.0e-4, 1.0e-2]", "[0, 1.0e-2]")), "lr"),
    ("sweep-when-unknown", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("[1.0e-4, 1.0e-2]}", "[1.0e-4, 1.0e-2], when: {optim: sgd}}")),
     "optim"),
    ("sweep-grid-param-with-optuna", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("{choice: [ce, clce]}", "{grid: [ce, clce]}")), "grid"),
    ("sweep-too-many-gpus", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("resources: {cpu: 1}", "resources: {cpu: 1, gpu: 4}")), "GPU"),
    ("sweep-unknown-field", ["sweep", "{tmp}/s.yaml"],
     write("s.yaml", space_with("img_size: 16", "img_size: 16, colour: red")), "colour"),
    ("sweep-num-samples-zero", ["sweep", "{tmp}/s.yaml", "--num-samples", "0"], write("s.yaml", GOOD_SPACE),
     "num-samples"),
    ("sweep-resume-without-name", ["sweep", "--resume"], nothing, "--name"),
    ("sweep-resume-unknown", ["sweep", "--resume", "--name", "never-ran", "--storage", "{tmp}/ray"], nothing,
     "never-ran"),
    ("sweep-escaping-name", ["sweep", "--name", "../../etc"], nothing, "sweep"),
    ("sweep-unknown-space-name", ["sweep", "batch_size_ablaton"], nothing, "no shipped space"),
    ("sweep-dead-address", ["sweep"], dead_address, "no Ray cluster answers"),
    ("sweep-address-not-host-port", ["sweep", "--address", "headnode"], nothing, "HOST:PORT"),
    # --- stores, sweeps and output folders ---
    ("status-store-is-a-file", ["status", "--store", "{tmp}/plain-file"], a_file, "is a file"),
    # a store path that does not exist is a typo on every read command, not an empty store
    ("status-missing-store", ["status", "--store", "{tmp}/no-store"], nothing, "no such folder"),
    ("compact-missing-store", ["compact", "--store", "{tmp}/no-store"], nothing, "no such folder"),
    ("analyze-missing-store", ["analyze", "--store", "{tmp}/no-store"], nothing, "no such folder"),
    ("export-missing-store", ["export", "--store", "{tmp}/no-store"], nothing, "no such folder"),
    ("compact-store-is-a-file", ["compact", "--store", "{tmp}/plain-file"], a_file, "is a file"),
    ("export-store-is-a-file", ["export", "--store", "{tmp}/plain-file"], a_file, "is a file"),
    ("status-corrupt-part", ["status"], corrupt_part, "bad.parquet"),
    ("status-foreign-part", ["status"], foreign_part, "foreign.parquet"),
    ("status-other-schema-version", ["status"], other_version_part, "v99.parquet"),
    ("analyze-corrupt-part", ["analyze"], corrupt_part, "bad.parquet"),
    ("analyze-empty-store", ["analyze"], empty_store, "no trials"),
    ("analyze-unknown-sweep", ["analyze", "--sweep", "nope"], nothing, "nope"),
    ("analyze-only-failed", ["analyze"], failed_only_store, "no completed trial"),
    ("analyze-out-unwritable", ["analyze", "--out", "{tmp}/plain-file/report"], a_file, "plain-file"),
    ("export-unknown-sweep", ["export", "--sweep", "nope"], nothing, "nope"),
    ("export-bad-by", ["export", "--by", "colour"], nothing, "colour"),
    ("unknown-subcommand", ["frobnicate"], nothing, "frobnicate"),
]


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A store with one real sweep, as the default store of a working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = TrialStore(tmp_path / "store")
    history = [{"epoch": 1, "val_top1": 50.0}, {"epoch": 2, "val_top1": 60.0}]
    store.write_trials([trial_row(sweep_id="good", trial_id=f"t{i}", status="completed",
                                  config=TrialConfig(lr=1e-3 * (i + 1)), history=history) for i in range(2)])
    return tmp_path


@pytest.mark.parametrize(("argv", "setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_exits_2_with_one_line(workdir, capsys, argv, setup, expected):
    extra = setup(workdir)
    uses_store = any(a in ("status", "analyze", "export", "train", "sweep") for a in argv[:1])
    if uses_store and "--store" not in argv and "--store" not in extra:
        extra += ["--store", str(workdir / "store")]
    before = _digest(workdir / "store")
    args = [a.replace("{tmp}", str(workdir)) for a in argv] + (extra if argv[0] != "frobnicate" else [])
    code = main(args)
    captured = capsys.readouterr()
    err_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (code, captured.err[-2000:])
    assert len(err_lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert expected.lower() in err_lines[0].lower(), err_lines[0]
    assert _digest(workdir / "store") == before  # nothing written, nothing half-written


def test_an_existing_empty_store_says_so(tmp_path, capsys):
    """The other half of the store-path rule: an empty folder is a real store with no trials."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for command, code in (("status", 0), ("compact", 0), ("analyze", 2), ("export", 2)):
        assert main([command, "--store", str(empty)]) == code, command
        captured = capsys.readouterr()
        said = (captured.out if code == 0 else captured.err).strip()
        assert f"store {empty}: empty, no trials yet" in said, (command, said)
    assert list(empty.iterdir()) == []


def test_the_table_covers_at_least_30_inputs():
    assert len(CASES) >= 30
    assert os.path.basename(__file__) == "test_cli_inputs.py"
