"""The negatives budget (tune_schane/losses/_negatives.py) against naive float64 loops.

References: tests/support/loss_reference.py's loop over anchors and pairs, run on each group's rows alone
(``group``) or told which pairs the subsample mask keeps (``subsample``); today's loss for ``all``
and one group of the whole batch; torch.autograd.gradcheck; the plain step for the gradient cache.
"""

from __future__ import annotations

import contextlib

import pytest
import timm
import torch

from tests.support.loss_reference import naive_anchor_losses, naive_ce, naive_grouped_schane, naive_schane
from tune_schane.cli.main import main
from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig
from tune_schane.finetune.gradcache import cached_step, plain_step
from tune_schane.finetune.model import ContrastiveClassifier
from tune_schane.finetune.train import train_one_epoch
from tune_schane.losses import NegativeBudget, SCHaNeLoss, SupConLoss, build_loss
from tune_schane.losses._negatives import class_balanced_groups, subsample_pairs

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


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"negatives": "hardest"}, "negatives: 'hardest' is not one of all, group, subsample"),
        ({"negatives": "group"}, "needs negatives_size"),
        ({"negatives": "group", "negatives_size": 1}, "a group needs at least 2 images, got 1"),
        ({"negatives": "group", "negatives_size": 64}, "groups of 64 images are larger than batch_size 32"),
        ({"negatives": "group", "negatives_size": 12}, "batch_size 32 does not split into groups of 12"),
        ({"negatives": "subsample", "negatives_size": 0}, "at least 1 negative per anchor, got 0"),
        ({"negatives": "subsample", "negatives_size": 63}, "more than any anchor of batch_size 32 with 2 views"),
    ],
)
def test_config_refuses_a_bad_budget_in_one_line(settings, message, tmp_path, capsys):
    with pytest.raises(BadInput, match=message):
        TrialConfig(**settings).validate()
    argv = ["train", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out")]
    argv += [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0] and "negatives" in err[0], err


def test_resolved_config_drops_what_the_budget_does_not_use():
    assert TrialConfig(negatives="all", negatives_size=8).resolved().negatives_size is None
    kept = TrialConfig(negatives="group", negatives_size=8).resolved()
    assert (kept.negatives, kept.negatives_size) == ("group", 8)
    ce = TrialConfig(loss="ce", negatives="group", negatives_size=5).resolved()  # 5 does not divide 32: unused
    assert (ce.negatives, ce.negatives_size) == ("all", None)
    assert TrialConfig(negatives="subsample", negatives_size=62).resolved().negatives_size == 62


def test_the_store_keeps_the_budget_as_typed_columns(tmp_path):
    from tune_schane.store import TrialStore
    from tune_schane.store.records import config_from_row, trial_row

    store = TrialStore(tmp_path / "store")
    config = TrialConfig(negatives="group", negatives_size=8).resolved()
    store.write_trials([trial_row(sweep_id="s", trial_id="t", status="completed", config=config, history=[])])
    row = store.load_trials("s").iloc[0]
    assert (row["config_negatives"], row["config_negatives_size"]) == ("group", 8)
    assert config_from_row(row) == config


def test_the_loop_tells_the_loss_each_step_number():
    model, loss_fn = tiny_vit().float(), build_loss("schane", 0.1, 1.0, None, negatives="subsample",
                                                    negatives_size=2, views=2)
    seen = []
    step = loss_fn.contrastive.negatives.set_step
    loss_fn.contrastive.negatives.set_step = lambda s: (seen.append(s), step(s))
    batches = [(torch.randn(4, 2, 3, 16, 16), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    metrics = train_one_epoch(model, batches, loss_fn, opt, sched, torch.device("cpu"), first_step=10)
    assert seen == [10, 11, 12]
    assert metrics["neg_per_anchor"] == 2.0  # every anchor has 4 negatives and keeps 2


@pytest.mark.slow  # a real trial: builds the digits data and the model (about 3 s of imports on 2 cores)
def test_a_trial_runs_each_budget_on_its_order_seed_and_numbers_its_steps():
    from tune_schane.finetune.trial import Trial

    base = {"shots": 4, "batch_size": 8, "epochs": 2, "order_seed": 9, "device": "cpu", "num_threads": 2}
    # shots 4 of 10 classes: a batch of 8 holds at most 4 images of a class, so every anchor has >= 8 negatives.
    for negatives, size, most in (("group", 4, 6), ("subsample", 5, 5)):
        trial = Trial(TrialConfig(negatives=negatives, negatives_size=size, **base))
        budget = trial.loss_fn.contrastive.negatives
        assert (budget.mode, budget.size, budget.views, budget.seed) == (negatives, size, 2, 9)
        seen = []
        step = budget.set_step
        budget.set_step = lambda s, seen=seen, step=step: (seen.append(s), step(s))
        history = list(trial.run())
        assert seen == list(range(10)) and trial.steps_per_epoch == 5
        assert all(h["neg_per_anchor"] <= most for h in history), history
        if negatives == "subsample":
            assert all(h["neg_per_anchor"] == 5.0 for h in history)


# ---------------------------------------------------------------- gradient cache
def tiny_vit() -> ContrastiveClassifier:
    torch.manual_seed(0)
    backbone = timm.create_model("test_vit", num_classes=0, img_size=16)
    return ContrastiveClassifier(backbone, backbone.num_features, 3, proj_dim=8).double().train()


@pytest.mark.parametrize("budget", [("group", 2), ("subsample", 3)], ids=["group", "subsample"])
def test_gradient_cache_gives_the_plain_step_gradient_under_a_budget(budget):
    model = tiny_vit()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g).repeat_interleave(2)
    loss_fn = build_loss("clce", 0.1, 1.0, 0.5, negatives=budget[0], negatives_size=budget[1], views=2, seed=4)
    loss_fn.set_step(2)
    runs = []
    for chunk_rows in (None, 6):  # chunks of 3, 3 and 2 images
        model.zero_grad(set_to_none=True)
        if chunk_rows is None:
            out, _ = plain_step(model, x, y, loss_fn, detach_classifier=False, autocast=contextlib.nullcontext)
        else:
            out, _ = cached_step(model, x, y, loss_fn, chunk_rows=chunk_rows, detach_classifier=False,
                                 autocast=contextlib.nullcontext)
        runs.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (want, want_grads), *cached = runs
    for out, grads in cached:
        torch.testing.assert_close(out.loss, want.loss.detach(), rtol=1e-12, atol=1e-12)
        assert out.neg_per_anchor == want.neg_per_anchor
        for name, value in want_grads.items():
            torch.testing.assert_close(grads[name], value, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_the_config_knows_the_same_negatives_modes_as_the_loss():
    from tune_schane.finetune.config import NEGATIVES as checked
    from tune_schane.losses import NEGATIVES

    assert checked == NEGATIVES
