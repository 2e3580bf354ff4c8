"""The gradient-cached step against full-batch references (docs/gradcache.md).

References, all independent of the cache's own machinery:

* ``plain_step`` itself, on a model without randomness: the gradients must match.
* a *chunked forward with autograd*: forward every chunk with gradients, in order, from the same
  seed, concatenate, take the loss, back-propagate once. It draws dropout masks chunk by chunk just
  as the cache does, and BatchNorm sees chunk statistics just as in the cache, so it is the
  full-batch gradient of exactly the function the cache differentiates. ``plain_step`` cannot be
  that reference with dropout (it draws all N rows' masks in one call, so other masks).
"""

from __future__ import annotations

import contextlib

import pytest
import timm
import torch
from torch import nn

from tests.support.tiny_models import IMAGES, LOSSES, NUM_CLASSES, ROWS, VIEWS, make_loss, vit
from tune_schane.finetune import gradcache
from tune_schane.finetune.gradcache import NonFiniteLoss, cached_step, plain_step
from tune_schane.finetune.model import ContrastiveClassifier, build_model
from tune_schane.losses import NonFiniteEmbeddings
from tune_schane.losses.clce import cross_entropy


def batch(seed: int = 1, img: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of IMAGES images, image-major rows, as train_one_epoch flattens them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(ROWS, 3, img, img, generator=g)
    y = torch.randint(0, NUM_CLASSES, (IMAGES,), generator=g).repeat_interleave(VIEWS)
    return x, y


def grads(model: nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert (got[name] is None) == (value is None), name
        if value is not None:
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


NULL = contextlib.nullcontext


def run_cached(model, x, y, loss_fn, chunk_rows: int, seed: int = 123, autocast=NULL):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out, total = cached_step(model, x, y, loss_fn, chunk_rows=chunk_rows,
                             detach_classifier=loss_fn.lam == 1.0, autocast=autocast)
    return out, total, grads(model)


def run_plain(model, x, y, loss_fn, seed: int = 123):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out, total = plain_step(model, x, y, loss_fn, detach_classifier=loss_fn.lam == 1.0, autocast=NULL)
    return out, total, grads(model)


def run_chunked_reference(model, x, y, loss_fn, chunk_rows: int, seed: int = 123, autocast=NULL):
    """Full-batch gradient of the chunk-by-chunk forward (same masks, same BN statistics as the cache)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    detach = loss_fn.lam == 1.0
    with autocast():
        outputs = [model(xc, detach_classifier=detach) for xc in x.split(chunk_rows)]
    z = torch.cat([o[0] for o in outputs])
    logits = torch.cat([o[1] for o in outputs])
    out = loss_fn(logits, z, y)
    total = out.loss + cross_entropy(logits, y) if detach else out.loss
    total.backward()
    return out, total.detach(), grads(model)


def assert_same_parts(got, want) -> None:
    for field in ("loss", "ce", "contrastive", "valid_anchors", "pos_per_anchor", "neg_per_anchor"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert not a.requires_grad, field
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", list(LOSSES))
def test_equals_plain_step_without_randomness(key, tiny_vit):
    model, (x, y), loss_fn = tiny_vit, batch(), make_loss(key)
    want_out, want_total, want = run_plain(model, x, y, loss_fn)
    got_out, got_total, got = run_cached(model, x, y, loss_fn, chunk_rows=4)
    assert_same_grads(got, want)
    assert_same_parts(got_out, want_out)
    torch.testing.assert_close(got_total, want_total)
    assert not got_total.requires_grad


@pytest.mark.parametrize("key", list(LOSSES))
@pytest.mark.parametrize("chunk_rows", [4, 6])  # 6 does not divide 16: a short last chunk
def test_equals_chunked_reference_with_dropout_and_drop_path(key, chunk_rows):
    model, (x, y), loss_fn = vit(dropout=0.1, drop_path=0.1), batch(), make_loss(key)
    want_out, want_total, want = run_chunked_reference(model, x, y, loss_fn, chunk_rows)
    got_out, got_total, got = run_cached(model, x, y, loss_fn, chunk_rows)
    assert_same_grads(got, want)
    assert_same_parts(got_out, want_out)
    torch.testing.assert_close(got_total, want_total)


def test_rng_replay_is_what_makes_it_exact(monkeypatch):
    """Without restoring each chunk's RNG state the second forward draws other masks: wrong gradient."""
    model, (x, y), loss_fn = vit(dropout=0.1, drop_path=0.1), batch(), make_loss("clce")
    _, _, want = run_chunked_reference(model, x, y, loss_fn, 4)
    real_set = gradcache.set_rng_state
    calls = []

    def replay_nothing(state, device):
        calls.append(state)
        if len(calls) > ROWS // 4:  # let the final restore through; skip the per-chunk replays
            real_set(state, device)

    monkeypatch.setattr(gradcache, "set_rng_state", replay_nothing)
    _, _, got = run_cached(model, x, y, loss_fn, 4)
    diff = max((got[n] - want[n]).abs().max().item() for n in want if want[n] is not None)
    print(f"max |grad difference| without replay: {diff:.3g}")
    assert diff > 1e-3


def test_rng_advances_once_per_step():
    """After the step the generator is where one chunked forward pass leaves it (not two passes)."""
    model, (x, y), loss_fn = vit(dropout=0.1, drop_path=0.1), batch(), make_loss("clce")
    run_chunked_reference(model, x, y, loss_fn, 4)
    want = torch.get_rng_state()
    run_cached(model, x, y, loss_fn, 4)
    assert torch.equal(torch.get_rng_state(), want)


def test_one_chunk_holding_the_batch_is_the_plain_step():
    model, (x, y), loss_fn = vit(dropout=0.1, drop_path=0.1), batch(), make_loss("clce")
    want_out, want_total, want = run_plain(model, x, y, loss_fn)
    got_out, got_total, got = run_cached(model, x, y, loss_fn, chunk_rows=ROWS)
    assert_same_grads(got, want)
    assert_same_parts(got_out, want_out)
    torch.testing.assert_close(got_total, want_total)
    with pytest.raises(ValueError, match="chunk_rows"):
        cached_step(model, x, y, loss_fn, chunk_rows=0, detach_classifier=False, autocast=NULL)


def test_gradients_accumulate_into_existing_grad(tiny_vit):
    """Like backward, the step adds to .grad (the caller zeroes before): twice gives twice."""
    model, (x, y), loss_fn = tiny_vit, batch(), make_loss("clce")
    _, _, once = run_cached(model, x, y, loss_fn, 4)
    cached_step(model, x, y, loss_fn, chunk_rows=4, detach_classifier=False, autocast=NULL)
    twice = grads(model)
    assert_same_grads(twice, {n: 2 * g for n, g in once.items()})


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers()}


def test_batchnorm_exact_for_chunk_statistics_and_running_stats_updated_once():
    """With BN the cache is exact for per-chunk BN (not full-batch BN); running stats move once per chunk."""
    torch.manual_seed(0)
    model = build_model("test_resnet", NUM_CLASSES, proj_dim=16).train()
    x, y = batch()
    loss_fn = make_loss("clce")
    start = _bn_state(model)

    _, _, want = run_chunked_reference(model, x, y, loss_fn, 4)
    want_buffers = _bn_state(model)
    model.load_state_dict({**model.state_dict(), **start})
    _, _, got = run_cached(model, x, y, loss_fn, 4)
    assert_same_grads(got, want)
    for name, value in _bn_state(model).items():
        torch.testing.assert_close(value, want_buffers[name], rtol=1e-5, atol=1e-7, msg=name)
    tracked = [n for n in want_buffers if n.endswith("num_batches_tracked")]
    assert tracked and all(int(want_buffers[n] - start[n]) == ROWS // 4 for n in tracked)

    # ...and it is not the full-batch-BN gradient: that is what chunk statistics cost.
    model.load_state_dict({**model.state_dict(), **start})
    _, _, full = run_plain(model, x, y, loss_fn)
    diff = max((got[n] - full[n]).abs().max().item() for n in full if full[n] is not None)
    print(f"max |grad difference| chunk-BN vs full-batch-BN: {diff:.3g}")
    assert diff > 1e-4


def test_non_finite_loss_raises_before_touching_gradients(tiny_vit):
    model, (x, y), loss_fn = tiny_vit, batch(), make_loss("clce")
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")  # logits NaN, embeddings finite: the CE part is NaN
    model.zero_grad(set_to_none=True)
    with pytest.raises(NonFiniteLoss):
        cached_step(model, x, y, loss_fn, chunk_rows=4, detach_classifier=False, autocast=NULL)
    assert all(p.grad is None for p in model.parameters())

    model = vit()
    with torch.no_grad():
        model.backbone.blocks[0].mlp.fc1.weight[0, 0] = float("inf")  # embeddings non-finite
    with pytest.raises((NonFiniteLoss, NonFiniteEmbeddings)):
        cached_step(model, x, y, loss_fn, chunk_rows=4, detach_classifier=False, autocast=NULL)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_dropout_replay_and_bf16_autocast(amp):
    """On a GPU the CUDA generator is replayed too (dropout in SDPA and DropPath draw from it)."""
    device = torch.device("cuda")
    model, loss_fn = vit(dropout=0.1, drop_path=0.1).to(device), make_loss("clce")
    x, y = (t.to(device) for t in batch())
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else NULL
    want_out, _, want = run_chunked_reference(model, x, y, loss_fn, 4, autocast=autocast)
    want_rng = torch.cuda.get_rng_state(device)
    got_out, _, got = run_cached(model, x, y, loss_fn, 4, autocast=autocast)
    assert torch.equal(torch.cuda.get_rng_state(device), want_rng)
    if not amp:
        assert_same_grads(got, want)
        assert_same_parts(got_out, want_out)
        return
    # bf16: the same masks and the same function, but a weight gradient summed from 4 bf16 chunk
    # products is rounded differently from one product over all rows, so compare at bf16 precision
    # (2^-8 ≈ 4e-3 relative) against each tensor's largest entry. Wrong masks give O(1) errors.
    worst = max((got[n] - want[n]).abs().max().item() / want[n].abs().max().item()
                for n in want if want[n] is not None and want[n].abs().max() > 0)
    print(f"bf16 cached vs chunked reference: worst relative gradient difference {worst:.2e}")
    assert worst < 3e-2
    torch.testing.assert_close(got_out.loss, want_out.loss.detach(), rtol=1e-3, atol=1e-4)


def _peak_mib(fn) -> float:
    from benchmarks.common import peak_memory_mib

    return peak_memory_mib(fn, torch.device("cpu"))


def test_peak_memory_is_one_chunk():
    """Cached step at 8c rows peaks within 1.3x of the plain step at c rows (CPU allocator, profiler).

    Deterministic: the profiler counts bytes the CPU allocator hands out, not RSS. test_vit at 64 px
    (17 tokens) so activations, not parameters, dominate; the benchmark measures the same at scale.
    """
    torch.manual_seed(0)
    backbone = timm.create_model("test_vit", num_classes=0, img_size=64)
    model = ContrastiveClassifier(backbone, backbone.num_features, NUM_CLASSES, proj_dim=16).train()
    loss_fn = make_loss("clce")
    chunk = 16
    g = torch.Generator().manual_seed(0)
    x_small, x_big = torch.randn(chunk, 3, 64, 64, generator=g), torch.randn(8 * chunk, 3, 64, 64, generator=g)
    y_small = torch.arange(chunk // 2).repeat_interleave(2) % NUM_CLASSES
    y_big = torch.arange(4 * chunk).repeat_interleave(2) % NUM_CLASSES

    def measure(step) -> float:
        model.zero_grad(set_to_none=True)  # outside the measured region, as the training loop does
        return _peak_mib(step)

    small = measure(lambda: plain_step(model, x_small, y_small, loss_fn, detach_classifier=False, autocast=NULL))
    big = measure(lambda: plain_step(model, x_big, y_big, loss_fn, detach_classifier=False, autocast=NULL))
    cache = measure(lambda: cached_step(model, x_big, y_big, loss_fn, chunk_rows=chunk, detach_classifier=False,
                                        autocast=NULL))
    assert big > 3 * small  # activations dominate, else the comparison says nothing
    print(f"peak MiB: plain(c) {small:.1f}, plain(8c) {big:.1f}, cached(8c, chunk c) {cache:.1f}")
    assert cache <= 1.3 * small, (cache, small, big)
