"""Fine-tuning one trial in plain PyTorch, no Ray: where to change how a trial trains.

- :mod:`.config`: ``TrialConfig``, every setting of one trial, and the YAML it is read from;
- :mod:`.trial`: ``Trial``, config -> model + data -> reports (epochs or step shares) -> metrics;
- :mod:`.runner`: ``run_trial``, the single-run driver behind ``tune-schane train``;
- :mod:`.train`: one report's optimiser steps (``train_one_epoch``) and ``evaluate``;
- :mod:`.optim`: optimiser, learning-rate rule (``scaled_lr``) and schedule;
- :mod:`.model`: the timm backbone with projector and classifier; :mod:`.pretrained`: packaged ImageNet weights;
- :mod:`.probe`: evaluation protocols after training (linear probe, two-stage);
- :mod:`.gradcache`, :mod:`.memory`: large batches in bounded memory; :mod:`.distributed`: data-parallel workers;
- :mod:`.outcomes`: the names a trial's outcome is told in (metrics, statuses, output files), torch-free.

The losses (:mod:`tune_schane.losses`) and the data (:mod:`tune_schane.data`) sit beside this package,
below it. Nothing is imported here, so ``tune_schane.finetune.config`` and ``.outcomes`` stay torch-free.
"""
