"""Data-parallel trials: one global contrastive batch over several workers, with the exact gradient.

A trial with ``workers: W`` splits every global batch of ``B`` images into ``W`` equal shares of
``B/W`` consecutive images (:class:`ShardedBatchSampler`); each worker forwards only its share. A
contrastive loss couples every row of the batch, so each worker must contrast its anchors with the
*whole* global batch, and gradients must reach the worker that produced each row. Training each
worker on its own share (or gathering without gradient) silently trains a different, ``W``-times
smaller-batch loss: exactly what a batch-size study must not do.

How the exact gradient comes about (``L`` is the single-process loss of the global batch: a mean
over the global anchors, a mean over the global rows for CE):

1. every worker gathers embeddings, logits and labels from all workers (:func:`gather_rows`, rank
   order, so the gathered batch is the single-process batch row for row) and computes ``L`` on
   it: the same value on every worker (:class:`GlobalBatchLoss`, the loss code itself is unchanged);
2. on worker ``w`` the rows of the other workers are constants, so its backward yields
   ``∂L/∂z_w``, the exact gradient of ``L`` with respect to *its own* rows; the gather's backward
   multiplies it by ``W`` (what ``torch.distributed.nn.functional.all_gather``'s reduce-scatter
   backward returns when every worker's loss is ``L``, without that communication);
3. parameter gradients are averaged over workers (:func:`average_gradients`, DDP's rule):
   ``(1/W) Σ_w W·(∂L/∂z_w)(∂z_w/∂θ) = Σ_w (∂L/∂z_w)(∂z_w/∂θ) = ∂L/∂θ``, the single-process gradient.

With the gradient cache (:func:`tune_schane.finetune.gradcache.cached_step`) step 1 happens once per step on
the chunk outputs (each worker chunks only its own share), so the cached gradient of each row is
``W·∂L/∂z`` of the global loss and step 3 pushes it through the chunks as usual; the gradients are
averaged once, after the last chunk. Nothing here depends on the number of chunks.

Why not ``torch.nn.parallel.DistributedDataParallel``: it averages exactly like step 3 (and the
tests check that a DDP-wrapped model with this gather gives the same gradient), but a CE trial
leaves the projection head without a gradient (``grad is None``, so AdamW neither decays nor moves
it), which DDP cannot express without ``find_unused_parameters`` zero-filling it, and the gradient
cache needs several backward passes per step (``no_sync`` on all but the last). One all-reduce of
the existing gradients after the step keeps the single-process semantics in both cases; it gives
up DDP's overlap of communication with the backward pass.

Exactness needs the same computation on every worker: dropout and drop-path draw per-worker masks
(exact for that model, but not the single-process masks), and **BatchNorm normalises each worker's
share with its own statistics** (like the gradient cache's chunks; ``torch.nn.SyncBatchNorm`` would
synchronise them). LayerNorm backbones (ViTs) with dropout off are exact; the tests check it.

A negatives budget (:mod:`tune_schane.losses._negatives`) works on the gathered global batch: its
``group`` assignment is a function of the global labels and its ``subsample`` mask is drawn from a
generator seeded by (order seed, step), so every worker computes the same pairs.

The loss itself is computed in full (``N × N``) on every worker: ``O(N²·D)``, small next to the
backbone (8192 rows × 128 dimensions ≈ 17 GFLOP), and it keeps one loss implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import BatchSampler, Sampler

from ..losses import CLCELoss
from ..losses.clce import cross_entropy
from ..losses.output import LossOutput


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel trial (``rank`` of ``world_size``) and its process group."""

    rank: int
    world_size: int
    group: object | None = None  # None: the default process group

    @classmethod
    def current(cls) -> Replica:
        """The default process group as initialised by ``torch.distributed`` (Ray Train does that)."""
        return cls(dist.get_rank(), dist.get_world_size())


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (equal shares); backward: this worker's slice of the gradient × world size."""

    @staticmethod
    def forward(ctx, x: Tensor, replica: Replica) -> Tensor:
        ctx.rank, ctx.world, ctx.rows = replica.rank, replica.world_size, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(replica.world_size)]
        dist.all_gather(parts, x.contiguous(), group=replica.group)
        parts[replica.rank] = x  # the very tensor, so values are bit-identical to the input
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows] * ctx.world, None


def gather_rows(x: Tensor, replica: Replica) -> Tensor:
    """``x: [n, ...]`` on each of ``W`` workers -> ``[W·n, ...]`` in rank order, differentiable w.r.t. ``x``.

    The gradient that reaches ``x`` is ``W ×`` the gradient of this worker's loss with respect to its
    own rows (module docstring, step 2); integer tensors (labels) are gathered without gradient.
    """
    if x.is_floating_point():
        return _GatherRows.apply(x, replica)
    parts = [torch.empty_like(x) for _ in range(replica.world_size)]
    dist.all_gather(parts, x.contiguous(), group=replica.group)
    return torch.cat(parts)


class GlobalBatchLoss(nn.Module):
    """A :class:`CLCELoss` on the global batch: ``loss_fn(logits, embeddings, labels)`` of this worker's rows.

    Called exactly like the wrapped loss (so the training steps take either), it gathers the rows of
    every worker first. The embeddings are not gathered when the loss does not use them (CE only),
    so the projection head keeps ``grad None`` as in a one-process trial.
    """

    def __init__(self, loss_fn: CLCELoss, replica: Replica) -> None:
        super().__init__()
        self.inner, self.replica = loss_fn, replica
        self.lam = loss_fn.lam

    def forward(self, logits: Tensor, embeddings: Tensor, labels: Tensor) -> LossOutput:
        all_logits = gather_rows(logits, self.replica)
        all_labels = gather_rows(labels, self.replica)
        if self.inner.contrastive is None:
            all_embeddings = embeddings.detach().new_zeros((all_labels.shape[0], embeddings.shape[1]))
        else:
            all_embeddings = gather_rows(embeddings, self.replica)
        return self.inner(all_logits, all_embeddings, all_labels)

    def set_step(self, step: int) -> None:
        """Forwarded to the wrapped loss; every worker sets the same step, so ``subsample`` draws one mask."""
        self.inner.set_step(step)

    def classifier_ce(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The λ = 1 classifier's CE on the global batch (see :meth:`CLCELoss.classifier_ce`)."""
        return cross_entropy(gather_rows(logits, self.replica), gather_rows(labels, self.replica))


def average_gradients(model: nn.Module, replica: Replica, bucket_mb: float = 64.0) -> None:
    """Replace every existing ``.grad`` with its mean over the workers (DDP's rule), in flat buckets.

    Parameters whose gradient is None stay None; every worker has the same ones (the loss family
    decides which heads get a gradient), which the all-reduce relies on.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    bucket: list[Tensor] = []
    size = 0
    limit = bucket_mb * 2**20
    for grad in grads:
        if bucket and (size + grad.numel() * grad.element_size() > limit or grad.dtype != bucket[0].dtype):
            _reduce_bucket(bucket, replica)
            bucket, size = [], 0
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
    if bucket:
        _reduce_bucket(bucket, replica)


def _reduce_bucket(bucket: list[Tensor], replica: Replica) -> None:
    flat = torch.cat([g.reshape(-1) for g in bucket])
    dist.all_reduce(flat, group=replica.group)
    flat /= replica.world_size
    offset = 0
    for grad in bucket:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


@torch.no_grad()
def broadcast_state(model: nn.Module, replica: Replica) -> None:
    """Every worker starts from rank 0's parameters and buffers (one broadcast each, once per trial)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0, group=replica.group)


def all_reduce_sum(values: list[float], device: torch.device, replica: Replica) -> list[float]:
    """Sums of a few numbers over the workers, in float64 (evaluation counts)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, group=replica.group)
    return t.tolist()


class ShardedBatchSampler(Sampler[list[int]]):
    """Worker ``rank``'s share of every global batch: images ``[rank·b, (rank+1)·b)``, ``b = B / W``.

    Every worker iterates the same global batches (the same sampler with the same seeded generator),
    so the shares, gathered in rank order, are the one-process batch image for image.
    """

    def __init__(self, batches: BatchSampler, replica: Replica) -> None:
        if batches.batch_size % replica.world_size:
            raise ValueError(f"batch_size {batches.batch_size} is not divisible by {replica.world_size} workers")
        self.batches, self.replica = batches, replica
        self.share = batches.batch_size // replica.world_size

    def __iter__(self) -> Iterator[list[int]]:
        start = self.replica.rank * self.share
        for batch in self.batches:
            yield batch[start:start + self.share]

    def __len__(self) -> int:
        return len(self.batches)
