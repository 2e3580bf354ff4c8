"""Timing and peak-memory helpers shared by the benchmarks."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object], device: torch.device, repeats: int = 10, warmup: int = 3
) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak bytes allocated *during* ``fn`` (inputs allocated before it are not counted), in MiB.

    CUDA: the caching allocator's ``max_memory_allocated`` relative to the start. CPU: the torch
    profiler's ``Total Allocated`` counter of the CPU allocator (profile_memory=True).
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
            events = json.load(fh)["traceEvents"]
    finally:
        os.unlink(path)
    # ``Total Allocated`` is a process-wide running sum that never resets between profiling sessions
    # (a block allocated in one and freed outside any is never subtracted), so measure relative to
    # its value just before this call's first allocation; otherwise results drift with call order.
    events = sorted((e for e in events if e.get("name") == "[memory]"),
                    key=lambda e: (e["ts"], e["args"].get("Ev Idx", 0)))
    if not events:
        return 0.0
    base = events[0]["args"]["Total Allocated"] - events[0]["args"]["Bytes"]
    return max(0, *(e["args"]["Total Allocated"] - base for e in events)) / 2**20


def devices() -> list[torch.device]:
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def machine_line() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
