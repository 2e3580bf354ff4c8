"""Data-parallel steps (tune_schane/finetune/distributed.py) against one process on the same global batch.

Two real processes (``torch.multiprocessing`` + gloo on the CPU, no Ray), float64, a LayerNorm
backbone (timm's test_vit) with dropout off. The reference is independent of the distributed code:
``plain_step`` on the whole global batch in this process. Every loss family, plain and
gradient-cached (each worker chunks its own share), must give the same loss and the same parameter
gradients (relative 1e-6; in float64 they agree to ~1e-15); so must the negatives budgets, whose
groups and subsample mask are computed on the gathered global batch. Also checked in the workers: a
DDP-wrapped model with the same gather (DDP's averaging is the scaling the gather assumes), two
AdamW steps of ``train_one_epoch`` (parameters after the steps) and the sharded ``evaluate``.

All cases run in one spawn of two processes, which report to the parent through a file.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import BatchSampler, SequentialSampler

from tests.support.tiny_models import LOSSES, NUM_CLASSES, make_loss, vit
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig
from tune_schane.finetune.distributed import GlobalBatchLoss, Replica, ShardedBatchSampler, average_gradients
from tune_schane.finetune.gradcache import cached_step, plain_step
from tune_schane.finetune.optim import build_scheduler
from tune_schane.finetune.train import evaluate, train_one_epoch
from tune_schane.losses import build_loss

WORLD = 2
IMAGES, VIEWS, IMG = 8, 2, 16  # 8 images per global batch, 4 per worker
CHUNKS = (None, 1)  # plain, and gradient-cached one image (two rows) at a time
NULL = contextlib.nullcontext
BUDGETS = {  # negatives budgets of the global batch: 8 images in 2 groups of 4 (not the workers' shares); 3 negatives
    "schane-group": {"negatives": "group", "negatives_size": 4},
    "clce-subsample": {"negatives": "subsample", "negatives_size": 3, "seed": 3},
}


def budget_loss(key: str, replica: Replica | None = None):
    """The budget's loss at step 5 (set through the data-parallel wrapper when there is one, as the loop does)."""
    family = key.split("-")[0]
    loss_fn = build_loss(family, 0.1, 1.0, 0.5 if family == "clce" else None, views=VIEWS, **BUDGETS[key])
    if replica is not None:
        loss_fn = GlobalBatchLoss(loss_fn, replica)
    loss_fn.set_step(5)
    return loss_fn


def model64():
    torch.manual_seed(0)
    return vit().double()  # test_vit: LayerNorm, every dropout 0


def global_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``[IMAGES·VIEWS, 3, IMG, IMG]`` image-major rows (as train_one_epoch flattens) and their labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(IMAGES * VIEWS, 3, IMG, IMG, generator=g, dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (IMAGES,), generator=g).repeat_interleave(VIEWS)
    return x, y


def step(model, x, y, loss_fn, chunk: int | None):
    model.zero_grad(set_to_none=True)
    lam1 = loss_fn.lam == 1.0
    if chunk is None:
        out, total = plain_step(model, x, y, loss_fn, detach_classifier=lam1, autocast=NULL)
    else:
        out, total = cached_step(model, x, y, loss_fn, chunk_rows=chunk * VIEWS, detach_classifier=lam1,
                                 autocast=NULL)
    return float(out.loss.detach()), float(total)


def grads(model) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()}


def loader_batches(seed: int, steps: int):
    """``steps`` global batches as the data loader yields them: (views [B, V, ...], labels [B])."""
    out = []
    for s in range(steps):
        x, y = global_batch(seed + s)
        out.append((x.view(IMAGES, VIEWS, *x.shape[1:]), y[::VIEWS].clone()))
    return out


def two_adamw_steps(model, batches, loss_fn, replica=None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    sched = build_scheduler(opt, epochs=1, steps_per_epoch=len(batches), warmup_epochs=0)
    metrics = train_one_epoch(model, batches, loss_fn, opt, sched, torch.device("cpu"), replica=replica)
    return metrics, {n: p.detach().clone() for n, p in model.named_parameters()}


def _share(t: torch.Tensor, rank: int) -> torch.Tensor:
    rows = t.shape[0] // WORLD
    return t[rank * rows:(rank + 1) * rows]


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    replica = Replica(rank, WORLD)
    results: dict = {}
    x, y = global_batch()
    for key in LOSSES:
        for chunk in CHUNKS:
            model = model64()
            loss_fn = GlobalBatchLoss(make_loss(key), replica)
            loss, total = step(model, _share(x, rank), _share(y, rank), loss_fn, chunk)
            average_gradients(model, replica)
            results[key, chunk] = (loss, total, grads(model))
    for key in BUDGETS:
        for chunk in CHUNKS:
            model = model64()
            loss_fn = budget_loss(key, replica)
            loss, total = step(model, _share(x, rank), _share(y, rank), loss_fn, chunk)
            average_gradients(model, replica)
            results[key, chunk] = (loss, total, grads(model))
    # DDP's own averaging with the same gather (clce: every parameter gets a gradient).
    ddp = torch.nn.parallel.DistributedDataParallel(model64())
    loss_fn = GlobalBatchLoss(make_loss("clce"), replica)
    out = loss_fn(*reversed(ddp(_share(x, rank))), _share(y, rank))
    out.loss.backward()
    results["ddp"] = {n.removeprefix("module."): p.grad.clone() for n, p in ddp.named_parameters()}
    # The training loop: this worker's share of two global batches, AdamW, the loop's averaging.
    shares = [(_share(v, rank), _share(lab, rank)) for v, lab in loader_batches(7, 2)]
    model = model64()
    results["loop"] = two_adamw_steps(model, shares, GlobalBatchLoss(make_loss("clce"), replica), replica)
    val = [(_share(v.flatten(0, 1), rank), _share(lab.repeat_interleave(VIEWS), rank))
           for v, lab in loader_batches(11, 3)]
    results["eval"] = evaluate(model, val, torch.device("cpu"), replica=replica)
    if rank == 0:
        torch.save(results, out_file)
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def worker_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "results.pt"
    mp.spawn(_worker, args=(str(tmp / "init"), str(out)), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=False)


def assert_close_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert (got[name] is None) == (value is None), f"{name}: grad None in one run only"
        if value is not None:
            scale = value.abs().max().item()
            torch.testing.assert_close(got[name], value, rtol=1e-6, atol=1e-6 * scale + 1e-30,
                                       msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow  # the fixture spawns two processes (about 10 s), once for the module
@pytest.mark.parametrize("chunk", CHUNKS, ids=["plain", "cached"])
@pytest.mark.parametrize("key", list(LOSSES))
def test_two_workers_equal_one_process_on_the_global_batch(worker_results, key, chunk):
    x, y = global_batch()
    model = model64()
    want_loss, want_total = step(model, x, y, make_loss(key), None)
    loss, total, got = worker_results[key, chunk]
    assert loss == pytest.approx(want_loss, rel=1e-6) and total == pytest.approx(want_total, rel=1e-6)
    assert_close_grads(got, grads(model))
    if key == "ce":  # the projection head has no gradient in a CE trial, as in one process
        assert got["projector.0.weight"] is None


@pytest.mark.slow
@pytest.mark.parametrize("chunk", CHUNKS, ids=["plain", "cached"])
@pytest.mark.parametrize("key", list(BUDGETS))
def test_negatives_budgets_are_drawn_on_the_global_batch(worker_results, key, chunk):
    x, y = global_batch()
    groups = build_loss("schane", 0.1, 1.0, None, views=VIEWS, **BUDGETS["schane-group"]).contrastive.negatives
    shares = torch.arange(IMAGES * VIEWS) // (IMAGES * VIEWS // WORLD)
    assert not torch.equal(groups.pairs(y)[0], shares[:, None] == shares[None, :])  # so a per-share plan would fail
    model = model64()
    want_loss, want_total = step(model, x, y, budget_loss(key), None)
    loss, total, got = worker_results[key, chunk]
    assert loss == pytest.approx(want_loss, rel=1e-6) and total == pytest.approx(want_total, rel=1e-6)
    assert_close_grads(got, grads(model))


@pytest.mark.slow
def test_ddp_with_the_gather_gives_the_one_process_gradient(worker_results):
    x, y = global_batch()
    model = model64()
    step(model, x, y, make_loss("clce"), None)
    assert_close_grads(worker_results["ddp"], grads(model))


@pytest.mark.slow
def test_training_loop_steps_and_sharded_evaluation_match_one_process(worker_results):
    model = model64()
    metrics, params = two_adamw_steps(model, loader_batches(7, 2), make_loss("clce"))
    got_metrics, got_params = worker_results["loop"]
    for name, value in params.items():
        torch.testing.assert_close(got_params[name], value, rtol=1e-6, atol=1e-9, msg=lambda m, n=name: f"{n}: {m}")
    for key in ("train_loss", "train_ce", "train_contrastive", "valid_anchors", "pos_per_anchor"):
        assert got_metrics[key] == pytest.approx(metrics[key], rel=1e-6), key
    val = [(v.flatten(0, 1), lab.repeat_interleave(VIEWS)) for v, lab in loader_batches(11, 3)]
    want = evaluate(model, val, torch.device("cpu"))
    for key, value in want.items():  # counts are exact; evaluate sums float32 CE (so 1e-6 for val_loss)
        assert worker_results["eval"][key] == pytest.approx(value, rel=1e-6), key


def test_sharded_batches_are_the_global_batches_in_rank_order():
    batches = BatchSampler(SequentialSampler(range(20)), 6, drop_last=True)
    shares = [list(ShardedBatchSampler(batches, Replica(rank, 3))) for rank in range(3)]
    assert [[i for s in shares for i in s[b]] for b in range(len(batches))] == list(batches)
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatchSampler(BatchSampler(SequentialSampler(range(20)), 5, drop_last=True), Replica(0, 2))


def test_workers_config_is_checked():
    with pytest.raises(BadInput, match="does not split into 3"):
        TrialConfig(batch_size=16, workers=3).validate()
    with pytest.raises(BadInput, match="workers: must be >= 1"):
        TrialConfig(workers=0).validate()
    from tune_schane.finetune.trial import Trial

    with pytest.raises(BadInput, match="set workers=1 to run it here"):
        Trial(TrialConfig(workers=2, batch_size=16, epochs=1))



def test_large_batch_space_needs_its_workers_gpus_and_chunks_only_the_largest_batch():
    import optuna

    from tune_schane.space import default_space_path, load_space

    space = load_space(default_space_path().with_name("vit_cifar100_large_batch_gpu.yaml"))
    assert space.max_workers() == 4 and space.grid["batch_size"][-1] == 4096
    space.check_cluster(cpus=32, gpus=4)
    with pytest.raises(BadInput, match=r"asks for 4 GPUs \(4 workers\) but the cluster has 3"):
        space.check_cluster(cpus=32, gpus=3)
    big = space.define_by_run({"batch_size": 4096, "loss": "clce"})(optuna.create_study().ask())
    assert big["contrastive_chunk"] == 128
    config = space.trial_config(big, {"batch_size": 4096, "loss": "clce"})
    assert config.workers == 4 and config.batch_size // config.workers == 1024
    small = space.define_by_run({"batch_size": 512, "loss": "ce"})(optuna.create_study().ask())
    assert "contrastive_chunk" not in small


def test_a_data_parallel_trial_holds_only_its_train_driver_bundle():
    from tune_schane.ray_tune._driver import _bundle
    from tune_schane.space.search_space import TRAIN_DRIVER_CPU as DRIVER_CPU

    resources = {"cpu": 8.0, "gpu": 1.0}
    assert _bundle({"trial_config": {"workers": 4}, "resources": resources}) == {"CPU": DRIVER_CPU}
    assert _bundle({"trial_config": {"workers": 1}, "resources": resources}) == {"CPU": 8.0, "GPU": 1.0}


def test_two_workers_of_one_cpu_are_refused_on_two_cpus_before_anything_starts():
    """Their Train driver's share makes 2.1 CPUs: Ray Train would retry the worker group for ever."""
    from tune_schane.space import parse_space

    space = parse_space({"name": "dp", "fixed": {"model": "test_vit", "dataset": "digits", "workers": 2},
                         "grid": {"batch_size": [32]}, "searcher": {"type": "grid"}, "resources": {"cpu": 1}})
    with pytest.raises(BadInput, match=r"asks for 2.1 CPUs \(2 workers \+ 0.1 for the Train driver\) but the "
                                       r"cluster has 2"):
        space.check_cluster(cpus=2, gpus=0)
    space.check_cluster(cpus=3, gpus=0)
