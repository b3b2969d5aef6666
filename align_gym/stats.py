"""Scores and interval estimates for benchmarks (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"): interquartile mean, stratified bootstrap confidence intervals and
probability of improvement, written with numpy alone.

Scores come as ``{task: array of per-seed scores}``. The stratified bootstrap resamples seeds
within each task, independently, then recomputes the aggregate over all tasks: with few seeds
per task that is the honest spread of the aggregate. Intervals are percentile intervals.

Paired comparisons (:func:`paired_difference`, :func:`paired_probability_of_improvement`) take two
``Scores`` whose arrays line up seed by seed: under common random numbers the two cells of a seed
share their env streams, initial weights and evaluation episodes, so the per-seed difference
cancels the seed's own luck, and the bootstrap resamples those differences (pairs), not the two
sides independently. :func:`verdict` turns a paired interval into the report's one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

Scores = dict[str, np.ndarray]

MIN_PAIRED_SEEDS = 3  # fewer common seeds than this: no verdict (a bootstrap of 2 pairs says nothing)
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = "better", "worse", "no measured difference", "too few seeds"


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


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float,
                       budget: int | None = None) -> int | None:
    """The first step whose value reaches ``threshold``; None if it never does. With ``budget``,
    only evaluations at steps up to it count: the last evaluation can land a rollout past the
    budget, and a run that needed those extra steps did not reach the threshold within it."""
    return next((int(s) for s, v in zip(steps, values) if v >= threshold and (budget is None or s <= budget)), None)


def median_steps(reached: Sequence[int | None]) -> float | None:
    """Median over seeds of the steps to a threshold, a seed that never reached it counting as
    infinitely many steps (never as the budget, which would flatter it). None ("not reached")
    when that median is infinite: more than half the seeds never reached it (or exactly half,
    the median then lying between a step and infinity)."""
    if not reached:
        return None
    value = float(np.median([np.inf if s is None else float(s) for s in reached]))
    return None if np.isinf(value) else value


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


def _arrays(scores: Scores) -> dict[str, np.ndarray]:
    return {task: np.asarray(v, dtype=np.float64).ravel() for task, v in scores.items()}


def _resampled_iqms(arrays: dict[str, np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` bootstrap replicates of the pooled IQM, seeds resampled within each task, all at
    once (a replicate per row): the report draws thousands per comparison and per curve point."""
    samples = np.sort(np.concatenate([x[rng.integers(0, x.size, (reps, x.size))] for x in arrays.values()], axis=1), axis=1)
    cut = int(0.25 * samples.shape[1])
    return samples[:, cut:samples.shape[1] - cut].mean(axis=1)


def _percentile(estimate: float, replicates: np.ndarray, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return Interval(estimate, float(low), float(high))


def iqm_interval(scores: Scores, reps: int = 2000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """IQM over all tasks and seeds, with a stratified bootstrap CI."""
    arrays = _arrays(scores)
    replicates = _resampled_iqms(arrays, reps, np.random.default_rng(seed))
    return _percentile(iqm(pooled(arrays)), replicates, confidence)


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


def paired_differences(x: Scores, y: Scores) -> Scores:
    """Per task, ``x - y`` seed by seed; ValueError unless the two line up (same tasks, same
    number of seeds): a pairing that does not line up is no pairing."""
    xs, ys = _arrays(x), _arrays(y)
    if set(xs) != set(ys) or any(xs[t].size != ys[t].size for t in xs):
        raise ValueError("paired scores need the same tasks and the same seeds on both sides")
    if any(xs[t].size == 0 for t in xs):
        raise ValueError("paired scores need at least one seed per task")
    return {t: xs[t] - ys[t] for t in xs}


def paired_difference(x: Scores, y: Scores, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """IQM of the per-seed differences ``x - y`` (pooled over tasks), with a percentile interval
    from resampling the pairs within each task. Resampling pairs keeps what a seed shares between
    its two cells, so a common per-seed offset, however large, does not widen the interval."""
    differences = paired_differences(x, y)
    replicates = _resampled_iqms(differences, reps, np.random.default_rng(seed))
    return _percentile(iqm(pooled(differences)), replicates, confidence)


def unpaired_difference(x: Scores, y: Scores, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """IQM of ``x`` minus IQM of ``y``, with a percentile interval from resampling each side's
    seeds independently within each task: the comparison for cells that share no stream (bench
    protocol 1), where a per-seed difference would pair nothing."""
    rng = np.random.default_rng(seed)
    xs, ys = _arrays(x), _arrays(y)
    replicates = _resampled_iqms(xs, reps, rng) - _resampled_iqms(ys, reps, rng)
    return _percentile(iqm(pooled(xs)) - iqm(pooled(ys)), replicates, confidence)


def _wins(differences: np.ndarray) -> np.ndarray:
    """Mean over the last axis of 1 where a difference is positive, 1/2 where it is 0."""
    return np.mean((differences > 0) + 0.5 * (differences == 0), axis=-1)


def paired_probability_of_improvement(x: Scores, y: Scores) -> float:
    """The share of seeds where ``x`` beats ``y`` in its own pair (ties count half), averaged over
    tasks: the paired counterpart of :func:`probability_of_improvement`."""
    return float(np.mean([_wins(d) for d in paired_differences(x, y).values()]))


def paired_probability_of_improvement_interval(x: Scores, y: Scores, reps: int = 2000, confidence: float = 0.95,
                                               seed: int = 0) -> Interval:
    """:func:`paired_probability_of_improvement` with a percentile interval from resampling the
    pairs within each task."""
    rng = np.random.default_rng(seed)
    differences = paired_differences(x, y)
    replicates = np.mean([_wins(d[rng.integers(0, d.size, (reps, d.size))]) for d in differences.values()], axis=0)
    return _percentile(paired_probability_of_improvement(x, y), replicates, confidence)


def verdict(interval: Interval | None, n_pairs: int | None = None) -> str:
    """The report's one rule: "better" (or "worse") when the paired interval of the IQM difference
    lies wholly above (or below) 0, else "no measured difference"; "too few seeds" without an
    interval or with fewer than :data:`MIN_PAIRED_SEEDS` pairs. An interval touching 0 is no
    difference: the rule asks the interval to exclude 0."""
    if interval is None or (n_pairs is not None and n_pairs < MIN_PAIRED_SEEDS):
        return TOO_FEW
    if interval.low > 0:
        return BETTER
    if interval.high < 0:
        return WORSE
    return NO_DIFFERENCE


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile, from the normal one by the Cornish-Fisher expansion in ``1/df`` (within
    0.01 of the exact value from 3 degrees of freedom on; numpy alone, no scipy)."""
    z = NormalDist().inv_cdf(p)
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def minimum_detectable_effect(differences: Sequence[float] | np.ndarray, n: int | None = None, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test at level ``alpha`` finds with
    probability ``power`` from ``n`` pairs (default: as many as ``differences``):
    ``(t_{1-alpha/2} + t_power) * sd(differences) / sqrt(n)``, t with ``n - 1`` degrees of freedom,
    sd with ``n - 1``. The report's rule is a bootstrap interval of the differences' IQM, not a
    t-test: the MDE is the scale of effect a comparison can resolve, not the rule's exact power.
    NaN with fewer than two differences (no spread to measure)."""
    d = np.asarray(differences, dtype=np.float64).ravel()
    n = d.size if n is None else n
    if d.size < 2 or n < 2:
        return float("nan")
    t = t_quantile(1.0 - alpha / 2.0, n - 1) + t_quantile(power, n - 1)
    return t * float(np.std(d, ddof=1)) / float(np.sqrt(n))


def half_split_verdicts(differences: Sequence[float] | np.ndarray, splits: int = 200, reps: int = 2000,
                        seed: int = 0) -> list[str]:
    """The rule applied to ``splits`` random halves (``n // 2`` of the ``n`` pairs, drawn without
    replacement from a seeded generator): on a null comparison (placebo vs none) the share that
    are not "no measured difference" is the rule's false-positive rate at half the seeds."""
    d = np.asarray(differences, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    half = d.size // 2
    out = []
    for _ in range(splits):
        subset = {"split": d[rng.choice(d.size, half, replace=False)]}
        replicates = _resampled_iqms(subset, reps, rng)
        out.append(verdict(_percentile(iqm(subset["split"]), replicates, 0.95), half))
    return out
