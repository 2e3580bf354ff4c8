"""SCHaNe (β=1) against pytorch-metric-learning's SupConLoss: forward+backward time and peak memory.

Same inputs for both: N embeddings (D=128, float32) of N/2 images × 2 views over 100 classes, as a
CIFAR-100 batch would give. Prints one row per device and N with the ratio ours/PML (< 1 is
better), all measured in this run.

    python -m benchmarks.loss [--sizes 512 2048 4096]
"""

from __future__ import annotations

import argparse
import functools

import torch

from benchmarks.common import devices, machine_line, median_seconds, peak_memory_mib


def make_inputs(n: int, device: torch.device, d: int = 128, classes: int = 100):
    g = torch.Generator().manual_seed(n)
    z = torch.randn(n, d, generator=g).to(device).requires_grad_(True)
    image_labels = torch.randint(0, classes, (n // 2,), generator=g)
    labels = image_labels.repeat(2).to(device)
    return z, labels


def step(loss_fn, z, labels, ours: bool) -> None:
    z.grad = None
    out = loss_fn(z, labels)
    (out.loss if ours else out).backward()


def run(sizes: list[int]) -> list[dict]:
    from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

    from tune_schane.losses import SCHaNeLoss

    rows = []
    for device in devices():
        for n in sizes:
            z, labels = make_inputs(n, device)
            ours = functools.partial(step, SCHaNeLoss(0.1, 1.0), z, labels, True)
            pml = functools.partial(step, PMLSupConLoss(temperature=0.1), z, labels, False)
            repeats = 20 if device.type == "cuda" else 5
            t_ours = median_seconds(ours, device, repeats)
            t_pml = median_seconds(pml, device, repeats)
            m_ours, m_pml = peak_memory_mib(ours, device), peak_memory_mib(pml, device)
            rows.append({"device": device.type, "N": n, "ms_schane": 1e3 * t_ours, "ms_pml": 1e3 * t_pml,
                         "time_ratio": t_ours / t_pml, "mib_schane": m_ours, "mib_pml": m_pml,
                         "mem_ratio": m_ours / m_pml})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"# loss benchmark: SCHaNe(β=1) vs PML SupConLoss, fwd+bwd, D=128 float32 — {machine_line()}")
    print(f"{'device':6} {'N':>5} {'SCHaNe ms':>10} {'PML ms':>9} {'time ratio':>10} "
          f"{'SCHaNe MiB':>10} {'PML MiB':>9} {'mem ratio':>9}")
    for r in rows:
        print(f"{r['device']:6} {r['N']:5d} {r['ms_schane']:10.2f} {r['ms_pml']:9.2f} "
              f"{r['time_ratio']:10.2f} {r['mib_schane']:10.1f} {r['mib_pml']:9.1f} {r['mem_ratio']:9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    args = parser.parse_args(argv)
    print_table(run(args.sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
