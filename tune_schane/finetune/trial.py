"""One trial: config -> model + data -> epochs -> metrics per epoch (DESIGN.md section 2).

Plain PyTorch, no Ray. :class:`Trial` builds everything from a :class:`TrialConfig` and yields one
metrics dict per epoch, with the same keys every epoch (Ray needs that). Checkpoints hold the
model, optimiser and scheduler state and the epoch; every epoch re-seeds the global RNG and the
data order from ``(order_seed, epoch)``, so a resumed trial reproduces the uninterrupted one exactly
without storing RNG state.

Three seeds, each defaulting to the config's ``seed`` (:meth:`TrialConfig.seeds`), so that a
comparison can vary one source of chance and hold the others:

- ``subset_seed`` picks the few-shot images (``shots`` per class, from the training pool minus val);
- ``init_seed`` seeds the global RNG just before the model is built (the randomly initialised head,
  projector and classifier, and the whole backbone without pretrained weights);
- ``order_seed`` seeds each epoch's data order and its augmentations, dropout and drop_path.

Training length (``budget_unit``): ``epochs`` passes over the training images (one report each), or a
fixed number of optimiser ``steps`` or training ``samples`` split into ``epochs`` equal reports. With a
step budget, batch 16 and batch 64 take the same number of updates, so a batch-size comparison does not
measure the schedule's length (Shallue et al. 2019); each report stores its cumulative ``steps``,
``samples``, ``data_epochs`` and ``elapsed_seconds``.

After the last epoch an evaluation protocol may run (``eval_mode``: ``linear_probe`` on the frozen encoder or
LaCViT's ``two_stage`` CE fine-tuning, :mod:`.probe`); that epoch's ``val_*`` are then the protocol's
and ``e2e_*`` keep the trial's own classifier's (equal to ``val_*`` in every other epoch).

The data a trial sees is the training pool minus a fixed validation set; the test split stays sealed
(``include_test=False``): a search trial never reads a test image (:mod:`tune_schane.data._bundle`).

The single-run driver (``tune-schane train``: outputs, checkpoints, statuses) is :mod:`tune_schane.finetune.runner`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Subset

from ..errors import BadInput
from ..losses import build_loss
from .config import TrialConfig, dump_config
from .distributed import GlobalBatchLoss, Replica, ShardedBatchSampler, broadcast_state
from .memory import auto_chunk, step_memory_model
from .model import normalisation
from .outcomes import CONFIG_FILE, EVALUATION_FILE, HISTORY_FILE, METRIC_KEYS, OBJECTIVE, PROTOCOL_METRICS
from .probe import run_protocol
from .train import (
    Take,
    TrialStopped,
    autocast_for,
    evaluate,
    is_out_of_memory,
    peak_memory_mb,
    resolve_device,
    train_one_epoch,
)

CHECKPOINT_FILE = "checkpoint.pt"


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed per (order seed, epoch)."""
    return (seed * 1_000_003 + epoch) % (2**63)


class Trial:
    """Everything one trial needs, built from its config; ``run()`` yields per-epoch metrics.

    With ``replica`` this process is one worker of a data-parallel trial (``config.workers`` of them,
    :mod:`tune_schane.finetune.distributed`): it trains on its share of each global batch with the loss of the
    global batch, scores its share of the validation set, and starts from rank 0's weights.
    """

    def __init__(self, config: TrialConfig, replica: Replica | None = None) -> None:
        from ..data import build_data
        from .model import build_model
        from .optim import build_optimizer, build_scheduler, scaled_lr

        self.config = cfg = config.resolved()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)  # a reused Ray worker keeps its first trial's count
        self.device = resolve_device(cfg.device)
        self.replica = replica
        world = replica.world_size if replica is not None else 1
        if world != cfg.workers:
            raise BadInput(f"workers: {cfg.workers} runs as a data-parallel job of {cfg.workers} processes "
                           f"(a sweep runs it on Ray Train); this is {world} (set workers=1 to run it here)")
        self.seeds = cfg.seeds()
        img_size, mean, std = normalisation(cfg.model, cfg.img_size, cfg.pretrained)
        self.data = build_data(cfg.dataset, root=cfg.data_root, download=cfg.download, shots=cfg.shots,
                               seed=self.seeds.subset, img_size=img_size, mean=mean, std=std, views=cfg.views,
                               val_size=cfg.val_size, include_test=cfg.score_test)  # test: confirm trials only
        n_train = len(self.data.train)
        if cfg.batch_size > n_train:
            raise BadInput(f"batch_size: {cfg.batch_size} is larger than the training set ({n_train} images)")
        torch.manual_seed(self.seeds.init)
        self.model = build_model(cfg.model, self.data.num_classes, pretrained=cfg.pretrained,
                                 weights=cfg.weights, img_size=cfg.img_size, proj_dim=cfg.proj_dim,
                                 drop_path_rate=cfg.drop_path_rate).to(self.device)
        if replica is not None:
            broadcast_state(self.model, replica)
        # The negatives budget works on the global batch (GlobalBatchLoss gathers it first); `subsample`
        # draws its mask from (order seed, step), the same on every worker and on a rerun.
        local_loss = build_loss(cfg.loss, cfg.tau, cfg.beta, cfg.lam, cfg.detach_weights, negatives=cfg.negatives,
                                negatives_size=cfg.negatives_size, views=cfg.views, seed=self.seeds.order)
        self.loss_fn = GlobalBatchLoss(local_loss, replica) if replica is not None else local_loss
        if cfg.contrastive_chunk is None and cfg.memory_budget_mb:
            # Probed with every pair: the probe batches need not split into groups; the budget adds a
            # few N×N masks to the N×N matrices the loss builds anyway.
            probe_loss = build_loss(cfg.loss, cfg.tau, cfg.beta, cfg.lam, cfg.detach_weights)
            self.config = cfg = self._fit_memory_budget(cfg, img_size, probe_loss)
        self.lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_rule, cfg.lr_ref_batch)
        self.optimizer = build_optimizer(self.model, cfg.optimizer, self.lr, cfg.weight_decay, cfg.layer_decay)
        self.steps_per_epoch = n_train // cfg.batch_size  # drop_last: every step sees a full batch
        self.total_steps = cfg.total_steps(self.steps_per_epoch)
        # Report k ends after report_ends[k-1] steps: k passes with an epoch budget, k equal shares of a step budget.
        self.report_ends = [round(k * self.total_steps / cfg.epochs) for k in range(1, cfg.epochs + 1)]
        self.scheduler = build_scheduler(self.optimizer, epochs=cfg.epochs,
                                         steps_per_epoch=self.steps_per_epoch, warmup_epochs=cfg.warmup_epochs,
                                         total_steps=None if cfg.budget_unit == "epochs" else self.total_steps)
        self.val_loader = self._eval_loader(self.data.val)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.test_result: dict[str, float] | None = None  # the one score on test (score_test), after the last epoch
        self.best_val: tuple[float, int, dict] | None = None  # (val_top1, epoch, weights) for test_epoch=best_val
        self.resume_rng: torch.Tensor | None = None  # torch's CPU RNG at the checkpoint (a report that ends mid-pass)
        self.protocol: dict | None = None  # how the eval_mode's protocol ran (.probe), after the last epoch

    def _eval_loader(self, dataset) -> DataLoader:
        """One deterministic pass over ``dataset``; a data-parallel worker scores its share."""
        replica, world = self.replica, self.config.workers
        part = dataset if replica is None else Subset(dataset, range(replica.rank, len(dataset), world))
        # Its own generator: a DataLoader draws a seed for its iterator from torch's global RNG otherwise,
        # so each evaluation would move the augmentations and dropout of the training after it, and a run
        # reporting every 1/4 epoch would train differently from one reporting every epoch.
        return DataLoader(part, batch_size=max(self.config.batch_size // world, 64), shuffle=False,
                          num_workers=self.config.num_workers, generator=torch.Generator())

    def _fit_memory_budget(self, cfg: TrialConfig, img_size: int, loss_fn) -> TrialConfig:
        """The config with an automatic gradient-cache chunk when the batch would exceed the budget.

        A worker of a data-parallel trial plans for its own share, probing with the local loss (no
        collective in the probes; the global loss matrix is left out of the estimate).
        """
        fixed, per_image = step_memory_model(self.model, loss_fn, self.device, img_size=img_size,
                                             views=cfg.views, num_classes=self.data.num_classes,
                                             autocast=lambda: autocast_for(self.device, cfg.amp))
        share = cfg.batch_size // cfg.workers
        chunk = auto_chunk(share, cfg.memory_budget_mb, fixed, per_image)
        self.memory_estimate_mb = fixed + per_image * share
        return dataclasses.replace(cfg, contrastive_chunk=chunk) if chunk else cfg

    def _train_loader(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(epoch_seed(self.seeds.order, epoch))
        sampler = RandomSampler(self.data.train, generator=generator)
        options = {"num_workers": self.config.num_workers, "pin_memory": self.device.type == "cuda"}
        if self.replica is not None:  # the same global batches on every worker, each takes its share
            batches = BatchSampler(sampler, self.config.batch_size, drop_last=True)
            return DataLoader(self.data.train, batch_sampler=ShardedBatchSampler(batches, self.replica), **options)
        return DataLoader(self.data.train, batch_size=self.config.batch_size, drop_last=True, sampler=sampler,
                          **options)

    def _batch_stream(self, start_step: int) -> Iterator:
        """Training batches from step ``start_step`` on, pass after pass over the training images.

        Pass p draws its order from ``epoch_seed(order_seed, p)`` and reseeds torch's RNG (augmentations,
        dropout) at its start, so an epoch budget sees exactly one pass per report. A resumed run skips the
        batches before ``start_step`` by drawing them (the RNG then matches an uninterrupted run).
        """
        rank = self.replica.rank if self.replica is not None else 0
        pass_index, skip = divmod(start_step, self.steps_per_epoch)
        while True:
            pass_index += 1
            torch.manual_seed(epoch_seed(self.seeds.order, pass_index) + rank)  # augmentations, dropout, drop_path
            batches = iter(self._train_loader(pass_index))
            if skip:  # resumed mid-pass: the same order; then the CPU RNG as the checkpoint left it (CUDA dropout
                # masks of such a resume are drawn afresh)
                for _ in range(skip):
                    next(batches)
                skip = 0
                if self.resume_rng is not None:
                    torch.set_rng_state(self.resume_rng)
            yield from batches

    def run(self, wrap_batches: Callable[[Iterable, int], Iterable] | None = None) -> Iterator[dict[str, float]]:
        """Train the remaining reports (epochs); yield each one's metrics. Raises :class:`TrialStopped`.

        A report is one pass over the training images (``budget_unit: epochs``) or an equal share of a
        step/sample budget. ``wrap_batches(batches, epoch)`` may wrap each report's training batches (a
        progress bar: :mod:`tune_schane.cli._progress`); the loop sees the same batches either way.
        """
        cfg = self.config
        done = self.report_ends[self.epoch - 1] if self.epoch else 0
        stream = self._batch_stream(done)
        elapsed = self.history[-1].get("elapsed_seconds", math.nan) if self.history else 0.0
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            start = time.perf_counter()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            try:
                loader = Take(stream, self.report_ends[epoch - 1] - done)
                batches = wrap_batches(loader, epoch) if wrap_batches is not None else loader
                train = train_one_epoch(self.model, batches, self.loss_fn, self.optimizer, self.scheduler,
                                        self.device, amp=cfg.amp, chunk=cfg.contrastive_chunk, replica=self.replica,
                                        first_step=done)
                val = evaluate(self.model, self.val_loader, self.device, amp=cfg.amp, replica=self.replica)
            except TrialStopped:
                raise
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise TrialStopped("oom", f"out of memory at batch size {cfg.batch_size}: {exc}") from exc
                raise
            done = self.report_ends[epoch - 1]
            seconds = time.perf_counter() - start
            elapsed += seconds
            metrics = {"epoch": epoch, **val, **train, "peak_mem_mb": peak_memory_mb(self.device),
                       "epoch_seconds": seconds, "lr": max(group["lr"] for group in self.optimizer.param_groups),
                       "steps": done, "samples": done * cfg.batch_size, "data_epochs": done / self.steps_per_epoch,
                       "elapsed_seconds": elapsed,
                       "e2e_top1": val["val_top1"], "e2e_top5": val["val_top5"], "e2e_loss": val["val_loss"],
                       "eval_seconds": 0.0}
            metrics = {key: float(metrics.get(key, math.nan)) for key in METRIC_KEYS}
            if epoch == cfg.epochs and cfg.eval_mode != "end_to_end":
                metrics = self._run_protocol(metrics)  # its val_* replace the epoch's; it scores test itself
            self.epoch = epoch
            self.history.append(metrics)
            if cfg.score_test and cfg.eval_mode == "end_to_end":
                self._keep_best_val(metrics)
                if epoch == cfg.epochs:
                    self.test_result = self._score_test(epoch)
            yield metrics

    def _run_protocol(self, metrics: dict[str, float]) -> dict[str, float]:
        """The last epoch's metrics with the protocol's val numbers (``eval_mode``, :mod:`.probe`).

        The epoch's own classifier stays in ``e2e_*`` (and, with ``score_test``, ``test_e2e_top1``, scored
        before two_stage changes the weights); ``eval_seconds`` is the protocol's cost. Runs once per trial:
        a trial resumed after its last epoch has nothing left to run (its checkpoint holds the numbers).
        """
        cfg = self.config
        e2e_test = self._score_test(cfg.epochs) if cfg.score_test else None
        start = time.perf_counter()
        loaders = {"val": self.val_loader, **({"test": self._eval_loader(self.data.test)} if cfg.score_test else {})}
        try:
            outcome = run_protocol(cfg, self.model, self.device, num_classes=self.data.num_classes,
                                   probe_loader=self._eval_loader(self.data.train_eval),
                                   stage2_loader=self._stage2_loader, eval_loaders=loaders,
                                   steps_per_epoch=self.steps_per_epoch, seed=self.seeds.init)
        except TrialStopped:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise TrialStopped("oom", f"out of memory in {cfg.eval_mode} at batch size {cfg.batch_size}: "
                                          f"{exc}") from exc
            raise
        seconds = time.perf_counter() - start
        self.protocol = {**outcome.info, "seconds": seconds}
        if e2e_test is not None and outcome.test is not None:
            self.test_result = {**e2e_test, "test_top1": outcome.test["val_top1"],
                                "test_top5": outcome.test["val_top5"], "test_loss": outcome.test["val_loss"]}
        return {**metrics, **{key: float(outcome.val[key]) for key in PROTOCOL_METRICS}, "eval_seconds": seconds}

    def _stage2_loader(self, k: int) -> DataLoader:
        """Stage 2's ``k``-th epoch of training batches, seeded as epoch ``epochs + k`` would be."""
        epoch = self.config.epochs + k
        torch.manual_seed(epoch_seed(self.seeds.order, epoch))  # augmentations, dropout, drop_path
        return self._train_loader(epoch)

    def _keep_best_val(self, metrics: dict[str, float]) -> None:
        """With ``test_epoch: best_val``, a copy of the weights of the best epoch on val (the first of ties)."""
        value = metrics[OBJECTIVE]
        if self.config.test_epoch == "best_val" and math.isfinite(value) and (
                self.best_val is None or value > self.best_val[0]):
            weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best_val = (value, int(metrics["epoch"]), weights)

    def _score_test(self, last_epoch: int) -> dict[str, float]:
        """Score the chosen epoch's weights once on the sealed test split (the confirm stage's number).

        The epoch is the last one (``test_epoch: final``) or the best on val (``best_val``), chosen
        before test is read; the final weights are put back afterwards, so the checkpoint stays the run's.
        This is the trial's own classifier; with an eval_mode protocol, :meth:`_run_protocol` puts the
        protocol's test score in ``test_top1/5/loss`` and keeps this one as ``test_e2e_top1``.
        """
        cfg = self.config
        final = None
        epoch = last_epoch
        if cfg.test_epoch == "best_val" and self.best_val is not None:
            final = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            _, epoch, weights = self.best_val
            self.model.load_state_dict(weights)
        try:
            scores = evaluate(self.model, self._eval_loader(self.data.test), self.device, amp=cfg.amp,
                              replica=self.replica)
        finally:
            if final is not None:
                self.model.load_state_dict(final)
        return {"test_top1": scores["val_top1"], "test_top5": scores["val_top5"], "test_loss": scores["val_loss"],
                "test_e2e_top1": scores["val_top1"], "test_epoch": epoch, "test_images": len(self.data.test),
                "test_epoch_pick": cfg.test_epoch}

    def evaluation(self) -> dict:
        """Where the metrics came from (``splits``: the data roles) and the test score, for the store."""
        return {"splits": dict(getattr(self.data, "split_info", {}) or {}), "test": self.test_result,
                "protocol": self.protocol}

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "history": self.history, "test_result": self.test_result, "rng": torch.get_rng_state(),
                 "protocol": self.protocol}
        if self.best_val is not None:  # a resumed confirm trial still scores the best epoch's weights
            state["best_val"] = {"value": self.best_val[0], "epoch": self.best_val[1], "weights": self.best_val[2]}
        return state

    def write_outputs(self, directory: str | Path) -> None:
        """Write the resolved config (``config.yaml``) and the metrics so far (``history.json``), atomically.

        Readable without torch: every caller records a trial in the store from these files
        (:func:`tune_schane.store.records.read_outputs`), so the automatic chunk and memory budget decided
        here reach the store by this one path, and a sweep's record survives driver restarts.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dump_config(self.config, directory / CONFIG_FILE)
        for name, content in ((EVALUATION_FILE, self.evaluation()), (HISTORY_FILE, self.history)):
            tmp = directory / f".{name}.tmp"
            tmp.write_text(json.dumps(content))
            tmp.replace(directory / name)

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write ``checkpoint.pt`` atomically into ``directory``, with the trial's outputs beside it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{CHECKPOINT_FILE}.tmp"
        torch.save(self.state_dict(), tmp)
        self.write_outputs(directory)
        return tmp.replace(directory / CHECKPOINT_FILE)

    def load_checkpoint(self, directory: str | Path) -> None:
        path = Path(directory) / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise BadInput(f"{path}: no checkpoint to resume from") from None
        except Exception as exc:
            raise BadInput(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.test_result = state.get("test_result")
        self.resume_rng = state.get("rng")
        self.protocol = state.get("protocol")
        best = state.get("best_val")
        self.best_val = (float(best["value"]), int(best["epoch"]), best["weights"]) if best else None
