"""How good must an LLM be? The figure of an oracle error sweep.

A bench grid whose LLM methods run with ``llm=oracle(error=p, mode=...)`` at several ``p`` (the
intrinsic bench) is drawn per env in two panels, the final return and the AUC of the return curve
(sampled evaluation by default), against ``p``: one line per method and error mode, each point the
IQM over seeds with its 95% bootstrap interval. A filled marker is a point whose paired verdict
against ``none`` (the report's rule, same bootstrap) is "better" or "worse"; a hollow one has no
measured difference. ``none``, ``placebo`` and the count bonus are horizontal lines (IQM, band:
interval), and a grey band around ``none`` spans the median minimum detectable effect of the LLM
rows against ``none``, each from the spread of its own paired differences (the paired t-test figure
of :func:`~align_gym.stats.minimum_detectable_effect`; on a task no seed solves the placebo has no
spread to lend): a line inside it cannot be told apart from ``none`` at the grid's seed count.
:func:`sweep_table` gives the same comparisons as numbers, for ``summary.md``; both read
one :func:`sweeps`. ``align-gym report`` draws it (``error_<env>.png``) wherever a
grid has oracle rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import stats
from .report import SCORES, Entry, compare, format_interval, run_score

LINES = ("none", "placebo", "count")  # the baselines drawn across the figure


@dataclass(frozen=True)
class SweepPoint:
    """One LLM row of the sweep: its method and error mode, the error rate, its score and its
    verdict against ``none`` (:data:`~align_gym.stats.TOO_FEW` without a ``none`` row)."""

    method: str
    mode: str
    error: float
    score: stats.Interval
    verdict: str = stats.TOO_FEW
    difference: stats.Interval | None = None  # the paired difference to none (IQM, 95% CI)


def oracle_of(shaping: str) -> tuple[str, str, float] | None:
    """(method, mode, error) of a one-layer shaping whose ``llm`` is an oracle, else None.

    >>> oracle_of("oni(variant=classification, llm='oracle(error=0.3, mode=positive)')")
    ('oni(variant=classification)', 'positive', 0.3)
    >>> oracle_of("ellm(llm=oracle)"), oracle_of("count(coef=0.01)")
    (('ellm', 'flip', 0.0), None)
    """
    from .llm_rewards.oracle import parse_oracle
    from .wrappers.registry import ShapingSpec, parse_spec

    layers = parse_spec(shaping)
    if len(layers) != 1 or "llm" not in layers[0].kwargs:
        return None
    oracle = parse_oracle(layers[0].kwargs["llm"])
    if oracle is None:
        return None
    rest = {k: v for k, v in layers[0].kwargs.items() if k not in ("llm", "coef")}
    return str(ShapingSpec(layers[0].name, rest)), oracle.mode, float(oracle.error)


def _scores(entry: Entry, score: str, mode: str, reps: int) -> stats.Interval | None:
    values = [run_score(rows, score, mode) for rows in entry.runs]
    if any(v is None for v in values):
        return None
    return stats.iqm_interval({entry.env_id: np.array(values, dtype=np.float64)}, reps=reps)


def sweep(env_id: str, entries: list[Entry], mode: str = "sampled", reps: int = 2000, score: str = "return"
          ) -> tuple[list[SweepPoint], dict[str, stats.Interval], float]:
    """The env's oracle rows as points, its baselines' scores, and the median MDE of the oracle
    rows against ``none`` (NaN without ``none``), all in ``score`` ("return" or "auc")."""
    mine = [e for e in entries if e.env_id == env_id]
    none = next((e for e in mine if e.shaping == "none"), None)
    points, lines, mdes = [], {}, []
    for entry in mine:
        found = oracle_of(entry.shaping)
        if found is None and entry.shaping.split("(")[0] not in LINES:
            continue  # neither a point nor a line: no score to bootstrap
        interval = _scores(entry, score, mode, reps)
        if interval is None:
            continue
        if found is not None:
            comparison = compare(entry, none, score, mode, reps) if none is not None else None
            verdict = comparison.verdict if comparison is not None else stats.TOO_FEW
            difference = comparison.interval if comparison is not None else None
            points.append(SweepPoint(found[0], found[1], found[2], interval, verdict, difference))
            if comparison is not None and comparison.differences.size >= 2:
                mdes.append(stats.minimum_detectable_effect(comparison.differences))
        else:
            lines[entry.shaping] = interval
    return sorted(points, key=lambda p: (p.method, p.mode, p.error)), lines, float(np.median(mdes)) if mdes else float("nan")


def _draw_panel(ax, points: list[SweepPoint], lines: dict[str, stats.Interval], mde: float, ylabel: str) -> None:
    errors = sorted({p.error for p in points})
    left, right = min(errors) - 0.03, max(errors) + 0.03
    for shaping, score in lines.items():
        (line,) = ax.plot([left, right], [score.estimate] * 2, linestyle=":", label=f"{shaping}")
        ax.fill_between([left, right], [score.low] * 2, [score.high] * 2, alpha=0.12, color=line.get_color())
    if "none" in lines and np.isfinite(mde):
        base = lines["none"].estimate
        ax.fill_between([left, right], [base - mde] * 2, [base + mde] * 2, color="grey", alpha=0.15,
                        label=f"none ± median MDE, own spreads ({mde:.3f})")
    keys = sorted({(p.method, p.mode) for p in points})
    for i, key in enumerate(keys):
        mine = [p for p in points if (p.method, p.mode) == key]
        shift = (i - (len(keys) - 1) / 2) * 0.006  # side by side, so equal points stay visible
        xs = [p.error + shift for p in mine]
        ys = np.array([[p.score.estimate, p.score.low, p.score.high] for p in mine])
        marker = "o" if key[1] == "flip" else "s"
        (drawn, *_) = ax.errorbar(xs, ys[:, 0], yerr=[ys[:, 0] - ys[:, 1], ys[:, 2] - ys[:, 0]], marker=marker,
                                  capsize=3, linestyle="-" if len(mine) > 1 else "none", label=f"{key[0]}, {key[1]}",
                                  markerfacecolor="white")
        decided = [p for p in mine if p.verdict in (stats.BETTER, stats.WORSE)]
        if decided:  # filled where the paired verdict against none is better or worse
            ax.plot([p.error + shift for p in decided], [p.score.estimate for p in decided], marker=marker,
                    linestyle="none", color=drawn.get_color(), zorder=5)
    ax.set_xlim(left, right)
    ax.set_xlabel("oracle error rate p")
    ax.set_ylabel(ylabel)


Sweep = tuple[list[SweepPoint], dict[str, stats.Interval], float]  # what :func:`sweep` returns


def sweeps(env_id: str, entries: list[Entry], mode: str = "sampled", reps: int = 2000) -> dict[str, Sweep]:
    """The sweep of ``env_id`` in each score drawn and tabled: final return, then AUC."""
    return {score: sweep(env_id, entries, mode, reps, score) for score in ("return", "auc")}


def plot_error_sweep(env_id: str, entries: list[Entry], panels: dict[str, Sweep], path: Path,
                     mode: str = "sampled") -> bool:
    """Draw ``panels`` (:func:`sweeps`) of ``env_id`` to ``path``, final return and AUC side by side;
    False (nothing drawn) where it has no oracle rows."""
    if not panels["return"][0]:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, (score, (points, lines, mde)) in zip(axes, panels.items()):
        what = "final return" if score == "return" else "AUC of return"
        _draw_panel(ax, points, lines, mde, f"{what} ({mode} evaluation): IQM, 95% CI")
    n_seeds = min(len(e.runs) for e in entries if e.env_id == env_id)
    fig.suptitle(f"{env_id}: LLM methods against the error of their oracle ({n_seeds} seeds; "
                 "filled marker: paired verdict against none is better or worse)", fontsize=9)
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def sweep_table(panels: dict[str, Sweep], mode: str = "sampled") -> list[str]:
    """Markdown of ``panels`` (:func:`sweeps`): per score, each method and mode against ``none`` at
    each error rate, as the IQM of the paired differences with its 95% interval and the verdict
    (better, worse, or = for no measured difference); empty where the env has no oracle rows."""
    lines: list[str] = []
    for score, (points, _, mde) in panels.items():
        if not points:
            return []
        errors = sorted({p.error for p in points})
        lines += [f"{SCORES[score]} ({mode}), paired difference to `none` by oracle error rate p: IQM "
                  f"[95% CI], and the verdict (=: no measured difference; median MDE of these comparisons, each from its own spread: {mde:.3f}):", "",
                  "| method | mode | " + " | ".join(f"p = {e:g}" for e in errors) + " |",
                  "|---|---|" + "---|" * len(errors)]
        for method, kind in sorted({(p.method, p.mode) for p in points}):
            at = {p.error: p for p in points if (p.method, p.mode) == (method, kind)}
            cells = [_sweep_cell(at.get(e)) for e in errors]
            lines.append(f"| {method} | {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _sweep_cell(point: SweepPoint | None) -> str:
    if point is None:
        return ""
    if point.difference is None:
        return point.verdict
    mark = {stats.BETTER: " better", stats.WORSE: " worse"}.get(point.verdict, " =")
    return format_interval(point.difference, 3) + mark
