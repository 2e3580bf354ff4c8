"""How a sweep searches, without Ray: the logic the Ray glue (:mod:`tune_schane.ray_tune`) drives.

- :mod:`.cell_search`: the grid's searcher (a study per cell, ``repeats`` seeds per config), in Ray's
  ``Searcher`` protocol; :mod:`.optuna_search`: one cell's Optuna study, told COMPLETE, PRUNED or FAIL;
- :mod:`.reports`: the keys a trial reports and how a trial ended;
- :mod:`.cell_sharing`: warm starts between neighbouring grid cells, and a cell's patience;
- :mod:`.group_asha`: ASHA's rung decisions over grouped seeds (one decision per config, not per seed);
- :mod:`.confirm`: the confirm stage's plan (each cell's finalists on fresh seeds, scored once on test);
- :mod:`.tracking`: the trackers a sweep writes beside the store (Optuna storage, MLflow, TensorBoard).
"""
