"""One ``train_one_epoch`` and one ``evaluate`` for every loss family (the loss is a parameter).

The loop knows nothing of Ray, the store or the CLI. It raises :class:`TrialStopped` when a trial
must end early with a status of its own: ``diverged`` (a non-finite loss or embedding: stopped at
once, never retried) or ``oom`` (out of memory: never retried at a smaller batch, which would
corrupt a batch-size study).
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import time
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import BadInput
from ..losses import CLCELoss, NonFiniteEmbeddings
from ..losses.clce import cross_entropy
from .distributed import Replica, all_reduce_sum, average_gradients
from .gradcache import NonFiniteLoss, cached_step, plain_step

# Fault injection for tests and drills: a training step at a batch size >= this value raises
# torch.OutOfMemoryError, as a GPU would. Read at every step so Ray workers see it too.
SIMULATE_OOM_ENV = "TUNE_SCHANE_SIMULATE_OOM_AT_BATCH"


class TrialStopped(Exception):
    """The trial ended early with ``status`` (``diverged`` or ``oom``)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _maybe_simulate_oom(batch_size: int) -> None:
    limit = os.environ.get(SIMULATE_OOM_ENV)
    if limit and batch_size >= int(limit):
        raise torch.OutOfMemoryError(f"simulated out of memory at batch size {batch_size} (>= {limit})")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def autocast_for(device: torch.device, amp: bool):
    # bf16 autocast on CUDA only: CPU bf16 is slow on most CPUs and changes numerics needlessly.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    loss_fn: CLCELoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    *,
    amp: bool = False,
    chunk: int | None = None,
    replica: Replica | None = None,
    first_step: int = 0,
) -> dict[str, float]:
    """Train one epoch on batches of ``(views [B, V, C, H, W], labels [B])``; return mean metrics.

    All ``B·V`` views go through the model; views repeat their image's label. At ``λ = 1`` the
    classifier is trained on detached features (its CE is added to the backward pass only) so
    accuracy is measurable without CE shaping the backbone (DESIGN.md section 1). With ``chunk``
    (images) the step is gradient-cached (:mod:`tune_schane.finetune.gradcache`): the exact full-batch
    gradient at the memory of a ``chunk``-image step.

    With ``replica`` (a data-parallel trial, :mod:`tune_schane.finetune.distributed`) ``loader`` yields this
    worker's share of each global batch, ``loss_fn`` is a :class:`~tune_schane.finetune.distributed.GlobalBatchLoss`
    and the gradients are averaged over the workers before the optimiser steps; the metrics are
    those of the global batch (the same on every worker).

    ``first_step`` is the trial's step count before this epoch; the loss is told each step's number
    (``loss_fn.set_step``), which seeds a ``subsample`` negatives budget's draw reproducibly.
    """
    model.train()
    classifier_only_ce = loss_fn.lam == 1.0
    sums = {"train_loss": 0.0, "train_ce": 0.0, "train_contrastive": 0.0,
            "pos_per_anchor": 0.0, "neg_per_anchor": 0.0, "valid_anchors": 0.0}
    steps = images = 0
    world = replica.world_size if replica is not None else 1
    start = time.perf_counter()
    for views, labels in loader:
        batch, n_views = views.shape[:2]
        _maybe_simulate_oom(batch * world)  # the global batch, so every worker stops at the same step
        x = views.to(device, non_blocking=True).flatten(0, 1)
        y = labels.to(device, non_blocking=True).repeat_interleave(n_views)
        optimizer.zero_grad(set_to_none=True)
        loss_fn.set_step(first_step + steps)
        try:
            if chunk:
                out, _ = cached_step(model, x, y, loss_fn, chunk_rows=chunk * n_views,
                                         detach_classifier=classifier_only_ce,
                                         autocast=lambda: autocast_for(device, amp))
            else:
                out, _ = plain_step(model, x, y, loss_fn, detach_classifier=classifier_only_ce,
                                        autocast=lambda: autocast_for(device, amp))
        except NonFiniteEmbeddings as exc:
            raise TrialStopped("diverged", f"non-finite embeddings at step {steps + 1}") from exc
        except NonFiniteLoss as exc:
            raise TrialStopped("diverged", f"{exc} at step {steps + 1}") from exc
        if replica is not None:
            average_gradients(model, replica)
        optimizer.step()
        scheduler.step()
        steps += 1
        images += batch * world
        sums["train_loss"] += out.loss.item()
        for key, value in (("train_ce", out.ce), ("train_contrastive", out.contrastive),
                           ("pos_per_anchor", out.pos_per_anchor), ("neg_per_anchor", out.neg_per_anchor),
                           ("valid_anchors", out.valid_anchors)):
            sums[key] += math.nan if value is None else float(value)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    metrics = {key: value / max(steps, 1) for key, value in sums.items()}
    metrics["images_per_s"] = images / seconds if seconds > 0 else math.nan
    metrics["train_seconds"] = seconds
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device, *, amp: bool = False,
    replica: Replica | None = None,
) -> dict[str, float]:
    """Top-1, top-5 (top-C when there are fewer than 5 classes) and CE of the classifier.

    With ``replica`` each worker scores its share of the validation set and the counts are summed,
    so every worker returns the metrics of the whole set.
    """
    model.eval()
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    for images, labels in loader:
        x, y = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast_for(device, amp):
            _, logits = model(x)
        logits = logits.float()
        loss_sum += cross_entropy(logits, y).item() * y.shape[0]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        total += y.shape[0]
    if replica is not None:
        correct1, correct5, total, loss_sum = all_reduce_sum([correct1, correct5, total, loss_sum], device, replica)
    if total == 0:
        return {"val_top1": math.nan, "val_top5": math.nan, "val_loss": math.nan}
    return {"val_top1": 100.0 * correct1 / total, "val_top5": 100.0 * correct5 / total,
            "val_loss": loss_sum / total}


def local_gpus() -> float:
    """This machine's CUDA devices (what a local Ray cluster gets; its CPUs are ``os.cpu_count()``)."""
    return float(torch.cuda.device_count())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadInput(f"device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"device: {name!r} requested but CUDA is not available")
    return device


class Take:
    """The next ``n`` items of an iterator, with a length (a progress bar shows the report's steps)."""

    def __init__(self, iterator: Iterator, n: int) -> None:
        self.iterator, self.n = iterator, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        return itertools.islice(self.iterator, self.n)
