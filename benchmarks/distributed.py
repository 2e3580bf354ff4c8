"""A two-worker data-parallel training step against one process on the same global batch (CPU, gloo).

The step is the loop's own (CLCE, λ = 0.5, τ = 0.1, β = 1, two views per image, AdamW): in one
process, ``plain_step`` on all ``B`` images with ``W`` threads; in ``W`` processes of one thread
each, ``plain_step`` on ``B/W`` images with the global-batch loss (embeddings, logits and labels
gathered) and the gradients averaged (tune_schane/finetune/distributed.py). Same cores, same images, same
gradient; the ratio says what the gather and the gradient all-reduce cost on top of splitting the
work. The communication alone (gathering the rows and averaging the gradients, without the
forward/backward) is timed too, as its share of the worker's step.

    python -m benchmarks.distributed [--model test_vit] [--img 32] [--batch 64] [--workers 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.common import machine_line, median_seconds

VIEWS = 2
NUM_CLASSES = 10
CPU = torch.device("cpu")


def _setup(model_name: str, img: int, images: int, seed: int = 0):
    from tune_schane.finetune.model import build_model
    from tune_schane.losses import build_loss

    torch.manual_seed(seed)
    model = build_model(model_name, NUM_CLASSES, img_size=img).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(images * VIEWS, 3, img, img, generator=g)
    y = torch.randint(0, NUM_CLASSES, (images,), generator=g).repeat_interleave(VIEWS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, build_loss("clce", 0.1, 1.0, 0.5), x, y, optimizer


def _train_step(model, x, y, loss_fn, optimizer, replica=None) -> None:
    from tune_schane.finetune.distributed import average_gradients
    from tune_schane.finetune.gradcache import plain_step

    optimizer.zero_grad(set_to_none=True)
    plain_step(model, x, y, loss_fn, detach_classifier=False, autocast=contextlib.nullcontext)
    if replica is not None:
        average_gradients(model, replica)
    optimizer.step()


def _worker(rank: int, world: int, init: str, out: str, model_name: str, img: int, batch: int, repeats: int) -> None:
    from tune_schane.finetune.distributed import GlobalBatchLoss, Replica, average_gradients, gather_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    replica = Replica(rank, world)
    model, loss_fn, x, y, optimizer = _setup(model_name, img, batch)
    rows = x.shape[0] // world
    xs, ys = x[rank * rows:(rank + 1) * rows], y[rank * rows:(rank + 1) * rows]
    step = functools.partial(_train_step, model, xs, ys, GlobalBatchLoss(loss_fn, replica), optimizer, replica)
    dist.barrier()
    seconds = median_seconds(step, CPU, repeats=repeats, warmup=1)
    with torch.no_grad():
        z, logits = model(xs)

    def communication() -> None:
        gather_rows(z, replica), gather_rows(logits, replica), gather_rows(ys, replica)
        average_gradients(model, replica)

    dist.barrier()
    comm = median_seconds(communication, CPU, repeats=repeats, warmup=1)
    times = torch.tensor([seconds, comm], dtype=torch.float64)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)  # the step ends when its slowest worker does
    if rank == 0:
        torch.save(times.tolist(), out)
    dist.destroy_process_group()


def measure(model_name: str = "test_vit", img: int = 32, batch: int = 64, workers: int = 2,
            repeats: int = 5) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(workers)
    try:
        model, loss_fn, x, y, optimizer = _setup(model_name, img, batch)
        one = median_seconds(functools.partial(_train_step, model, x, y, loss_fn, optimizer), CPU,
                             repeats=repeats, warmup=1)
    finally:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.pt"
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        mp.spawn(_worker, args=(workers, str(Path(tmp) / "init"), str(out), model_name, img, batch, repeats),
                 nprocs=workers, join=True)
        step, comm = torch.load(out)
    return {"model": model_name, "img": img, "batch": batch, "workers": workers, "ms_one": 1e3 * one,
            "ms_workers": 1e3 * step, "ms_comm": 1e3 * comm, "ratio": step / one, "comm_share": comm / step}


def print_table(rows: list[dict]) -> None:
    print(f"# data-parallel step (gloo, CPU) vs one process, same global batch — {machine_line()}")
    print(f"{'model':12} {'img':>4} {'batch':>5} {'W':>2} {'ms 1 proc (W threads)':>21} "
          f"{'ms W procs (1 thread)':>21} {'ms gather+allreduce':>19} {'ratio W/1':>9} {'comm share':>10}")
    for r in rows:
        print(f"{r['model']:12} {r['img']:4d} {r['batch']:5d} {r['workers']:2d} {r['ms_one']:21.1f} "
              f"{r['ms_workers']:21.1f} {r['ms_comm']:19.1f} {r['ratio']:9.2f} {r['comm_share']:10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="test_vit")
    parser.add_argument("--img", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch in images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print_table([measure(args.model, args.img, args.batch, args.workers, args.repeats)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
