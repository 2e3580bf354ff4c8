"""`tune-schane train` progress: a bar with an ETA on a terminal, one line per epoch anywhere else."""

from __future__ import annotations

import io
import re

import pytest

from tune_schane.cli._progress import TrainProgress
from tune_schane.cli.main import main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: TrainProgress, epochs: range, steps: int) -> None:
    for epoch in epochs:
        seen = list(progress.batches(list(range(steps)), epoch))
        assert seen == list(range(steps))  # the loop gets the same batches, wrapped or not
        progress.epoch_done({"epoch": epoch, "val_top1": 10.0 * epoch})
    progress.close()


def test_on_a_terminal_a_bar_counts_the_remaining_steps_with_an_eta_and_each_epoch_leaves_one_line(capsys):
    terminal = Terminal()
    _run(TrainProgress(4, lambda m: f"epoch {m['epoch']} done", stream=terminal), range(2, 5), steps=7)  # resumed at 2
    bar = terminal.getvalue().split("\r")[-1]
    assert re.search(r"epoch 4/4: 100%.*\| 21/21 \[\d\d:\d\d<\d\d:\d\d, .*step/s, val_top1 40\.00\]", bar), bar
    assert capsys.readouterr().out.splitlines() == ["epoch 2 done", "epoch 3 done", "epoch 4 done"]


def test_elsewhere_there_is_no_bar_only_one_line_per_epoch(capsys):
    log = io.StringIO()  # a file, a pipe, CI: not a terminal
    _run(TrainProgress(3, lambda m: f"epoch {m['epoch']} done", stream=log), range(1, 4), steps=50)
    assert log.getvalue() == ""
    assert capsys.readouterr().out.splitlines() == ["epoch 1 done", "epoch 2 done", "epoch 3 done"]


@pytest.mark.slow
def test_train_without_a_terminal_prints_one_line_per_epoch_and_no_carriage_returns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["train", "--set", "img_size=16", "--set", "shots=12", "--set", "epochs=2", "--set", "num_threads=1",
                 "--store", str(tmp_path / "store"), "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "\r" not in captured.out + captured.err
    assert [line.split("  ")[0] for line in captured.out.splitlines() if line.startswith("epoch ")] == ["epoch 1/2",
                                                                                                   "epoch 2/2"]
