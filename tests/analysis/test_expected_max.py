"""Expected best-of-n estimators (Dodge et al. 2019; Tang et al. 2020) against closed forms and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from tune_schane.analysis.expected_max import (
    TABLE_COLUMNS,
    expected_max_curve,
    expected_max_iid,
    expected_max_table,
    expected_max_tang,
    iid_weights,
    tang_weights,
)
from tune_schane.analysis.plots import plot_expected_max


@pytest.fixture(scope="module")
def uniform() -> np.ndarray:
    return np.random.default_rng(11).uniform(0.0, 1.0, size=20000)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 50])
def test_iid_matches_the_uniform_closed_form(uniform, n):
    # the max of n Uniform(0,1) draws has mean n/(n+1); the empirical distribution of 20000 draws is close
    assert expected_max_iid(uniform, n) == pytest.approx(n / (n + 1), abs=0.01)
    assert expected_max_tang(uniform, n) == pytest.approx(n / (n + 1), abs=0.01)


def test_tang_is_the_mean_at_one_and_the_max_at_n(uniform):
    assert expected_max_tang(uniform, 1) == pytest.approx(uniform.mean(), abs=1e-12)
    assert expected_max_tang(uniform, len(uniform)) == pytest.approx(uniform.max(), abs=1e-12)
    small = np.array([3.0, -1.0, 7.5, 2.0])
    assert expected_max_tang(small, 1) == pytest.approx(small.mean(), abs=1e-12)
    assert expected_max_tang(small, 4) == pytest.approx(7.5, abs=1e-12)


def test_tang_equals_the_average_max_over_all_subsets():
    scores = np.random.default_rng(5).normal(70.0, 3.0, size=7)
    scores[3] = scores[5]  # a tie must not matter
    for n in range(1, 8):
        brute = np.mean([max(subset) for subset in itertools.combinations(scores, n)])
        assert expected_max_tang(scores, n) == pytest.approx(brute, abs=1e-10)


def test_iid_equals_the_average_max_over_all_tuples_with_replacement():
    scores = np.random.default_rng(6).normal(size=5)
    for n in range(1, 5):
        brute = np.mean([max(draw) for draw in itertools.product(scores, repeat=n)])
        assert expected_max_iid(scores, n) == pytest.approx(brute, abs=1e-12)
    assert expected_max_iid(scores, 1) == pytest.approx(scores.mean(), abs=1e-12)


def test_weights_sum_to_one_and_stay_finite_for_large_n():
    for weights in (tang_weights(5000, [1, 2, 100, 2500, 5000]), iid_weights(5000, [1, 2, 100, 10000])):
        assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
        assert weights.sum(axis=1) == pytest.approx(np.ones(len(weights)), abs=1e-12)
    assert tang_weights(5000, [5000])[0, -1] == pytest.approx(1.0)


def test_tang_refuses_n_above_n_and_bad_budgets():
    with pytest.raises(ValueError, match="n ≤ N"):
        expected_max_tang([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="integers ≥ 1"):
        expected_max_iid([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="no scores"):
        expected_max_iid([math.nan], 1)


def test_min_mode_is_the_expected_minimum():
    scores = np.array([0.4, 0.1, 0.9, 0.3, 0.7])
    assert expected_max_tang(scores, 5, mode="min") == pytest.approx(0.1)
    assert expected_max_tang(scores, 1, mode="min") == pytest.approx(scores.mean())
    for n in (1, 2, 3):
        brute = np.mean([min(s) for s in itertools.combinations(scores, n)])
        assert expected_max_tang(scores, n, mode="min") == pytest.approx(brute)
        assert expected_max_iid(scores, n, mode="min") == pytest.approx(-expected_max_iid(-scores, n))
    curve = expected_max_curve(scores, estimator="tang", mode="min", n_boot=200)
    assert np.all(np.diff(curve["expected"]) <= 1e-12)  # more trials: a lower expected minimum
    assert np.all(curve["low"] <= curve["expected"] + 1e-12) and np.all(curve["expected"] <= curve["high"] + 1e-12)


@pytest.mark.parametrize("estimator", ["tang", "iid"])
def test_curve_band_contains_the_estimate_and_is_monotone(estimator):
    scores = np.random.default_rng(2).normal(80.0, 2.0, size=40)
    ns = None if estimator == "tang" else range(1, 101)
    curve = expected_max_curve(scores, ns=ns, estimator=estimator, n_boot=500, seed=3)
    assert list(curve.columns) == ["n", "expected", "low", "high"]
    assert list(curve["n"]) == list(range(1, 41 if estimator == "tang" else 101))
    assert np.all(curve["low"] <= curve["expected"] + 1e-12) and np.all(curve["expected"] <= curve["high"] + 1e-12)
    for column in ("expected", "low", "high"):
        assert np.all(np.diff(curve[column]) >= -1e-12), column
    point = expected_max_tang if estimator == "tang" else expected_max_iid
    assert curve["expected"].iloc[4] == pytest.approx(point(scores, 5))


def test_tang_curve_drops_budgets_above_n():
    curve = expected_max_curve([1.0, 2.0, 3.0], ns=[1, 2, 3, 4, 10], estimator="tang", n_boot=50)
    assert list(curve["n"]) == [1, 2, 3]
    assert curve["expected"].tolist() == pytest.approx([2.0, (2 + 3 + 3) / 3, 3.0])


def test_table_per_family_and_batch_size():
    rng = np.random.default_rng(8)
    rows = [{"loss": loss, "batch_size": bs, "value": float(rng.normal(mu, 1.0))}
            for loss, mu, count in (("ce", 70.0, 6), ("schane", 72.0, 4)) for bs in (32, 64) for _ in range(count)]
    rows.append({"loss": "ce", "batch_size": 32, "value": math.nan})  # a failed trial: dropped
    df = pd.DataFrame(rows)
    table = expected_max_table(df, n_boot=100)
    assert list(table.columns) == TABLE_COLUMNS
    counts = table.groupby(["loss", "batch_size"])["n"].max().to_dict()
    assert counts == {("ce", 32): 6, ("ce", 64): 6, ("schane", 32): 4, ("schane", 64): 4}
    cell = df[(df["loss"] == "schane") & (df["batch_size"] == 64)]["value"]
    row = table[(table["loss"] == "schane") & (table["batch_size"] == 64) & (table["n"] == 2)].iloc[0]
    assert row["n_trials"] == 4 and row["expected"] == pytest.approx(expected_max_tang(cell, 2))
    capped = expected_max_table(df, ns=[1, 5], n_boot=50)
    assert set(capped.loc[capped["loss"] == "schane", "n"]) == {1}  # only 4 trials: n = 5 is out of reach
    iid = expected_max_table(df, ns=[1, 5], estimator="iid", n_boot=50)
    assert set(iid.loc[iid["loss"] == "schane", "n"]) == {1, 5}


def test_plot_expected_max_renders():
    df = pd.DataFrame({"loss": ["ce"] * 5 + ["clce"] * 5, "batch_size": [32] * 10,
                       "value": [1.0, 2.0, 3.0, 2.5, 1.5, 2.0, 2.2, 3.1, 2.9, 1.0]})
    fig = plot_expected_max(expected_max_table(df, n_boot=50))
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "batch size 32"
    empty = plot_expected_max(expected_max_table(df.iloc[:0]))
    assert empty.axes[0].texts  # the "no trials" note
