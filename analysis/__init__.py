"""Analysis of the trial store (DESIGN.md section 5): DataFrame in, DataFrame or figure out.

- :mod:`analysis.sensitivity`: accuracy against batch size per loss family, with bootstrap CIs,
  slopes against log2(batch size), drops, deltas to CE and paired comparisons over seeds.
- :mod:`analysis.importance`: Optuna's importance evaluators on a study rebuilt from the store.
- :mod:`analysis.slices`: the objective against τ, β, λ, lr; the ASHA budget picture.
- :mod:`analysis.plots` (matplotlib, headless), :mod:`analysis.report` (one self-contained HTML).
- :mod:`analysis.export`: the best config(s) as YAML that ``tune-schane train`` reruns.
- :mod:`analysis.command`: the ``analyze`` and ``export`` subcommands (all file I/O is here).

Nothing heavy is imported here: matplotlib and Optuna load inside the functions that need them.
"""
