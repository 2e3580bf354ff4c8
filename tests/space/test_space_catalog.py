"""The shipped spaces as package data: short names, `tune-schane spaces`, the repository link."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_schane.cli.main import main
from tune_schane.errors import BadInput
from tune_schane.space import load_space
from tune_schane.space.catalog import SPACES_DIR, catalog, default_space_path, one_line, resolve_space

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"default", "digits", "batch_size_ablation", "study_batch", "study_negatives", "vit_cifar100_gpu",
           "vit_cifar100_large_batch_gpu"}


def test_spaces_are_package_data_and_the_repository_path_still_works():
    assert SPACES_DIR.parent == ROOT / "tune_schane"
    assert {p.stem for p in SPACES_DIR.glob("*.yaml")} == SHIPPED
    for name in SHIPPED:  # the paths README, Makefile and docs use
        assert (ROOT / "search_spaces" / f"{name}.yaml").resolve() == (SPACES_DIR / f"{name}.yaml").resolve()


def test_a_space_argument_is_a_path_or_a_short_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_space(None) == default_space_path()
    assert resolve_space("batch_size_ablation") == SPACES_DIR / "batch_size_ablation.yaml"
    (tmp_path / "batch_size_ablation").write_text("name: mine\n")  # a file of that name wins
    assert resolve_space("batch_size_ablation") == Path("batch_size_ablation")
    assert resolve_space("mine/space.yaml") == Path("mine/space.yaml")  # a path stays a path (loader names it)
    with pytest.raises(BadInput, match=r"'defualt': no such file and no shipped space .*shipped: batch_size"):
        resolve_space("defualt")


def test_spaces_command_lists_every_shipped_space_with_one_line(capsys):
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0] for line in lines[:-1]}
    assert listed == SHIPPED
    for name, description in catalog():
        assert description and "\n" not in description and len(description) <= 100
        space = load_space(SPACES_DIR / f"{name}.yaml")
        assert description.rstrip(".…")[:40] in " ".join(space.description.split()), (name, description)


def test_one_line_takes_the_first_sentence():
    assert one_line("A grid.  Second sentence. Third.") == "A grid."
    assert one_line("x" * 150, width=20) == "x" * 19 + "…"
