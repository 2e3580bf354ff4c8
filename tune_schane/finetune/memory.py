"""Peak memory of a training step, and the gradient-cache chunk that keeps a step within a budget.

A batch-size study must not lose its large batches to out-of-memory errors, nor shrink them
(that would change the experiment). With ``memory_budget_mb`` set (by hand, or by the Ray glue from
the trial's GPU share) a trial measures its step memory before training and, when the requested
batch would not fit, trains it gradient-cached (:mod:`tune_schane.finetune.gradcache`): the exact
full-batch gradient with the activations of ``chunk`` images at a time.

The estimate is linear in the batch: two probe steps at ``p`` and ``2p`` images give
``memory(b) ≈ fixed + per_image · b`` (``fixed``: weights, gradients, optimiser-free workspace).
The probes leave no trace: parameters are not stepped, gradients are cleared, buffers (BatchNorm
statistics) and the RNG state are restored, so a trial with a budget that does not bind trains
exactly like one without.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import torch
from torch import nn

from ..losses import CLCELoss
from .gradcache import get_rng_state, plain_step, restore_buffers, set_rng_state, snapshot_buffers

HEADROOM = 0.8  # plan for 80 % of the budget: allocator fragmentation, the loss's N×N matrices


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak bytes allocated during ``fn`` above what was allocated when it started, in MiB.

    CUDA: the caching allocator's peak. CPU: the torch profiler's allocation trace, measured from
    this call's first allocation (the profiler's running total is process-wide and never resets).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = [e for e in json.load(fh)["traceEvents"] if e.get("name") == "[memory]"]
    finally:
        os.unlink(path)
    if not events:
        return 0.0
    events.sort(key=lambda e: (e["ts"], e["args"].get("Ev Idx", 0)))
    base = events[0]["args"]["Total Allocated"] - events[0]["args"]["Bytes"]
    return max(0, *(e["args"]["Total Allocated"] - base for e in events)) / 2**20


def step_memory_model(model: nn.Module, loss_fn: CLCELoss, device: torch.device, *, img_size: int, views: int,
                      num_classes: int, probe: int = 4, autocast=None) -> tuple[float, float]:
    """``(fixed_mib, per_image_mib)`` of one plain training step, from probes at ``probe`` and ``2·probe`` images."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    buffers = snapshot_buffers(model)
    rng = get_rng_state(device)
    was_training = model.training
    model.train()
    peaks = []
    try:
        # The first step of a process also allocates lazily created workspaces (cuBLAS, cuDNN), which
        # would inflate the small probe and flatten the slope: one unmeasured warm-up step first.
        for images in (probe, probe, 2 * probe):
            x = torch.rand(images * views, 3, img_size, img_size, device=device)
            y = (torch.arange(images, device=device) % max(1, num_classes)).repeat_interleave(views)

            def step(x=x, y=y) -> None:
                plain_step(model, x, y, loss_fn, detach_classifier=loss_fn.lam == 1.0, autocast=autocast)

            peaks.append(peak_memory_mib(step, device))
            model.zero_grad(set_to_none=True)
    finally:
        restore_buffers(buffers)
        set_rng_state(rng, device)
        model.train(was_training)
    per_image = max(0.0, (peaks[2] - peaks[1]) / probe)
    return max(0.0, peaks[1] - per_image * probe), per_image


def auto_chunk(batch_size: int, budget_mib: float, fixed_mib: float, per_image_mib: float) -> int | None:
    """The gradient-cache chunk (images) for ``batch_size`` within ``budget_mib``; None when the batch fits.

    The largest power of two whose estimated step fits in ``HEADROOM · budget``, at least 1 (a step that
    cannot fit even one image then runs out of memory and ends ``oom``, as it must).
    """
    usable = HEADROOM * budget_mib - fixed_mib
    if per_image_mib <= 0 or per_image_mib * batch_size <= usable:
        return None
    chunk = 1
    while chunk * 2 < batch_size and per_image_mib * chunk * 2 <= usable:
        chunk *= 2
    return chunk
