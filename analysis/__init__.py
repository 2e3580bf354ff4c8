"""Analysis of the trial store (DESIGN.md section 5): DataFrame in, DataFrame or figure out.

- :mod:`analysis.sensitivity`: the objective against batch size per loss family (counts by status,
  best, mean with a bootstrap CI, deltas to CE), slopes against log2(batch size), drops, and paired
  comparisons against CE at equal batch size and seed.
- :mod:`analysis.importance`: Optuna's importance evaluators (fANOVA, PED-ANOVA, MDI) on a study
  rebuilt from the stored trials, overall and per loss family.
- :mod:`analysis.slices`: the objective against τ, β, λ, lr; the ASHA budget (epochs per trial and
  per status).
- :mod:`analysis.plots` (matplotlib, headless) and :mod:`analysis.report` (one self-contained HTML
  page with the plots embedded as base64 PNG).
- :mod:`analysis.export`: the best config(s) as YAML that ``tune-schane train`` reruns.
- :mod:`analysis.command`: the ``analyze`` and ``export`` subcommands; all file I/O is there or in
  the writers it calls (``write_report``, ``export_best``).

Which trials count: ``completed`` ones with a finite ``best_objective``, unless a function is given
other ``statuses``; failed trials are always counted, never dropped (see :mod:`analysis.sensitivity`).

Nothing heavy is imported here: matplotlib and Optuna load inside the functions that need them, so
``import analysis`` (and the CLI's start-up) stays fast.
"""
