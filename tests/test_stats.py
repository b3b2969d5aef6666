"""The bench's estimators against values worked out by hand."""

import numpy as np
import pytest

from align_gym import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # floor(5/4) = 1 cut each end
    assert stats.iqm([2.0, 4.0]) == pytest.approx(3.0)  # too few to cut anything
    with pytest.raises(ValueError):
        stats.iqm([])


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=37)
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_area_under_curve_is_the_mean_over_training():
    assert stats.area_under_curve([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert stats.area_under_curve([0, 5, 10], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert stats.area_under_curve([0, 10], [1.0, 1.0], budget=20) == pytest.approx(0.5)


def test_steps_to_threshold_is_the_first_crossing_or_none():
    assert stats.steps_to_threshold([0, 10, 20, 30], [0.1, 0.79, 0.8, 0.9], 0.8) == 20
    assert stats.steps_to_threshold([0, 10], [0.1, 0.2], 0.8) is None


def test_probability_of_improvement_counts_ties_half():
    # pairs: 1>0, 1<2, 2>0, 2=2 -> (1 + 0 + 1 + 0.5) / 4
    assert stats.probability_of_improvement({"t": [1, 2]}, {"t": [0, 2]}) == pytest.approx(0.625)
    # averaged over tasks: 1.0 on one task, 0.0 on the other
    assert stats.probability_of_improvement({"a": [5], "b": [0]}, {"a": [1], "b": [3]}) == pytest.approx(0.5)


def test_bootstrap_interval_brackets_the_estimate_and_collapses_on_constant_scores():
    constant = stats.iqm_interval({"t": np.full(5, 0.7)}, reps=200)
    assert constant.estimate == constant.low == constant.high == pytest.approx(0.7)
    spread = stats.iqm_interval({"t": np.arange(10.0)}, reps=500)
    assert spread.low <= spread.estimate <= spread.high and spread.high - spread.low > 1.0


def test_stratified_bootstrap_resamples_within_each_task():
    # task a has one seed: resampling can never mix its value with task b's
    scores = {"a": np.array([100.0]), "b": np.array([0.0, 1.0])}
    interval = stats.mean_interval(scores, reps=500)
    # each replicate is (100 + b1 + b2) / 3 with b1, b2 drawn from {0, 1}
    assert interval.low >= 100 / 3 - 1e-9 and interval.high <= 102 / 3 + 1e-9


def test_best_only_where_the_interval_clears_the_others():
    a, b, c = stats.Interval(0.9, 0.8, 1.0), stats.Interval(0.5, 0.4, 0.6), stats.Interval(0.7, 0.55, 0.85)
    assert stats.clear_best({"a": a, "b": b}) == "a"
    assert stats.clear_best({"a": a, "c": c}) is None  # overlapping: no winner
