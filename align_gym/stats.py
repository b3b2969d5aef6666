"""Scores and interval estimates for benchmarks (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"): interquartile mean, stratified bootstrap confidence intervals and
probability of improvement, written with numpy alone.

Scores come as ``{task: array of per-seed scores}``. The stratified bootstrap resamples seeds
within each task, independently, then recomputes the aggregate over all tasks: with few seeds
per task that is the honest spread of the aggregate. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Scores = dict[str, np.ndarray]


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (``floor(n/4)`` cut from each end, as
    ``scipy.stats.trim_mean(x, 0.25)``). Pools every value given."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("iqm of no values")
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def pooled(scores: Scores) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in scores.values()])


def area_under_curve(steps: Sequence[float], values: Sequence[float], budget: float | None = None) -> float:
    """Mean of a learning curve over training: the trapezoid area divided by the steps spanned
    (or by ``budget``), so it is on the scale of the score itself."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if steps.size < 2:
        return float(values[0]) if values.size else float("nan")
    area = float(np.sum((steps[1:] - steps[:-1]) * (values[1:] + values[:-1]) / 2.0))
    return area / float(budget if budget else steps[-1] - steps[0])


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first step whose value reaches ``threshold``; None if it never does."""
    return next((int(s) for s, v in zip(steps, values) if v >= threshold), None)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% (by default) bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def format(self, digits: int = 2) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def stratified_bootstrap(scores: Scores, statistic: Callable[[Scores], float], reps: int = 2000,
                         confidence: float = 0.95, seed: int = 0) -> Interval:
    """``statistic`` of ``scores`` with a percentile interval from resampling seeds within each task."""
    rng = np.random.default_rng(seed)
    arrays = {task: np.asarray(v, dtype=np.float64).ravel() for task, v in scores.items()}
    estimates = np.empty(reps)
    for r in range(reps):
        estimates[r] = statistic({task: x[rng.integers(0, x.size, x.size)] for task, x in arrays.items()})
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return Interval(statistic(arrays), float(low), float(high))


def iqm_interval(scores: Scores, reps: int = 2000, seed: int = 0) -> Interval:
    """IQM over all tasks and seeds, with a stratified bootstrap CI."""
    return stratified_bootstrap(scores, lambda s: iqm(pooled(s)), reps=reps, seed=seed)


def mean_interval(scores: Scores, reps: int = 2000, seed: int = 0) -> Interval:
    return stratified_bootstrap(scores, lambda s: float(pooled(s).mean()), reps=reps, seed=seed)


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y): for each task, the chance a random seed of X beats a random seed of Y (ties count
    half; the Mann-Whitney U statistic over ``n_x * n_y``), averaged over tasks."""
    per_task = []
    for task in x:
        a, b = np.asarray(x[task], dtype=np.float64)[:, None], np.asarray(y[task], dtype=np.float64)[None, :]
        per_task.append(float(np.mean((a > b) + 0.5 * (a == b))))
    return float(np.mean(per_task))


def probability_of_improvement_interval(x: Scores, y: Scores, reps: int = 2000, seed: int = 0) -> Interval:
    """P(X > Y) with a CI from resampling seeds of X and of Y independently within each task."""
    rng = np.random.default_rng(seed)
    xs = {t: np.asarray(v, dtype=np.float64).ravel() for t, v in x.items()}
    ys = {t: np.asarray(v, dtype=np.float64).ravel() for t, v in y.items()}
    estimates = np.empty(reps)
    for r in range(reps):
        estimates[r] = probability_of_improvement(
            {t: v[rng.integers(0, v.size, v.size)] for t, v in xs.items()},
            {t: v[rng.integers(0, v.size, v.size)] for t, v in ys.items()})
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Interval(probability_of_improvement(xs, ys), float(low), float(high))


def clear_best(intervals: dict[str, Interval]) -> str | None:
    """The entry whose interval lies wholly above every other's; None when intervals overlap."""
    if len(intervals) < 2:
        return None
    top = max(intervals, key=lambda k: intervals[k].estimate)
    others = [v for k, v in intervals.items() if k != top]
    return top if all(intervals[top].low > o.high for o in others) else None
