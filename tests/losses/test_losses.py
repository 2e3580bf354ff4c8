"""The loss library against independent references (DESIGN.md section 1).

References: a naive float64 loop (tests/support/loss_reference.py), pytorch-metric-learning's SupConLoss,
and torch.autograd.gradcheck.
"""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

from tests.support.loss_reference import naive_clce, naive_schane
from tune_schane.losses import CLCELoss, NonFiniteEmbeddings, SCHaNeLoss, SupConLoss, build_loss

BETAS = [0.0, 0.5, 1.0, 4.0]
TAUS = [0.05, 0.1, 0.5]


def unit_vectors(angles_deg: list[float]) -> torch.Tensor:
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(a), torch.sin(a)], dim=1)


# Hand-built inputs: 2-D unit vectors from angles; labels with a singleton (anchor 5 has no positive).
HAND_Z = unit_vectors([0, 10, 40, 90, 100, 200])
HAND_LABELS = [0, 0, 0, 1, 1, 2]


def random_case(seed: int, n: int = 14, d: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * 3  # unnormalised on purpose
    labels = torch.randint(0, classes, (n,), generator=g)
    return z, labels


def check_against_naive(z, labels, tau, beta, detach):
    z_impl = z.clone().requires_grad_(True)
    z_ref = z.clone().requires_grad_(True)
    out = SCHaNeLoss(tau, beta, detach_weights=detach)(z_impl, torch.as_tensor(labels))
    ref = naive_schane(z_ref, list(map(int, labels)), tau, beta, detach)
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(z_impl.grad, z_ref.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("beta", BETAS)
def test_schane_matches_naive_loop_hand_built(beta, tau, detach):
    check_against_naive(HAND_Z, HAND_LABELS, tau, beta, detach)


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_schane_matches_naive_loop_random(seed, beta, tau, detach):
    z, labels = random_case(seed)
    check_against_naive(z, labels, tau, beta, detach)


@pytest.mark.parametrize("beta", BETAS)
def test_single_class_batch_matches_naive(beta):
    z, _ = random_case(3, n=6)
    check_against_naive(z, [7] * 6, 0.1, beta, False)


def test_detach_weights_changes_gradient_not_value():
    z, labels = random_case(4)
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out_a = SCHaNeLoss(0.1, 2.0, detach_weights=False)(a, labels)
    out_b = SCHaNeLoss(0.1, 2.0, detach_weights=True)(b, labels)
    torch.testing.assert_close(out_a.loss, out_b.loss)
    out_a.loss.backward()
    out_b.loss.backward()
    assert not torch.allclose(a.grad, b.grad)


def test_hardness_weighting_increases_loss_with_hard_negatives():
    # A negative close to the anchor gets weight > 1 for beta > 0, raising the denominator.
    z = unit_vectors([0, 5, 20, 170])
    labels = torch.tensor([0, 0, 1, 1])
    values = [SCHaNeLoss(0.1, b)(z, labels).loss.item() for b in (0.0, 1.0, 4.0)]
    assert values[0] < values[1] < values[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beta_zero_is_exactly_supcon(seed):
    z, labels = random_case(seed)
    z = z.float()
    assert torch.equal(SCHaNeLoss(0.1, 0.0)(z, labels).loss, SupConLoss(0.1)(z, labels).loss)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supcon_matches_pytorch_metric_learning(seed, tau):
    z, labels = random_case(seed, n=32, d=16, classes=5)
    z32 = z.float()
    ours = SupConLoss(tau)(z32, labels).loss
    theirs = PMLSupConLoss(temperature=tau)(z32, labels)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # Gradients too.
    a, b = z32.clone().requires_grad_(True), z32.clone().requires_grad_(True)
    SupConLoss(tau)(a, labels).loss.backward()
    PMLSupConLoss(temperature=tau)(b, labels).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_gradcheck_schane(beta):
    # Finite differences see the weights move, so gradcheck applies to detach_weights=False only;
    # the detached gradient is checked against the naive loop with detached weights above.
    z, labels = random_case(5, n=8, d=4, classes=3)
    z.requires_grad_(True)
    fn = SCHaNeLoss(0.2, beta)
    assert torch.autograd.gradcheck(lambda x: fn(x, labels).loss, (z,))


def test_gradcheck_clce():
    z, labels = random_case(6, n=8, d=4, classes=3)
    logits = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    z.requires_grad_(True)
    fn = CLCELoss(0.2, 1.0, 0.3)
    assert torch.autograd.gradcheck(lambda lg, x: fn(lg, x, labels).loss, (logits, z))


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_clce_matches_naive(lam, beta):
    z, labels = random_case(7, n=10, d=5, classes=3)
    logits = torch.randn(10, 3, dtype=torch.float64)
    out = CLCELoss(0.1, beta, lam)(logits, z, labels)
    ref = naive_clce(logits, z, labels.tolist(), 0.1, beta, lam)
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.ce, torch.nn.functional.cross_entropy(logits, labels))


def test_logged_parts():
    out = CLCELoss(0.1, 1.0, 0.5)(torch.randn(6, 3), HAND_Z.float(), torch.tensor(HAND_LABELS))
    assert out.valid_anchors.item() == 5
    assert out.pos_per_anchor.item() == pytest.approx((2 * 3 + 1 * 2 + 0) / 6)
    assert out.neg_per_anchor.item() == pytest.approx((3 * 3 + 4 * 2 + 5) / 6)
    torch.testing.assert_close(out.loss, 0.5 * out.ce + 0.5 * out.contrastive)


# ---------------------------------------------------------------- contract over every loss family
FAMILIES = {
    "ce": lambda: build_loss("ce", None, None, None),
    "supcon": lambda: build_loss("supcon", 0.1, None, None),
    "schane": lambda: build_loss("schane", 0.1, 1.0, None),
    "schane_detached": lambda: build_loss("schane", 0.1, 2.0, None, detach_weights=True),
    "clce": lambda: build_loss("clce", 0.1, 1.0, 0.5),
}


def call(loss_fn, logits, z, labels):
    return loss_fn(logits, z, labels)


@pytest.mark.parametrize("family", FAMILIES)
def test_contract_scalar_finite_backprop_permutation(family):
    torch.manual_seed(0)
    z = torch.randn(12, 8, requires_grad=True)
    logits = torch.randn(12, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 2, 0])
    out = call(FAMILIES[family](), logits, z, labels)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    if family == "ce":  # plain CE never looks at the embeddings
        assert z.grad is None and logits.grad.abs().sum() > 0
    else:
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    if family in ("ce", "clce"):
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    permuted = call(FAMILIES[family](), logits[perm], z[perm], labels[perm])
    torch.testing.assert_close(permuted.loss, out.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "ce"])
def test_contract_no_positive_is_zero_but_differentiable(family):
    z = torch.randn(5, 8, requires_grad=True)
    logits = torch.zeros(5, 5, requires_grad=True)
    labels = torch.arange(5)  # every anchor is alone in its class
    out = call(FAMILIES[family](), logits, z, labels)
    assert torch.isfinite(out.loss)
    assert out.contrastive.item() == 0.0 and out.valid_anchors.item() == 0
    out.loss.backward()
    assert z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_stable_at_tau_001_in_half_precision(dtype, beta):
    torch.manual_seed(0)
    base = torch.randn(4, 16)
    # Near-duplicate positives and near-duplicate negatives: the hardest case numerically.
    z = torch.cat([base, base + 1e-3 * torch.randn(4, 16), -base]).to(dtype).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 4, 5, 5])
    out = SCHaNeLoss(0.01, beta)(z, labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(z.grad.float()).all()


def test_stable_under_autocast():
    z = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(16) % 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CLCELoss(0.01, 4.0, 0.5)(torch.randn(16, 4), z, labels)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SupConLoss(0.0), "temperature"),
        (lambda: SupConLoss(-1.0), "temperature"),
        (lambda: SCHaNeLoss(float("nan"), 1.0), "temperature"),
        (lambda: SCHaNeLoss(0.1, -0.5), "beta"),
        (lambda: CLCELoss(0.1, 1.0, 1.5), "lam"),
        (lambda: CLCELoss(0.1, 1.0, -0.1), "lam"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("z", "labels", "match", "exc"),
    [
        (torch.randn(4, 3), torch.tensor([0, 1, 0]), "do not match", ValueError),
        (torch.randn(1, 3), torch.tensor([0]), "at least 2", ValueError),
        (torch.randn(4), torch.tensor([0, 1, 0, 1]), "2-D", ValueError),
        (torch.randn(4, 3), torch.tensor([[0, 1], [0, 1]]), "1-D", ValueError),
        (torch.tensor([[0.0, 1.0], [float("nan"), 1.0]]), torch.tensor([0, 0]), "NaN", NonFiniteEmbeddings),
        (torch.tensor([[0.0, 1.0], [float("inf"), 1.0]]), torch.tensor([0, 0]), "inf", NonFiniteEmbeddings),
    ],
)
def test_bad_inputs(z, labels, match, exc):
    with pytest.raises(exc, match=match):
        SCHaNeLoss(0.1, 1.0)(z, labels)


def test_clce_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="logits"):
        CLCELoss(0.1, 1.0, 0.5)(torch.randn(3, 2), torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
