"""The negatives budget (tune_schane/losses/negatives.py) against naive float64 loops.

References: tests/loss_reference.py's loop over anchors and pairs, run on each group's rows alone
(``group``) or told which pairs the subsample mask keeps (``subsample``); today's loss for ``all``
and one group of the whole batch; torch.autograd.gradcheck.
"""

from __future__ import annotations

import pytest
import torch

from tests.loss_reference import naive_anchor_losses, naive_ce, naive_grouped_schane, naive_schane
from tune_schane.losses import NegativeBudget, SCHaNeLoss, SupConLoss, build_loss
from tune_schane.losses.negatives import class_balanced_groups, subsample_pairs

BETAS = [0.0, 1.0, 4.0]


def views_case(seed: int, images: int = 8, views: int = 2, d: int = 5, classes: int = 3):
    """Image-major rows as train_one_epoch flattens them: ``z [images·views, d]``, labels repeated per view."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(images * views, d, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, classes, (images,), generator=g).repeat_interleave(views)
    return z, labels


def naive_groups(labels: list[int], views: int, size: int) -> list[list[int]]:
    """Rows of each group: images stable-sorted by label, dealt round-robin, an image's views kept together."""
    image_labels = labels[::views]
    n_groups = len(image_labels) // size
    order = sorted(range(len(image_labels)), key=lambda i: image_labels[i])
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for rank, image in enumerate(order):
        groups[rank % n_groups] += [image * views + v for v in range(views)]
    return [sorted(g) for g in groups]


def loss_and_grad(fn, z):
    z = z.clone().requires_grad_(True)
    out = fn(z)
    out.loss.backward()
    return out, z.grad


# ---------------------------------------------------------------- group
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("views", [1, 2])
def test_one_group_of_the_whole_batch_is_todays_loss_exactly(beta, views):
    z, labels = views_case(0, images=8, views=views)
    today, today_grad = loss_and_grad(lambda x: SCHaNeLoss(0.1, beta)(x, labels), z)
    whole = NegativeBudget("group", 8, views)
    got, got_grad = loss_and_grad(lambda x: SCHaNeLoss(0.1, beta, negatives=whole)(x, labels), z)
    assert torch.equal(got.loss, today.loss) and torch.equal(got_grad, today_grad)
    for field in ("valid_anchors", "pos_per_anchor", "neg_per_anchor"):
        assert torch.equal(getattr(got, field), getattr(today, field)), field


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize(("images", "views", "size", "seed"), [(8, 2, 4, 0), (8, 2, 2, 1), (12, 1, 3, 2), (6, 3, 2, 3)])
def test_group_is_the_mean_over_groups_of_the_naive_loop(images, views, size, seed, beta, detach):
    z, labels = views_case(seed, images=images, views=views)
    fn = SCHaNeLoss(0.2, beta, detach_weights=detach, negatives=NegativeBudget("group", size, views))
    out, grad = loss_and_grad(lambda x: fn(x, labels), z)
    groups = naive_groups(labels.tolist(), views, size)
    z_ref = z.clone().requires_grad_(True)
    ref = naive_grouped_schane(z_ref, labels.tolist(), 0.2, beta, groups, detach)
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, z_ref.grad, rtol=1e-8, atol=1e-10)
    # What the anchors saw: positives and negatives inside their own group only.
    group_of = {r: g for g, rows in enumerate(groups) for r in rows}
    y = labels.tolist()
    pos = [sum(y[j] == y[i] and j != i and group_of[j] == group_of[i] for j in range(len(y))) for i in range(len(y))]
    neg = [sum(y[j] != y[i] and group_of[j] == group_of[i] for j in range(len(y))) for i in range(len(y))]
    assert out.pos_per_anchor.item() == pytest.approx(sum(pos) / len(y))
    assert out.neg_per_anchor.item() == pytest.approx(sum(neg) / len(y))
    assert out.valid_anchors.item() == sum(p > 0 for p in pos)


def test_a_group_without_a_valid_anchor_is_left_out_of_the_mean():
    # One view per image, labels 0, 0, 1, 1 in groups of 2: dealt into rows {0, 2} and {1, 3}, one image per
    # class in each group, so no anchor has a positive: the loss is a zero that still back-propagates.
    z, _ = views_case(4, images=4, views=1)
    labels = torch.tensor([0, 0, 1, 1])
    out = SCHaNeLoss(0.1, 1.0, negatives=NegativeBudget("group", 2, 1))(z.requires_grad_(True), labels)
    assert out.loss.item() == 0.0 and out.valid_anchors.item() == 0
    out.loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))
    # Three classes over two groups: one group has a positive pair, the other does not; only the first counts.
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    groups = naive_groups(labels.tolist(), 1, 3)
    assert [[labels[r].item() for r in g] for g in groups] == [[0, 0, 2], [0, 1, 2]]
    z6, _ = views_case(5, images=6, views=1)
    got = SCHaNeLoss(0.1, 1.0, negatives=NegativeBudget("group", 3, 1))(z6, labels).loss
    first = naive_anchor_losses(z6[groups[0]], [0, 0, 2], 0.1, 1.0)
    torch.testing.assert_close(got, sum(first) / len(first), rtol=1e-10, atol=1e-10)


def test_groups_weigh_equally_whatever_their_count_of_valid_anchors():
    # Dealt into {0, 0, 0, 2} (3 valid anchors) and {0, 0, 1, 3} (2 valid): a mean over groups, not anchors.
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2, 3])
    z, _ = views_case(9, images=8, views=1)
    groups = naive_groups(labels.tolist(), 1, 4)
    assert [[labels[r].item() for r in g] for g in groups] == [[0, 0, 0, 2], [0, 0, 1, 3]]
    got = SCHaNeLoss(0.1, 1.0, negatives=NegativeBudget("group", 4, 1))(z, labels).loss
    torch.testing.assert_close(got, naive_grouped_schane(z, labels.tolist(), 0.1, 1.0, groups), rtol=1e-10, atol=1e-10)
    per_anchor = [a for g in groups for a in naive_anchor_losses(z[g], [labels[r].item() for r in g], 0.1, 1.0)]
    assert abs(got.item() - (sum(per_anchor) / len(per_anchor)).item()) > 1e-3


def test_group_assignment_is_class_balanced_and_follows_the_labels_only():
    image_labels = torch.tensor([3, 1, 1, 0, 3, 3, 1, 0, 2, 2, 1, 0])
    groups = class_balanced_groups(image_labels, 4)
    assert torch.equal(torch.bincount(groups), torch.tensor([4, 4, 4]))
    for c in image_labels.unique():
        per_group = torch.bincount(groups[image_labels == c], minlength=3)
        assert per_group.max() - per_group.min() <= 1  # every class spread as evenly as it can be
    assert torch.equal(class_balanced_groups(image_labels.clone(), 4), groups)
    with pytest.raises(ValueError, match="do not split into groups of 5"):
        class_balanced_groups(image_labels, 5)


def test_group_refuses_rows_that_are_not_image_major():
    labels = torch.tensor([0, 1, 0, 1])  # two views per image would repeat each label twice in a row
    with pytest.raises(ValueError, match="image-major"):
        SCHaNeLoss(0.1, 1.0, negatives=NegativeBudget("group", 2, 2))(torch.randn(4, 3), labels)


def test_clce_group_applies_to_the_contrastive_part_only():
    z, labels = views_case(6, images=8, views=2)
    logits = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = build_loss("clce", 0.1, 1.0, 0.3, negatives="group", negatives_size=4, views=2)(logits, z, labels)
    ref_con = naive_grouped_schane(z, labels.tolist(), 0.1, 1.0, naive_groups(labels.tolist(), 2, 4))
    ref = 0.7 * naive_ce(logits, labels.tolist()) + 0.3 * ref_con
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- subsample
def test_subsample_keeps_exactly_m_negatives_and_every_positive():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 3)  # class 0: 6 negatives each; others: 13
    keep = subsample_pairs(labels, 8, torch.Generator().manual_seed(0))
    same = labels[:, None] == labels[None, :]
    kept_neg = (keep & ~same).sum(dim=1)
    assert kept_neg.tolist() == [6] * 10 + [8] * 6  # fewer than m negatives: all of them
    assert bool((keep | ~same).all())  # every positive (and self) kept
    out = SCHaNeLoss(0.1, 1.0, negatives=NegativeBudget("subsample", 8))(torch.randn(16, 4), labels)
    assert out.neg_per_anchor.item() == pytest.approx((6 * 10 + 8 * 6) / 16)  # what the anchors saw
    assert out.pos_per_anchor.item() == pytest.approx((9 * 10 + 2 * 6) / 16)


def test_subsample_draws_differ_per_anchor_and_cover_the_negatives():
    labels = torch.arange(12) % 2  # every anchor has 6 negatives, keeps 2
    g = torch.Generator().manual_seed(1)
    masks = [subsample_pairs(labels, 2, g) for _ in range(200)]
    counts = torch.stack(masks).double().mean(dim=0)
    neg = labels[:, None] != labels[None, :]
    assert counts[neg].min() > 0.2 and counts[neg].max() < 0.47  # each negative kept ~1/3 of the time
    assert len({m.flatten().numpy().tobytes() for m in masks}) > 150


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize(("size", "seed"), [(1, 0), (3, 1), (7, 2)])
def test_subsample_equals_the_naive_loop_on_its_mask(size, seed, beta, detach):
    z, labels = views_case(seed, images=8, views=2, classes=3)
    budget = NegativeBudget("subsample", size, views=2, seed=seed)
    budget.set_step(5)
    keep, _ = budget.pairs(labels)
    same = labels[:, None] == labels[None, :]
    assert bool(((keep & ~same).sum(dim=1) == torch.clamp((~same).sum(dim=1), max=size)).all())
    out, grad = loss_and_grad(lambda x: SCHaNeLoss(0.2, beta, detach, budget)(x, labels), z)
    z_ref = z.clone().requires_grad_(True)
    ref = naive_schane(z_ref, labels.tolist(), 0.2, beta, detach, sees=lambda i, j: bool(keep[i, j]))
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, z_ref.grad, rtol=1e-8, atol=1e-10)


def test_subsample_mask_follows_seed_and_step_reproducibly():
    _, labels = views_case(0, images=16, views=2, classes=4)

    def mask(seed, step):
        budget = NegativeBudget("subsample", 5, views=2, seed=seed)
        budget.set_step(step)
        return budget.pairs(labels)[0]

    assert torch.equal(mask(3, 7), mask(3, 7))  # a rerun (or another worker) draws the same mask
    assert not torch.equal(mask(3, 7), mask(3, 8))
    assert not torch.equal(mask(3, 7), mask(4, 7))
    loss = build_loss("schane", 0.1, 1.0, None, negatives="subsample", negatives_size=5, views=2, seed=3)
    loss.set_step(7)
    assert torch.equal(loss.contrastive.negatives.pairs(labels)[0], mask(3, 7))


# ---------------------------------------------------------------- shared properties
@pytest.mark.parametrize("budget", [("group", 4), ("subsample", 3)], ids=["group", "subsample"])
def test_gradcheck_with_a_budget(budget):
    z, labels = views_case(7, images=8, views=2, d=4)
    fn = SCHaNeLoss(0.2, 2.0, negatives=NegativeBudget(*budget, views=2, seed=1))
    assert torch.autograd.gradcheck(lambda x: fn(x, labels).loss, (z.requires_grad_(True),))


@pytest.mark.parametrize("budget", [("group", 4), ("subsample", 3)], ids=["group", "subsample"])
def test_beta_zero_schane_is_supcon_under_a_budget(budget):
    z, labels = views_case(8, images=8, views=2)
    schane = SCHaNeLoss(0.1, 0.0, negatives=NegativeBudget(*budget, views=2, seed=2))
    supcon = SupConLoss(0.1, negatives=NegativeBudget(*budget, views=2, seed=2))
    assert torch.equal(schane(z, labels).loss, supcon(z, labels).loss)
    by_name = build_loss("supcon", 0.1, None, None, negatives=budget[0], negatives_size=budget[1], views=2, seed=2)
    assert torch.equal(by_name(torch.zeros(16, 3), z, labels).contrastive, supcon(z, labels).loss)


def test_all_is_the_default_and_ce_ignores_the_budget():
    assert SCHaNeLoss(0.1, 1.0).negatives.mode == "all"
    assert build_loss("ce", None, None, None, negatives="group", negatives_size=4).contrastive is None
    assert NegativeBudget("all", 7).size is None
    with pytest.raises(ValueError, match="integer size >= 2"):
        NegativeBudget("group", 1)
    with pytest.raises(ValueError, match="one of all, group, subsample"):
        NegativeBudget("hard")
