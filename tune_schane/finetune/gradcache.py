"""Training steps: the plain full-batch step, and the gradient-cached step (docs/gradcache.md).

A contrastive loss couples every row of the batch (each anchor's denominator runs over all the
others), so the batch cannot simply be split into accumulated micro-batches: the gradient of the
loss with respect to one row's embedding depends on all rows. Gradient caching (Gao et al. 2021,
arXiv:2101.06983) splits the *model* instead of the loss:

1. forward every chunk without autograd and keep only its outputs ``(z, logits)`` (small);
2. compute the full-batch loss on those outputs as leaf tensors and back-propagate to them, which
   gives ``dL/dz`` and ``dL/dlogits`` for every row (the "gradient cache");
3. forward every chunk again with autograd and back-propagate the cached output gradients through
   it; parameter gradients accumulate chunk by chunk in ``.grad``.

By the chain rule step 3 yields exactly the full-batch parameter gradient, provided the second
forward reproduces the first one. Two things could break that, and both are handled here:

* randomness (dropout, drop-path): each chunk's RNG state is saved before its first forward and
  restored before its second, so both forwards draw the same masks;
* state updated by the forward (BatchNorm running statistics): all buffers are snapshotted before
  step 1 and restored after it, so the running statistics are updated by step 3 only, once per
  chunk. BatchNorm still normalises each chunk with that chunk's batch statistics, in both
  forwards, so with BatchNorm the gradient is exact for a model whose BN uses chunk statistics
  (like data-parallel BN without synchronisation), not for full-batch BN.

The peak memory is that of one chunk's activations plus the cached outputs and their gradients
(``N × (D + C)`` numbers), at the price of one extra no-grad forward per step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from ..losses import CLCELoss
from ..losses.output import LossOutput


class NonFiniteLoss(FloatingPointError):
    """The step's loss is NaN or infinite: the trial has diverged."""


def plain_step(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: CLCELoss, *, detach_classifier: bool,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[LossOutput, Tensor]:
    """Forward the whole batch ``x: [N, C, H, W]`` with gradients and back-propagate; return (parts, total).

    With ``detach_classifier`` (λ = 1) the classifier's CE on detached features is added to the
    backward pass (``out.ce`` is a detached copy for logging, so it is recomputed here).
    """
    with autocast():
        embeddings, logits = model(x, detach_classifier=detach_classifier)
    out = loss_fn(logits, embeddings, y)
    total = out.loss + loss_fn.classifier_ce(logits, y) if detach_classifier else out.loss
    if not torch.isfinite(total):
        raise NonFiniteLoss(f"non-finite loss ({total.item()})")
    total.backward()
    return out, total.detach()


# One generator state per device that dropout may draw from: the CPU default generator always,
# plus the default CUDA generator of the batch's device when the batch is on a GPU.
_RngState = tuple[Tensor, Tensor | None]


def get_rng_state(device: torch.device) -> _RngState:
    """The RNG state a forward on ``device`` may consume (copies, safe to keep)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: _RngState, device: torch.device) -> None:
    """Put back a state from :func:`get_rng_state`, so the next forward draws the same masks."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def snapshot_buffers(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    """Copies of every buffer, so the no-grad pass can be made side-effect free.

    All buffers rather than only BatchNorm's: any module that updates a buffer in training mode
    (BN running statistics and ``num_batches_tracked``, EvoNorm's running variance, ...) would
    otherwise count each chunk twice per step. Buffers are small next to activations.
    """
    return [(buf, buf.detach().clone()) for buf in model.buffers()]


@torch.no_grad()
def restore_buffers(snapshot: list[tuple[Tensor, Tensor]]) -> None:
    for buf, saved in snapshot:
        buf.copy_(saved)


def _detached(out: LossOutput) -> LossOutput:
    """The loss parts with every tensor cut from the (already consumed) graph, for logging."""
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    return dataclasses.replace(out, **{k: v.detach() for k, v in fields.items() if isinstance(v, Tensor)})


def cached_step(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: CLCELoss, *, chunk_rows: int, detach_classifier: bool,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[LossOutput, Tensor]:
    """:func:`plain_step`'s gradient at the memory of ``chunk_rows`` rows; return (parts, total), detached.

    ``x: [N, C, H, W]`` holds all ``N = B·V`` views (image-major, so a chunk of ``k·V`` rows holds
    ``k`` whole images). Leaves the full-batch gradient in ``.grad`` (accumulated, as
    ``backward`` does; the caller zeroes before). Raises :class:`NonFiniteLoss` (or the loss's
    ``NonFiniteEmbeddings``) before any parameter gradient is touched.

    RNG: after the step the generators are in the state that one chunked pass over the batch
    leaves them in (the state after step 1), so the stream advances once per step, not twice.
    When one chunk holds the whole batch the cache would only add a forward, so the plain step
    runs instead (same gradient, same RNG use).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if chunk_rows >= x.shape[0]:
        out, total = plain_step(model, x, y, loss_fn, detach_classifier=detach_classifier, autocast=autocast)
        return _detached(out), total
    device = x.device
    chunks = x.split(chunk_rows)

    # Step 1: outputs of every chunk, no autograd graph kept; forward side effects undone after.
    states: list[_RngState] = []
    zs: list[Tensor] = []
    logit_parts: list[Tensor] = []
    buffers = snapshot_buffers(model)
    try:
        with torch.no_grad():
            for xc in chunks:
                states.append(get_rng_state(device))
                with autocast():
                    z, logits = model(xc, detach_classifier=detach_classifier)
                zs.append(z)
                logit_parts.append(logits)
    finally:
        restore_buffers(buffers)
    del buffers
    after_forward = get_rng_state(device)

    # Step 2: the full-batch loss on leaf copies of the outputs, exactly as plain_step forms it.
    embeddings = torch.cat(zs).requires_grad_(True)
    logits = torch.cat(logit_parts).requires_grad_(True)
    del zs, logit_parts
    out = loss_fn(logits, embeddings, y)
    total = out.loss + loss_fn.classifier_ce(logits, y) if detach_classifier else out.loss
    if not torch.isfinite(total):
        raise NonFiniteLoss(f"non-finite loss ({total.item()})")
    total.backward()
    # None where the loss does not use an output (CE only: no z; λ = 1 undetached: no logits);
    # that output is then left out of step 3 so its head keeps grad None, as in plain_step.
    grad_z, grad_logits = embeddings.grad, logits.grad

    # Step 3: replay each chunk with its step-1 RNG state and push the cached gradients through it.
    try:
        start = 0
        for xc, state in zip(chunks, states, strict=True):
            rows = slice(start, start + xc.shape[0])
            start = rows.stop
            set_rng_state(state, device)
            with autocast():
                z, chunk_logits = model(xc, detach_classifier=detach_classifier)
            pairs = [(t, g[rows]) for t, g in ((z, grad_z), (chunk_logits, grad_logits)) if g is not None]
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    finally:
        set_rng_state(after_forward, device)
    return _detached(out), total.detach()
