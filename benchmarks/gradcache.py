"""Gradient-cached step against the plain step: time per step and peak memory (docs/gradcache.md).

For each model the same training step (CLCE, λ = 0.5, τ = 0.1, β = 1, 2 views per image, no dropout)
runs three ways: plain at ``c`` images, plain at ``k·c`` images, cached at ``k·c`` images in chunks
of ``c`` images (``k`` = 8 by default). The cache promises the memory of the first at the batch of
the second for about one extra forward pass, so the table's ratios are cached(k·c)/plain(c) memory
(≈ 1 is the goal) and cached(k·c)/plain(k·c) time (≈ 4/3 expected: forward ≈ 1/3 of a step). The
last column is the largest gradient difference cached vs plain at k·c, relative to the largest
gradient, as a check that the timed steps compute the same thing.

    python -m benchmarks.gradcache [--factor 8] [--configs test_vit:64:16 vit_tiny_patch16_224:64:8]
                                   [--amp] [--devices cpu cuda] [--repeats N]

A config is ``model:img:chunk_images``; without ``--configs`` each device gets its defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable

import torch

from benchmarks.common import devices, machine_line, median_seconds, peak_memory_mib

VIEWS = 2
NUM_CLASSES = 100
DEFAULT_CONFIGS = {  # device type -> (timm model, image size, chunk in images)
    "cpu": [("test_vit", 64, 16), ("vit_tiny_patch16_224", 64, 8)],
    "cuda": [("test_vit", 64, 64), ("vit_tiny_patch16_224", 224, 32), ("vit_small_patch16_224", 224, 32)],
}


def parse_config(text: str) -> tuple[str, int, int]:
    name, img, chunk = text.rsplit(":", 2)
    return name, int(img), int(chunk)


def _inputs(images: int, img: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(images)
    x = torch.randn(images * VIEWS, 3, img, img, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (images,), generator=g).repeat_interleave(VIEWS).to(device)
    return x, y


def _step(model, x, y, loss_fn, autocast, chunk_rows: int | None) -> None:
    """One training step from ``.grad = None`` (as after the loop's ``zero_grad``); grads memory counts."""
    from tune_schane.finetune.gradcache import cached_step, plain_step

    if chunk_rows is None:
        plain_step(model, x, y, loss_fn, detach_classifier=False, autocast=autocast)
    else:
        cached_step(model, x, y, loss_fn, chunk_rows=chunk_rows, detach_classifier=False, autocast=autocast)


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().float().clone() for p in model.parameters() if p.grad is not None]


def measure(name: str, img: int, chunk: int, device: torch.device, *, factor: int = 8, repeats: int | None = None,
            amp: bool = False) -> dict:
    """One table row: the three steps of ``name`` at ``img`` px with chunks of ``chunk`` images."""
    from tune_schane.finetune.model import build_model
    from tune_schane.losses import build_loss

    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, img_size=img).to(device).train()
    loss_fn = build_loss("clce", 0.1, 1.0, 0.5)
    if amp and device.type == "cuda":
        autocast = functools.partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    x_c, y_c = _inputs(chunk, img, device)
    x_big, y_big = _inputs(factor * chunk, img, device)
    steps = {
        "plain_c": functools.partial(_step, model, x_c, y_c, loss_fn, autocast, None),
        "plain_big": functools.partial(_step, model, x_big, y_big, loss_fn, autocast, None),
        "cached_big": functools.partial(_step, model, x_big, y_big, loss_fn, autocast, chunk * VIEWS),
    }
    if repeats is None:
        repeats = 10 if device.type == "cuda" else 3
    warmup = 3 if device.type == "cuda" else 1
    row: dict = {"device": device.type, "model": name, "img": img, "chunk": chunk, "batch": factor * chunk,
                 "amp": amp and device.type == "cuda"}

    def zeroed(fn: Callable[[], None]) -> None:
        model.zero_grad(set_to_none=True)
        fn()

    for key, fn in steps.items():
        row[f"ms_{key}"] = 1e3 * median_seconds(functools.partial(zeroed, fn), device, repeats, warmup)
        model.zero_grad(set_to_none=True)  # outside the measured region: freeing old grads is not the step's
        row[f"mib_{key}"] = peak_memory_mib(fn, device)
    zeroed(steps["plain_big"])
    plain = _grads(model)
    zeroed(steps["cached_big"])
    cached = _grads(model)
    scale = max(g.abs().max().item() for g in plain)
    row["grad_rel_diff"] = max((a - b).abs().max().item() for a, b in zip(cached, plain, strict=True)) / scale
    row["mem_ratio"] = row["mib_cached_big"] / row["mib_plain_c"]
    row["time_ratio"] = row["ms_cached_big"] / row["ms_plain_big"]
    return row


def run(configs: list[tuple[str, int, int]] | None = None, *, factor: int = 8, repeats: int | None = None,
        amp: bool = False, device_list: list[torch.device] | None = None) -> list[dict]:
    """All rows for every device (CPU, and CUDA when present); for a combined benchmark runner."""
    rows = []
    for device in device_list or devices():
        for name, img, chunk in configs or DEFAULT_CONFIGS[device.type]:
            rows.append(measure(name, img, chunk, device, factor=factor, repeats=repeats, amp=amp))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"# gradient cache: CLCE step, {VIEWS} views/image, c = chunk images, batch = k·c — {machine_line()}")
    print(f"{'device':6} {'model':22} {'img':>4} {'c':>4} {'k·c':>5} {'amp':>4} "
          f"{'ms plain c':>10} {'ms plain kc':>11} {'ms cached kc':>12} "
          f"{'MiB plain c':>11} {'MiB plain kc':>12} {'MiB cached kc':>13} "
          f"{'mem cached/plain(c)':>19} {'time cached/plain(kc)':>21} {'grad rel diff':>13}")
    for r in rows:
        print(f"{r['device']:6} {r['model']:22} {r['img']:4d} {r['chunk']:4d} {r['batch']:5d} "
              f"{'bf16' if r['amp'] else 'no':>4} "
              f"{r['ms_plain_c']:10.1f} {r['ms_plain_big']:11.1f} {r['ms_cached_big']:12.1f} "
              f"{r['mib_plain_c']:11.1f} {r['mib_plain_big']:12.1f} {r['mib_cached_big']:13.1f} "
              f"{r['mem_ratio']:19.2f} {r['time_ratio']:21.2f} {r['grad_rel_diff']:13.1e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=parse_config, default=None,
                        help="model:img:chunk_images (default: per-device defaults)")
    parser.add_argument("--factor", type=int, default=8, help="k: the large batch is k chunks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (as --amp in training)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, and cuda when available")
    args = parser.parse_args(argv)
    device_list = [torch.device(d) for d in args.devices] if args.devices else None
    print_table(run(args.configs, factor=args.factor, repeats=args.repeats, amp=args.amp, device_list=device_list))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
