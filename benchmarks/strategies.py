"""The search strategies the benchmarks compare, as (space, how run_sweep searches) pairs.

One definition for the real benchmark (``benchmarks/search.py``: real sweeps on Ray) and the replay
(``benchmarks/replay``: the same searcher and scheduler code on a table of real learning curves):

- ``random+fifo``: random configs per cell, every trial trained to the end (the cost baseline);
- ``ray-optuna+asha``: Ray's ``OptunaSearch`` over the whole space (grid axes categorical) and one
  ``ASHAScheduler`` over all trials, the anchor (tune_schane/ray_tune/_anchor.py);
- ``cells``: per-cell TPE + per-cell ASHA, no sharing between cells (the first round's default);
- ``default``: per-cell TPE + ASHA with the searcher switches' defaults (warm starts from neighbouring
  cells, patience, TPE's start-up trials; tune_schane/search/cell_sharing.py), what a space file gets;
- variants ``NAME:warm_start=2,patience=3,startup_trials=3`` (any SearchSpace field: ``reduction_factor=3``,
  ``rung_tie=2.0``, ``num_samples=8``): more points of the frontier.
"""

from __future__ import annotations

import dataclasses

NO_SHARING = {"warm_start": 0, "patience": 0}
REFERENCE_SAMPLES = 24  # configs per cell of the reference random + FIFO search (the real benchmark's old metric)
REFERENCE_SEED = 1000


def reference_space(base, samples: int = REFERENCE_SAMPLES):
    """The reference search: random + FIFO with ``samples`` configs per cell, its own searcher seed."""
    return dataclasses.replace(base, searcher="random", scheduler="fifo", num_samples=samples,
                               searcher_seed=REFERENCE_SEED, **NO_SHARING)


def strategies(base, variants: list[str] = ()) -> dict[str, tuple[object, str]]:
    """Name -> (space, run_sweep strategy: ``cells`` or ``ray-optuna``)."""
    from tune_schane.space.schema import PATIENCE, STARTUP_TRIALS, WARM_START

    out = {
        "random+fifo": (dataclasses.replace(base, searcher="random", scheduler="fifo", **NO_SHARING), "cells"),
        "ray-optuna+asha": (base, "ray-optuna"),
        "cells": (dataclasses.replace(base, startup_trials=10, **NO_SHARING), "cells"),
        "default": (dataclasses.replace(base, warm_start=WARM_START, patience=PATIENCE,
                                        startup_trials=STARTUP_TRIALS), "cells"),
    }
    for text in variants:
        name, _, settings = text.partition(":")
        values = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in settings.split(",") if kv)}
        out[name] = (dataclasses.replace(base, **values), "cells")
    return out
