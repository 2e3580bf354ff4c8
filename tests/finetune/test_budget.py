"""Training length held fixed in optimiser steps or images seen, across batch sizes (no Ray)."""

from __future__ import annotations

import pytest

from tune_schane.errors import BadInput
from tune_schane.finetune.config import TrialConfig
from tune_schane.finetune.runner import run_trial
from tune_schane.finetune.trial import Trial
from tune_schane.search.group_asha import GroupASHA
from tune_schane.space import parse_space


def tiny(**overrides) -> TrialConfig:
    base = {"model": "test_vit", "dataset": "digits", "img_size": 16, "loss": "ce", "batch_size": 16,
            "num_threads": 2, "device": "cpu", "shots": 10}  # 100 training images
    return TrialConfig(**{**base, **overrides})


def test_a_step_budget_gives_every_batch_size_the_same_updates():
    runs = {b: run_trial(tiny(batch_size=b, budget_unit="steps", budget=12, epochs=3)) for b in (16, 64)}
    for batch, result in runs.items():
        assert result.status == "completed", result.error
        assert [h["steps"] for h in result.history] == [4, 8, 12]
        assert [h["samples"] for h in result.history] == [4 * batch, 8 * batch, 12 * batch]
    # 100 images: batch 16 makes 6 steps a pass, batch 64 makes 1, so the same 12 steps are 2 and 12 passes.
    assert runs[16].history[-1]["data_epochs"] == 2.0 and runs[64].history[-1]["data_epochs"] == 12.0
    assert all(h["elapsed_seconds"] > 0 for r in runs.values() for h in r.history)
    assert runs[16].history[-1]["elapsed_seconds"] >= runs[16].history[0]["elapsed_seconds"]


def test_a_sample_budget_divides_by_the_batch_and_an_epoch_budget_is_unchanged():
    small, big = (Trial(tiny(batch_size=b, budget_unit="samples", budget=384, epochs=2)) for b in (16, 64))
    assert (small.total_steps, big.total_steps) == (24, 6)
    assert small.report_ends == [12, 24] and big.report_ends == [3, 6]
    plain = Trial(tiny(epochs=3))
    assert plain.report_ends == [6, 12, 18]  # one pass per report, as before budgets existed
    (first,) = list(Trial(tiny(epochs=1)).run())
    assert (first["steps"], first["data_epochs"]) == (6, 1.0)


def test_the_lr_schedule_spans_the_budget_and_warms_up_in_reports():
    trial = Trial(tiny(batch_size=64, budget_unit="steps", budget=12, epochs=4, warmup_epochs=1, lr_rule="none",
                       lr=1e-3))
    lrs = []
    for _ in range(12):
        lrs.append(trial.optimizer.param_groups[0]["lr"])
        trial.optimizer.step()
        trial.scheduler.step()
    assert lrs[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])  # one report = 3 steps of warm-up
    assert lrs[3] == pytest.approx(1e-3) and lrs[-1] < 1e-4  # then cosine to ~0 at step 12


def test_resuming_mid_pass_reproduces_the_uninterrupted_run(tmp_path):
    # 100 images at batch 16 make 6 steps a pass; reports of 4 steps end mid-pass.
    cfg = tiny(loss="clce", tau=0.2, beta=1.0, lam=0.5, budget_unit="steps", budget=12, epochs=3,
               drop_path_rate=0.1)
    uninterrupted = list(Trial(cfg).run())
    first = Trial(cfg)
    next(first.run())
    first.save_checkpoint(tmp_path)
    resumed = Trial(cfg)
    resumed.load_checkpoint(tmp_path)
    rest = list(resumed.run())
    for got, want in zip(rest, uninterrupted[1:], strict=True):
        for key in ("steps", "val_top1", "val_loss", "train_loss", "train_contrastive", "lr"):
            assert got[key] == want[key], key


@pytest.mark.parametrize(("overrides", "message"), [
    ({"budget_unit": "steps"}, "budget: budget_unit steps needs a budget"),
    ({"budget_unit": "minutes", "budget": 3}, "budget_unit: 'minutes' is not one of"),
    ({"budget_unit": "steps", "budget": 2, "epochs": 4}, "fewer than the 4 reports"),
    ({"budget_unit": "samples", "budget": 32, "batch_size": 16, "epochs": 3}, "2 optimiser steps at batch 16"),
    ({"budget": 7, "epochs": 5}, "budget: 7 epochs contradicts epochs 5"),
])
def test_bad_budgets_are_one_line(overrides, message):
    with pytest.raises(BadInput, match=message):
        tiny(**overrides).validate()


SPACE = {"name": "b", "fixed": {"model": "test_vit", "dataset": "digits"}, "grid": {"batch_size": [16, 64]},
         "params": {"lr": {"loguniform": [1e-3, 1e-2]}}, "num_samples": 1}


def test_the_space_budget_sets_every_trial_and_asha_counts_in_steps():
    space = parse_space({**SPACE, "budget": {"unit": "steps", "value": 240, "reports": 8},
                         "scheduler": {"type": "asha", "grace_period": 60, "reduction_factor": 2}})
    assert (space.max_epochs, space.grace_period) == (8, 2)  # reports of 30 steps; the first rung after 60
    for cell in space.cells():
        cfg = space.trial_config({"lr": 1e-3}, cell)
        assert (cfg.budget_unit, cfg.budget, cfg.epochs) == ("steps", 240, 8)
    asha = GroupASHA(grace_period=space.grace_period, reduction_factor=space.reduction_factor,
                     max_t=space.max_epochs, mode="max")
    per_report = 240 // 8
    assert [rung * per_report for rung in asha.rungs] == [60, 120]  # in steps, the same at every batch size
    assert "asha(240 steps in 8 reports of 30, rungs from 60 steps, rf 2)" in space.summary()


@pytest.mark.parametrize(("budget", "scheduler", "message"), [
    ({"unit": "steps", "value": 100, "reports": 3}, {}, "do not split into 3 equal reports"),
    ({"unit": "epochs", "value": 10}, {}, "budget.unit: 'epochs' is not steps or samples"),
    ({"unit": "steps", "value": 240, "reports": 8}, {"max_epochs": 8}, "leave max_epochs out"),
    ({"unit": "steps", "value": 240, "reports": 8}, {"grace_period": 45}, "not a whole number of reports of 30"),
    ({"unit": "steps", "value": 240, "reports": 8, "rungs": 3}, {}, "rungs"),
])
def test_bad_space_budgets_are_one_line(budget, scheduler, message):
    with pytest.raises(BadInput, match=message):
        parse_space({**SPACE, "budget": budget, "scheduler": {"type": "asha", **scheduler}})


def test_a_space_budget_refuses_a_second_length_in_fixed():
    with pytest.raises(BadInput, match=r"fixed\.epochs: the budget block sets the training length"):
        parse_space({**SPACE, "fixed": {**SPACE["fixed"], "epochs": 3},
                     "budget": {"unit": "steps", "value": 240, "reports": 8}})
