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


def test_steps_to_threshold_counts_only_evaluations_within_the_budget():
    # the last evaluation lands at budget + 80 (a rollout past it): crossing there is not reaching
    assert stats.steps_to_threshold([0, 500, 1080], [0.0, 0.5, 1.0], 0.8, budget=1000) is None
    assert stats.steps_to_threshold([0, 500, 1000], [0.0, 0.5, 1.0], 0.8, budget=1000) == 1000


def test_median_steps_counts_never_as_infinity_not_as_the_budget():
    assert stats.median_steps([100, 200, 300, None, None]) == 300  # 3/5 reached: the third
    assert stats.median_steps([100, 200, None, None, None]) is None  # more than half never: not reached
    assert stats.median_steps([100, 200, None, None]) is None  # half never: the median lies at infinity
    assert stats.median_steps([100, 300]) == 200
    assert stats.median_steps([]) is None


def test_paired_difference_is_the_iqm_of_per_seed_differences():
    x, y = {"t": np.array([1.0, 2.0, 3.0, 4.0])}, {"t": np.array([0.5, 1.5, 2.5, 3.5])}
    interval = stats.paired_difference(x, y, reps=200)
    assert interval.estimate == interval.low == interval.high == pytest.approx(0.5)  # every pair differs by 0.5
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference({"t": np.ones(3)}, {"t": np.ones(4)})


def test_paired_probability_of_improvement_counts_seeds_ties_half():
    x, y = {"t": np.array([1.0, 2.0, 3.0, 4.0])}, {"t": np.array([0.0, 2.0, 5.0, 3.0])}
    assert stats.paired_probability_of_improvement(x, y) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    interval = stats.paired_probability_of_improvement_interval(x, y, reps=500)
    assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0


def test_verdict_is_the_one_rule():
    assert stats.verdict(stats.Interval(0.2, 0.1, 0.3)) == "better"
    assert stats.verdict(stats.Interval(-0.2, -0.3, -0.1)) == "worse"
    assert stats.verdict(stats.Interval(0.1, 0.0, 0.3)) == "no measured difference"  # touching 0 is not excluding it
    assert stats.verdict(stats.Interval(0.2, 0.1, 0.3), n_pairs=2) == "too few seeds"
    assert stats.verdict(None) == "too few seeds"


def test_a_zero_shift_is_no_measured_difference_at_about_the_stated_rate():
    """200 grids of 10 seeds, two shapings with independent noise and no true difference: the
    rule's false-positive share stays near its nominal 5% (a percentile bootstrap of 10 pairs
    runs a little above it; the report measures it on its own placebo)."""
    rng = np.random.default_rng(0)
    verdicts = [stats.verdict(stats.paired_difference({"e": rng.normal(size=10)}, {"e": rng.normal(size=10)},
                                                      reps=500, seed=i), 10) for i in range(200)]
    false = sum(v != "no measured difference" for v in verdicts) / len(verdicts)
    assert false < 0.10
    assert set(verdicts) <= {"better", "worse", "no measured difference"}


def test_large_shifts_are_better_and_worse():
    rng = np.random.default_rng(1)
    base = rng.normal(size=10)
    up = stats.paired_difference({"e": base + 2.0 + rng.normal(size=10)}, {"e": base}, reps=500)
    down = stats.paired_difference({"e": base - 2.0 + rng.normal(size=10)}, {"e": base}, reps=500)
    assert stats.verdict(up, 10) == "better" and stats.verdict(down, 10) == "worse"


def test_pairing_removes_a_common_per_seed_offset_that_hides_the_shift_unpaired():
    rng = np.random.default_rng(2)
    offset = rng.normal(scale=1.0, size=10)  # each seed's luck, shared by both cells of the seed
    y = {"e": offset + rng.normal(scale=0.01, size=10)}
    x = {"e": offset + 0.1 + rng.normal(scale=0.01, size=10)}
    assert stats.verdict(stats.paired_difference(x, y, reps=500), 10) == "better"
    assert stats.iqm_interval(x, reps=500).overlaps(stats.iqm_interval(y, reps=500))  # unpaired: hidden


def test_minimum_detectable_effect_on_known_numbers():
    d = [1.0, 2.0, 3.0, 4.0, 5.0]  # sd (n - 1) = sqrt(2.5)
    # t quantiles with 4 degrees of freedom: t_0.975 = 2.776, t_0.8 = 0.941 (tables)
    assert stats.minimum_detectable_effect(d) == pytest.approx((2.776 + 0.941) * np.sqrt(2.5) / np.sqrt(5), abs=0.01)
    # 19 degrees of freedom: 2.093 and 0.861
    assert stats.minimum_detectable_effect(d, n=20) == pytest.approx((2.093 + 0.861) * np.sqrt(2.5) / np.sqrt(20), abs=0.01)
    assert np.isnan(stats.minimum_detectable_effect([1.0]))


def test_half_split_verdicts_apply_the_rule_to_half_the_seeds():
    verdicts = stats.half_split_verdicts(np.full(10, 0.5), splits=20, reps=100)
    assert verdicts == ["better"] * 20  # every half of constant positive differences
    assert len(stats.half_split_verdicts(np.random.default_rng(3).normal(size=6), splits=30, reps=100)) == 30
