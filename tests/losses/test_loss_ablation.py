"""The CLCE ablation arm ``supcon_ce``: CLCE with every hardness weight 1 (SupCon + CE)."""

from __future__ import annotations

import pytest
import torch

from tests.support.loss_reference import naive_clce
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig
from tune_schane.losses import build_loss


def test_supcon_ce_is_clce_at_beta_zero_against_the_naive_float64_loop():
    torch.manual_seed(0)
    labels = [0, 0, 1, 1, 2, 2, 0, 1]
    z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    got = build_loss("supcon_ce", 0.2, None, 0.3)(logits, z, torch.tensor(labels)).loss
    want = naive_clce(logits, z, labels, 0.2, 0.0, 0.3)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    g_got = torch.autograd.grad(got, (z, logits))
    g_want = torch.autograd.grad(naive_clce(logits, z, labels, 0.2, 0.0, 0.3), (z, logits))
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_supcon_ce_carries_tau_and_lam_but_no_beta():
    cfg = TrialConfig(loss="supcon_ce", tau=0.2, beta=1.5, lam=0.4).resolved()
    assert (cfg.tau, cfg.beta, cfg.lam) == (0.2, None, 0.4)
    assert (cfg.effective_beta, cfg.effective_lam) == (0.0, 0.4)
    with pytest.raises(BadInput, match="lam: must be in \\[0, 1\\] for loss 'supcon_ce'"):
        TrialConfig(loss="supcon_ce", lam=None).validate()


@pytest.mark.parametrize(("loss", "mode"), [("ce", "end_to_end"), ("clce", "end_to_end"),
                                            ("supcon_ce", "end_to_end"), ("supcon", "linear_probe"),
                                            ("schane", "linear_probe")])
def test_eval_mode_auto_probes_the_lambda_one_families(loss, mode):
    assert TrialConfig(loss=loss, eval_mode="auto").resolved().eval_mode == mode
