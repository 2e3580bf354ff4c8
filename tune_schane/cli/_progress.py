"""Progress of ``tune-schane train``: a bar with an ETA on a terminal, one line per epoch elsewhere.

On a terminal (stderr is a TTY) a tqdm bar counts the run's remaining training steps, so its ETA is
for the whole run, as Lightning and timm users expect to see; its description names the epoch and
its postfix carries the last epoch's val_top1. Each finished epoch also leaves one summary line
above the bar. Anywhere else (a log file, CI, a pipe) there is no bar: one summary line per epoch,
nothing per step, so logs do not fill with carriage returns. tqdm comes with Optuna.

The training loop knows nothing of this: :meth:`TrainProgress.batches` wraps the loader that
:meth:`tune_schane.finetune.trial.Trial.run` hands to ``train_one_epoch`` (``wrap_batches``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any


class TrainProgress:
    """One run's progress; ``bar=None`` decides by whether ``stream`` (default stderr) is a terminal."""

    def __init__(self, epochs: int, line: Callable[[dict], str], *, stream: IO[str] | None = None,
                 bar: bool | None = None) -> None:
        self.epochs, self.line = epochs, line
        self.stream = stream if stream is not None else sys.stderr
        self.show_bar = _is_terminal(self.stream) if bar is None else bar
        self._bar: Any = None

    def batches(self, loader: Iterable, epoch: int) -> Iterable:
        """The training batches of ``epoch`` (ticking the bar when there is one)."""
        if not self.show_bar:
            return loader
        if self._bar is None:  # created at the first epoch run (a resumed run starts later)
            from tqdm import tqdm

            steps = len(loader) if hasattr(loader, "__len__") else None
            total = steps * (self.epochs - epoch + 1) if steps is not None else None
            self._bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True, leave=True)
        self._bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
        return self._ticking(loader)

    def _ticking(self, loader: Iterable) -> Iterator:
        for batch in loader:
            yield batch
            self._bar.update(1)

    def epoch_done(self, metrics: dict) -> None:
        """One summary line for the epoch (above the bar on a terminal)."""
        text = self.line(metrics)
        if self._bar is None:
            print(text, flush=True)
            return
        value = metrics.get("val_top1", math.nan)
        self._bar.set_postfix_str(f"val_top1 {value:.2f}" if math.isfinite(value) else "", refresh=False)
        self._bar.write(text, file=sys.stdout)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
