"""Automatic gradient-cache chunks from a step-memory estimate (tune_schane/finetune/memory.py)."""

from __future__ import annotations

import pytest
import torch

from tune_schane.finetune.config import TrialConfig
from tune_schane.finetune.memory import HEADROOM, auto_chunk, step_memory_model
from tune_schane.finetune.model import build_model
from tune_schane.finetune.trial import Trial
from tune_schane.losses import build_loss


@pytest.mark.parametrize(
    ("batch", "budget", "fixed", "per_image", "expected"),
    [
        (64, 1000.0, 100.0, 1.0, None),  # 164 MiB needed, 800 usable: plain step
        (64, 100.0, 20.0, 2.0, 16),  # 60 usable MiB -> 30 images -> largest power of two 16
        (64, 10.0, 20.0, 2.0, 1),  # not even one image fits: chunk 1, the step then runs out of memory
        (48, 50.0, 0.0, 1.0, 32),  # chunks need not divide the batch (the last one is shorter)
    ],
)
def test_auto_chunk_arithmetic(batch, budget, fixed, per_image, expected):
    assert auto_chunk(batch, budget, fixed, per_image) == expected


def test_probes_leave_no_trace_on_model_buffers_or_rng():
    torch.manual_seed(0)
    model = build_model("test_resnet", num_classes=10)  # BatchNorm: running statistics would move
    params = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fixed, per_image = step_memory_model(model, build_loss("clce", 0.1, 1.0, 0.5), torch.device("cpu"), img_size=32,
                                         views=2, num_classes=10)
    assert per_image > 0 and fixed >= 0
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def _tiny(**overrides) -> TrialConfig:
    base = {"model": "test_vit", "dataset": "digits", "img_size": 32, "epochs": 1, "batch_size": 64, "shots": 20,
            "num_threads": 2, "device": "cpu", "loss": "clce", "tau": 0.1, "beta": 1.0, "lam": 0.5}
    return TrialConfig(**{**base, **overrides})


def test_a_binding_budget_trains_the_batch_gradient_cached():
    probe = Trial(_tiny(batch_size=16))
    fixed, per_image = step_memory_model(probe.model, probe.loss_fn, probe.device, img_size=32, views=2,
                                         num_classes=10)
    budget = (fixed + per_image * 20) / HEADROOM  # room for 20 images: chunk 16
    trial = Trial(_tiny(memory_budget_mb=budget))
    assert trial.config.contrastive_chunk == 16 and trial.config.batch_size == 64  # the batch is kept
    (metrics,) = list(trial.run())
    assert metrics["valid_anchors"] == 128  # every step still contrasts all 64 images × 2 views


def test_a_budget_that_does_not_bind_changes_nothing():
    plain = next(Trial(_tiny()).run())
    generous = Trial(_tiny(memory_budget_mb=1e6))
    assert generous.config.contrastive_chunk is None
    same = next(generous.run())
    for key in ("val_top1", "val_loss", "train_loss"):
        assert same[key] == plain[key], key
